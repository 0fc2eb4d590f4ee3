// An incremental disk copy bounds its own buffered bytes: with several NBD connections data arrives faster
// than the store commits it, and without a cap the namespace buffered up to its 512 MiB dirty
// limit (613 MiB RSS measured). Here the source answers from memory at once, the fastest a
// source can be, so only the copy's own wait on the file's commit can hold the bound.
//
// Test double: `MemorySource` stands in for the NBD export of a fleecing node (the same
// ExtentSource interface NbdClient implements): a source that never waits is what makes the
// bound testable deterministically. The real NBD path is covered by backup-qemu.test.ts.

import t from 'tap';
import { createHash } from 'node:crypto';
import { copyDisk, type ExtentSource, SourcePool, STATE_ZERO } from '../src/backup/disk-copy.js';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { generate, Rng } from './helpers/data.js';
import { readFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const KiB = 1024;
const MiB = 1024 * KiB;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A disk in memory: data in the first `dataBytes`, zeros after (reported as a zero extent). */
class MemorySource implements ExtentSource {
  constructor(
    private readonly disk: Buffer,
    private readonly dataBytes: number,
    private readonly onRead: () => void,
  ) {}

  get size(): number {
    return this.disk.length;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.onRead();
    return Buffer.from(this.disk.subarray(offset, offset + length));
  }

  async blockStatus(offset: number, length: number): Promise<Array<{ offset: number; length: number; flags: number }>> {
    const out = [];
    const end = offset + length;
    if (offset < this.dataBytes) out.push({ offset, length: Math.min(end, this.dataBytes) - offset, flags: 0 });
    if (end > this.dataBytes) out.push({ offset: Math.max(offset, this.dataBytes), length: end - Math.max(offset, this.dataBytes), flags: STATE_ZERO });
    return out;
  }
}

t.test('an incremental over several sources keeps the file buffering at most its cap, and copies every byte', async (t) => {
  // The namespace's own bounds are far above the cap, so they cannot be what holds it.
  const store = await SegmentStore.open(tmpDir(t));
  const ns = await Namespace.open(store, { fileCommitBytes: 4 * MiB, dirtyLimitBytes: 512 * MiB, log: () => {} });
  t.teardown(async () => {
    await ns.close();
    await store.close();
  });
  await ns.fs.mkdir('/s', 0o755);
  const dataBytes = 48 * MiB;
  const disk = Buffer.concat([generate(new Rng(11), 'random', dataBytes), Buffer.alloc(16 * MiB)]);
  const fh = await ns.fs.create('/s/vda.raw', 0o600);
  await ns.fs.ftruncate(fh, disk.length);

  const cap = 8 * MiB;
  const chunk = 256 * KiB;
  const inFlight = 16;
  let peak = 0;
  const sample = () => (peak = Math.max(peak, ns.fs.handle(fh).file.buffered));
  // Every block dirty (a full copy streams instead: test/disk-copy-full.test.ts).
  const DIRTY = 'qemu:dirty-bitmap:all';
  const src = new SourcePool(
    Array.from({ length: 4 }, () => {
      const m = new MemorySource(disk, dataBytes, sample);
      return {
        size: m.size,
        read: (o: number, l: number) => m.read(o, l),
        blockStatus: async (o: number, l: number, context: string) => (context === DIRTY ? [{ offset: o, length: l, flags: 1 }] : m.blockStatus(o, l)),
      };
    }),
  );
  const r = await copyDisk(ns, fh, src, { dirtyContext: DIRTY, inFlight, chunkBytes: chunk, maxBufferedBytes: cap });
  sample();
  t.equal(r.bytesRead, dataBytes, 'read the data extent only');
  t.equal(r.bytesWritten, disk.length, 'the data and, dirty too, the zeros');
  // Each read in flight may add its chunk past the cap before its write waits.
  t.ok(peak <= cap + inFlight * chunk, `the file buffered at most ${peak / MiB} MiB (cap ${cap / MiB} MiB + ${(inFlight * chunk) / MiB} MiB in flight)`);
  t.ok(peak > 0, 'the sampling saw buffered bytes');
  await ns.fs.release(fh);
  t.equal(sha(await readFile(ns, '/s/vda.raw')), sha(disk), 'the file holds the disk');
});

t.test('an incremental asks base:allocation once for many dirty runs, not once per run, and copies them', async (t) => {
  const store = await SegmentStore.open(tmpDir(t));
  const ns = await Namespace.open(store, { log: () => {} });
  t.teardown(async () => {
    await ns.close();
    await store.close();
  });
  await ns.fs.mkdir('/s', 0o755);
  // The previous point: zeros. The disk now: data in the first 24 MiB and 40 dirty runs of 64 KiB
  // every 512 KiB (from 12 MiB on, some in the zero part), the rest clean.
  const dataBytes = 24 * MiB;
  const disk = Buffer.concat([generate(new Rng(12), 'random', dataBytes), Buffer.alloc(8 * MiB)]);
  const runs = Array.from({ length: 40 }, (_, k) => ({ offset: 12 * MiB + k * 512 * KiB, length: 64 * KiB }));
  const DIRTY = 'qemu:dirty-bitmap:test';
  const mem = new MemorySource(disk, dataBytes, () => {});
  let allocationAsks = 0;
  const src: ExtentSource = {
    size: disk.length,
    read: (o, l) => mem.read(o, l),
    async blockStatus(offset, length, context) {
      if (context !== DIRTY) {
        allocationAsks++;
        return mem.blockStatus(offset, length);
      }
      // The dirty bitmap: the runs as dirty (flag 1), the gaps clean.
      const out = [];
      let at = offset;
      const end = offset + length;
      for (const r of runs) {
        if (r.offset + r.length <= at || r.offset >= end) continue;
        if (r.offset > at) out.push({ offset: at, length: r.offset - at, flags: 0 });
        const to = Math.min(end, r.offset + r.length);
        out.push({ offset: Math.max(at, r.offset), length: to - Math.max(at, r.offset), flags: 1 });
        at = to;
      }
      if (at < end) out.push({ offset: at, length: end - at, flags: 0 });
      return out;
    },
  };
  const fh = await ns.fs.create('/s/vda.raw', 0o600);
  await ns.fs.ftruncate(fh, disk.length);
  const r = await copyDisk(ns, fh, src, { dirtyContext: DIRTY });
  await ns.fs.release(fh);
  t.equal(r.bytesConsidered, 40 * 64 * KiB, 'the dirty runs were considered');
  t.equal(r.bytesRead, 24 * 64 * KiB, 'the runs in the data part were read, those in the zero part not');
  t.ok(allocationAsks <= 2, `base:allocation asked ${allocationAsks} times for 40 runs (was once per run)`);
  const want = Buffer.alloc(disk.length);
  for (const run of runs) disk.copy(want, run.offset, run.offset, run.offset + run.length);
  t.equal(sha(await readFile(ns, '/s/vda.raw')), sha(want), 'the file holds exactly the dirty runs');
});
