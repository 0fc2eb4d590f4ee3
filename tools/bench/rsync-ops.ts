// The JavaScript side of an rsync of a tree into a share, without the mount: each file takes
// the requests rsync's receiver makes through FUSE (create, fchmod, write, flush, getattr,
// utimens, open, fchmod, rename, two releases), in order, on the namespace's node API, so the
// time per request is the namespace's own work (CPU and its awaits), without the hand-offs.
//   node dist/tools/bench/rsync-ops.js [SRC] [DIR]
// Prints the mean us per request kind and the whole run's seconds.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Namespace } from '../../src/namespace/namespace.js';
import { SegmentStore } from '../../src/store/store.js';
import { MOUNT_ROOT_NODE } from '../../src/namespace/node-id.js';

const src = process.argv[2] ?? '/usr/share/doc';
const base = process.argv[3] ?? os.tmpdir();
const work = await fs.mkdtemp(path.join(base, 'vmvault-rsync-ops-'));
const store = await SegmentStore.open(path.join(work, 'data'));
const ns = await Namespace.open(store);
const times = new Map<string, { n: number; ms: number }>();
async function timed<T>(kind: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await fn();
  const t = times.get(kind) ?? { n: 0, ms: 0 };
  t.n++;
  t.ms += performance.now() - t0;
  times.set(kind, t);
  return r;
}
try {
  await ns.shares.create('small');
  const nodes = ns.nodes;
  const top = await nodes.lookup(MOUNT_ROOT_NODE, 'small');
  let files = 0;
  const t0 = performance.now();
  async function copyDir(from: string, parent: bigint): Promise<void> {
    for (const e of await fs.readdir(from, { withFileTypes: true })) {
      const p = path.join(from, e.name);
      if (e.isDirectory()) {
        const a = await timed('mkdir', () => nodes.mkdir(parent, e.name, 0o755));
        await copyDir(p, a.ino);
      } else if (e.isFile()) {
        const data = await fs.readFile(p);
        const tmp = `.${e.name}.XXXXXX`;
        const { attr, fh } = await timed('create', () => nodes.create(parent, tmp, 0o600, 0o102));
        await timed('setattr', () => nodes.setattr(attr.ino, { mode: 0o600 }, fh));
        if (data.length > 0) await timed('write', async () => ns.fs.write(fh, 0, data));
        await timed('flush', () => ns.fs.flush(fh));
        await timed('getattr', () => nodes.getattr(attr.ino, fh));
        await timed('setattr', () => nodes.setattr(attr.ino, { atime: Date.now(), mtime: Date.now() }));
        const rfh = await timed('open', () => nodes.open(attr.ino, 0));
        await timed('setattr', () => nodes.setattr(attr.ino, { mode: 0o644 }));
        await timed('release', () => ns.fs.release(rfh));
        await timed('rename', () => nodes.rename(parent, tmp, parent, e.name));
        await timed('release', () => ns.fs.release(fh));
        files++;
      }
    }
  }
  await copyDir(src, top.ino);
  const secs = (performance.now() - t0) / 1000;
  for (const [k, t] of [...times].sort((a, b) => b[1].ms - a[1].ms)) console.log(`${k.padEnd(8)} ${String(t.n).padStart(6)}  ${((t.ms * 1000) / t.n).toFixed(1).padStart(7)} us each  ${t.ms.toFixed(0).padStart(6)} ms`);
  console.log(JSON.stringify({ figure: 'rsync_ops.seconds', value: Number(secs.toFixed(3)), files }));
} finally {
  await ns.close();
  await store.close();
  await fs.rm(work, { recursive: true, force: true });
}
