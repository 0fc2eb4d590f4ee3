// The same bytes cost the same whichever door they come through. A file written into a share
// in 128 KiB writes with holes (as `cp --sparse=always` writes through the mount), committed
// in many small rounds, must end as the very version one ingest of the same bytes makes: same
// root, so the same segments and tree nodes; the rounds' intermediate versions leave only a
// little garbage, and GC's figures say where it is. (bench:vmset measures the same on the
// sample VM images, through the real mount.)

import t from 'tap';
import { Namespace } from '../src/namespace/namespace.js';
import { runGc } from '../src/namespace/maintenance.js';
import { SegmentStore } from '../src/store/store.js';
import { generate, Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;
const WRITE = 128 * 1024;

/** A disk-image-like file: data, zero runs of many sizes, data that repeats. */
function image(seed: number): Buffer {
  const rng = new Rng(seed);
  const parts: Buffer[] = [];
  const text = generate(rng, 'text', 2 * MiB);
  for (let i = 0; i < 12; i++) {
    parts.push(generate(rng, i % 3 === 0 ? 'random' : 'text', rng.range(64 * 1024, 2 * MiB)));
    parts.push(Buffer.alloc(rng.range(1, 3 * MiB)));
    if (i % 4 === 1) parts.push(text);
    parts.push(generate(rng, 'sparse', rng.range(4096, MiB)));
  }
  return Buffer.concat(parts);
}

/** Writes `data` as cp --sparse=always would: all-zero 128 KiB blocks skipped, size set last. */
async function copySparse(ns: Namespace, path: string, data: Buffer): Promise<void> {
  const fh = await ns.fs.create(path, 0o644);
  const zero = Buffer.alloc(WRITE);
  for (let at = 0; at < data.length; at += WRITE) {
    const b = data.subarray(at, at + WRITE);
    if (b.compare(zero, 0, b.length) !== 0) await ns.write(fh, at, b);
  }
  await ns.fs.ftruncate(fh, data.length);
  await ns.fs.release(fh);
}

t.test('a file written in commit rounds through the namespace is the version one ingest makes', async (t) => {
  const data = image(21);
  const ingest = await SegmentStore.open(tmpDir(t));
  t.teardown(() => ingest.close());
  const w = await ingest.writeBuffer(data);
  await ingest.commit([], w.deps);

  const store = await SegmentStore.open(tmpDir(t));
  // Rounds of 1 MiB: dozens of commits of this file, each ending wherever the writes stopped.
  const ns = await Namespace.open(store, { fileCommitBytes: MiB, log: () => {} });
  t.teardown(async () => {
    await ns.close();
    await store.close();
  });
  await ns.shares.create('vms');
  await copySparse(ns, '/vms/disk.raw', data);
  await ns.flushAll();
  const v = (await ns.ctx.resolve('/vms/disk.raw')).inode.version!;
  t.equal(v.size, data.length);
  t.ok(v.root.equals(w.version.root), 'the same root fingerprint: the same segments and tree nodes');

  const g = await runGc(ns);
  const a = await ingest.stats();
  const b = await store.stats();
  t.equal(g.liveSegments, a.segments, `live segments after GC: ${g.liveSegments}, as many as the ingest stored`);
  // What the rounds left: at most a tail segment and a tree edge per round, all dead.
  const garbage = g.deadBytes;
  t.ok(garbage <= 0.02 * a.storedBytes, `intermediate versions left ${garbage} dead bytes (${((100 * garbage) / a.storedBytes).toFixed(2)}% of ${a.storedBytes})`);
  t.ok(b.storedBytes - g.deadBytesKept <= a.storedBytes + 64 * 1024, `stored ${b.storedBytes} B, of which ${g.deadBytesKept} dead and kept; the ingest stored ${a.storedBytes} B`);
});
