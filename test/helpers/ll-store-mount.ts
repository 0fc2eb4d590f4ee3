// A real store and namespace in a fresh temporary folder, mounted on libfuse3 through
// LlFileSystem, unmounted and removed at the test's end: the set-up of the tests that drive the
// mount's read path with a model (fuse-ll-holes, fuse-ll-holes-kept).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { Namespace } from '../../src/namespace/namespace.js';
import { SegmentStore } from '../../src/store/store.js';
import { LlFileSystem } from '../../src/fuse/ll-filesystem.js';
import { dispatchOps, type LlOps, LlSession } from '../../src/fuse/ll/session.js';

export interface LlStoreMount {
  /** The temporary folder (the store's data below it, scratch files beside). */
  dir: string;
  mnt: string;
  ns: Namespace;
  session: LlSession;
}

/** `beforeMount` may wrap the namespace's methods (to count calls) before the mount sees them. */
export async function mountStoreLl(t: Test, prefix: string, beforeMount?: (ns: Namespace) => void): Promise<LlStoreMount> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  const store = await SegmentStore.open(path.join(dir, 'data'));
  const ns = await Namespace.open(store, { log: (l) => t.comment(l) });
  beforeMount?.(ns);
  const llfs = new LlFileSystem(ns, { log: (l) => t.comment(l) });
  const session = await LlSession.mount(mnt, { fsname: 'vmvault-test', allowOther: true, defaultPermissions: true, maxThreads: 4 }, dispatchOps(llfs.ops() as Partial<LlOps>));
  t.teardown(async () => {
    await session.unmount();
    await ns.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { dir, mnt, ns, session };
}
