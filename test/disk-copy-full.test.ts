// A full disk copy streams the export into the file in order (disk-copy-full.ts, Namespace.stream):
// reads that complete out of order still land in order, zero extents short and long read back
// as zeros, what is held stays bounded by the reads in flight, a garbage collection in the
// middle keeps what the stream stored so far, and a failed copy leaves the file as it was.
//
// Test double: `DelaySource` stands in for the NBD export of a fleecing node (the ExtentSource
// interface NbdClient implements), answering from memory after a random delay so that reads
// complete out of order, which QEMU's server does not do on demand. The real NBD path is covered
// by backup-qemu.test.ts.

import t from 'tap';
import { createHash } from 'node:crypto';
import { copyDisk, type ExtentSource, SourcePool, STATE_HOLE, STATE_ZERO } from '../src/backup/disk-copy.js';
import type { FileStream } from '../src/namespace/file-stream.js';
import { runGc } from '../src/namespace/maintenance.js';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { generate, Rng } from './helpers/data.js';
import { readFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const KiB = 1024;
const MiB = 1024 * KiB;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A disk in memory whose zero extents are given; reads answer after 0-3 ms, in any order. */
class DelaySource implements ExtentSource {
  reads = 0;
  readBytes = 0;

  constructor(
    private readonly disk: Buffer,
    private readonly zeros: Array<{ offset: number; length: number }>,
    private readonly rng: Rng,
    private readonly onRead: (offset: number) => Promise<void> | void = () => {},
  ) {}

  get size(): number {
    return this.disk.length;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.reads++;
    await this.onRead(offset);
    await new Promise((r) => setTimeout(r, this.rng.int(4)));
    if (this.zeros.some((z) => offset < z.offset + z.length && z.offset < offset + length)) throw new Error(`read of a zero extent at ${offset}`);
    this.readBytes += length;
    return Buffer.from(this.disk.subarray(offset, offset + length));
  }

  async blockStatus(offset: number, length: number): Promise<Array<{ offset: number; length: number; flags: number }>> {
    const out = [];
    const end = offset + length;
    let at = offset;
    for (const z of this.zeros) {
      if (z.offset + z.length <= at || z.offset >= end) continue;
      if (z.offset > at) out.push({ offset: at, length: z.offset - at, flags: 0 });
      const to = Math.min(end, z.offset + z.length);
      out.push({ offset: Math.max(at, z.offset), length: to - Math.max(at, z.offset), flags: STATE_HOLE | STATE_ZERO });
      at = to;
    }
    if (at < end) out.push({ offset: at, length: end - at, flags: 0 });
    return out;
  }
}

/** A disk of random data with zero extents of 64 KiB, 320 KiB, 3 MiB and a zero tail. */
function makeDisk(seed: number, dataBytes: number): { disk: Buffer; zeros: Array<{ offset: number; length: number }> } {
  const zeros = [
    { offset: 1 * MiB, length: 64 * KiB },
    { offset: 2 * MiB + 64 * KiB, length: 320 * KiB },
    { offset: 5 * MiB, length: 3 * MiB },
    { offset: dataBytes, length: 8 * MiB },
  ];
  const disk = Buffer.concat([generate(new Rng(seed), 'random', dataBytes), Buffer.alloc(8 * MiB)]);
  for (const z of zeros) disk.fill(0, z.offset, z.offset + z.length);
  return { disk, zeros };
}

async function setup(t: { teardown(fn: () => unknown): void }): Promise<{ store: SegmentStore; ns: Namespace }> {
  const store = await SegmentStore.open(tmpDir(t));
  const ns = await Namespace.open(store, { log: () => {} });
  t.teardown(async () => {
    await ns.close();
    await store.close();
  });
  await ns.fs.mkdir('/s', 0o755);
  return { store, ns };
}

t.test('reads that complete out of order land in order; zero extents read back as zeros and are never read', async (t) => {
  const { store, ns } = await setup(t);
  const { disk, zeros } = makeDisk(21, 24 * MiB);
  const fh = await ns.fs.create('/s/vda.raw', 0o600);
  await ns.fs.ftruncate(fh, disk.length);
  const inFlight = 16;
  const chunk = 64 * KiB;
  // Bytes read and not yet in the stream: bounded by the reads in flight.
  let peak = 0;
  let stream: FileStream | undefined;
  const open = ns.stream.bind(ns);
  ns.stream = (h: number) => (stream = open(h));
  const streamOffset = () => stream?.offset ?? 0;
  const srcs = [0, 1].map((k) => new DelaySource(disk, zeros, new Rng(100 + k), () => {}));
  const pool = new SourcePool(srcs);
  const sample = setInterval(() => (peak = Math.max(peak, srcs[0].readBytes + srcs[1].readBytes - streamOffset())), 1);
  let r;
  try {
    r = await copyDisk(ns, fh, pool, { inFlight, chunkBytes: chunk });
  } finally {
    clearInterval(sample);
  }
  const dataBytes = disk.length - zeros.reduce((n, z) => n + z.length, 0);
  t.equal(r.bytesRead, dataBytes, 'read the data extents only');
  t.equal(r.bytesConsidered, disk.length);
  t.ok(peak <= inFlight * chunk, `held at most ${peak / KiB} KiB read ahead of the stream (${inFlight} x ${chunk / KiB} KiB in flight)`);
  t.equal(store.writesInProgress, 0, 'the stream no longer holds containers from GC once it finished');
  await ns.fs.release(fh);
  t.equal(sha(await readFile(ns, '/s/vda.raw')), sha(disk), 'the file holds the disk');
});

t.test('a garbage collection in the middle of a full copy keeps what the stream stored so far', async (t) => {
  const { ns } = await setup(t);
  const { disk, zeros } = makeDisk(22, 32 * MiB);
  const fh = await ns.fs.create('/s/vda.raw', 0o600);
  await ns.fs.ftruncate(fh, disk.length);
  let gc: Promise<unknown> | undefined;
  // The read at 20 MiB waits for a whole GC run: by then the first ~20 MiB are stored, in
  // containers GC seals and may sweep, and referenced by no file yet.
  const src = new DelaySource(disk, zeros, new Rng(7), async (offset) => {
    if (offset !== 20 * MiB) return;
    await new Promise((r) => setTimeout(r, 300));
    gc = runGc(ns, { copyForwardBelow: 1 });
    await gc;
  });
  await copyDisk(ns, fh, src, { inFlight: 8, chunkBytes: 256 * KiB });
  t.ok(gc, 'a GC ran during the copy');
  await ns.fs.release(fh);
  t.equal(sha(await readFile(ns, '/s/vda.raw')), sha(disk), 'the file reads back whole after the GC');
  // And a second GC after the copy (the file now an ordinary root) loses nothing either.
  await runGc(ns, { copyForwardBelow: 1 });
  t.equal(sha(await readFile(ns, '/s/vda.raw')), sha(disk), 'and after a GC with the copy done');
});

t.test('a full copy that fails leaves the file as it was and no stream behind', async (t) => {
  const { store, ns } = await setup(t);
  const { disk, zeros } = makeDisk(23, 16 * MiB);
  const before = generate(new Rng(5), 'random', disk.length);
  const fh = await ns.fs.create('/s/vda.raw', 0o600);
  ns.fs.write(fh, 0, before);
  await ns.fs.fsync(fh);
  const src = new DelaySource(disk, zeros, new Rng(9), (offset) => {
    if (offset === 10 * MiB) throw new Error('the export went away');
  });
  await t.rejects(copyDisk(ns, fh, src, { inFlight: 8, chunkBytes: 256 * KiB }), /the export went away/);
  t.equal(store.writesInProgress, 0, 'no hold on containers left behind');
  await ns.fs.release(fh);
  t.equal(sha(await readFile(ns, '/s/vda.raw')), sha(before), 'the file holds what it held before the copy');
});

t.test('a write to the file during a full copy fails the copy with CONFLICT and is kept', async (t) => {
  const { store, ns } = await setup(t);
  const { disk, zeros } = makeDisk(24, 16 * MiB);
  const fh = await ns.fs.create('/s/vda.raw', 0o600);
  await ns.fs.ftruncate(fh, disk.length);
  const other = await ns.fs.open('/s/vda.raw', 2 /* O_RDWR */);
  const mark = Buffer.from('written through another descriptor during the copy');
  // Half way, someone writes and commits through another descriptor (a hypervisor through the
  // mount): replacing the content now would drop that write without a word.
  const src = new DelaySource(disk, zeros, new Rng(11), async (offset) => {
    if (offset !== 8 * MiB) return;
    ns.fs.write(other, 12 * MiB, mark);
    await ns.fs.fsync(other);
  });
  await t.rejects(copyDisk(ns, fh, src, { inFlight: 8, chunkBytes: 256 * KiB }), { code: 'CONFLICT', message: /written while a stream replaced its content/ });
  t.equal(store.writesInProgress, 0, 'no hold on containers left behind');
  await ns.fs.release(other);
  await ns.fs.release(fh);
  const after = await readFile(ns, '/s/vda.raw');
  t.equal(after.length, disk.length, 'the file keeps its size');
  t.ok(after.subarray(12 * MiB, 12 * MiB + mark.length).equals(mark), 'and the write');
  t.equal(sha(Buffer.concat([after.subarray(0, 12 * MiB), after.subarray(12 * MiB + mark.length)])), sha(Buffer.alloc(disk.length - mark.length)), 'and nothing of the stream');
});
