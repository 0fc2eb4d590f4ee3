// A store and namespace in a temporary directory for tests that need no mount, closed when the
// test ends, and file helpers that go through the namespace the way FUSE does.

import { Namespace, type NamespaceOptions } from '../../src/namespace/namespace.js';
import { SegmentStore } from '../../src/store/store.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Opens (or creates) a store and namespace; `close` may end them early, the teardown otherwise. */
export async function openNs(t: Teardown, dir: string, opts: NamespaceOptions = {}): Promise<{ store: SegmentStore; ns: Namespace; close(): Promise<void> }> {
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {}, ...opts });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await ns.close();
    await store.close();
  };
  t.teardown(close);
  return { store, ns, close };
}

/** Creates `path` and writes `data` in 128 KiB writes (FUSE's size), then closes it. */
export async function writeFile(ns: Namespace, path: string, data: Buffer): Promise<void> {
  const fh = await ns.fs.create(path, 0o644);
  for (let at = 0; at < data.length; at += 128 * 1024) await ns.write(fh, at, data.subarray(at, at + 128 * 1024));
  await ns.fs.release(fh);
}

export async function readFile(ns: Namespace, path: string): Promise<Buffer> {
  const fh = await ns.fs.open(path, 0);
  try {
    return await ns.fs.read(fh, 0, (await ns.fs.getattr(path)).size);
  } finally {
    await ns.fs.release(fh);
  }
}
