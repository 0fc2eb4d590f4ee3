// An edit of scattered runs (an incremental backup's commit) re-chunks the old segments at the
// edges of each run. It reads them ahead in batches (TreeWriter.prefetchEdges), not one round
// trip each, and the version it builds is the one a stream of the same bytes builds.

import t from 'tap';
import { SegmentStore } from '../src/store/store.js';
import { Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

const KiB = 1024;
/** SegmentReader's private read of segments not in its cache (from containers, or memory). */
type Decode = (out: Buffer | undefined, pieces: unknown[], ...rest: unknown[]) => Promise<Buffer[]>;
const MiB = 1024 * KiB;

t.test('an edit of 40 scattered runs reads its old edge segments in a few batches and builds the streamed tree', async (t) => {
  const dir = tmpDir(t);
  const store = await SegmentStore.open(dir);
  const rng = new Rng(11);
  const base = rng.bytes(8 * MiB);
  const w0 = await store.writeBuffer(base);
  await store.commit([], w0.deps);

  // Runs of 20 KiB every ~200 KiB, at offsets no segment boundary is likely to meet.
  const want = Buffer.from(base);
  const extents: Array<{ offset: number; data: Buffer }> = [];
  for (let i = 0; i < 40; i++) {
    const offset = i * 200 * KiB + 4 * KiB + rng.int(100 * KiB);
    const data = rng.bytes(20 * KiB);
    data.copy(want, offset);
    extents.push({ offset, data });
  }

  // Reopened, so the base's segments are read from their container files, not from memory.
  await store.close();
  const reopened = await SegmentStore.open(dir);
  t.teardown(() => reopened.close());
  // The reader the store's writers use (private to the store): its reads that miss the cache
  // (decodes from container files) counted.
  const reader = (reopened as unknown as { reader: { decode: Decode } }).reader;
  const decode = reader.decode.bind(reader);
  let calls = 0;
  let read = 0;
  reader.decode = async (out, pieces, ...rest) => {
    calls++;
    read += pieces.length;
    return decode(out, pieces, ...rest);
  };
  const r = await reopened.writeExtents(w0.version, extents);
  await reopened.commit([], r.deps);
  reader.decode = decode;

  t.ok(read >= 40, `the edges' old segments were read (${read} segments)`);
  // Batches of the edges of 64 pieces (81 pieces here), and the tree's nodes one by one as
  // before: measured 33 reads of 191 segments; one read per segment before (148 of 148).
  t.ok(calls * 4 <= read, `in ${calls} reads, not one per segment`);
  t.ok((await reopened.read(r.version, 0, want.length)).equals(want), 'the edited version holds the written bytes');
  const streamed = await reopened.writeBuffer(want);
  t.same(r.version, streamed.version, 'the same tree as a stream of the same bytes');
});

t.test('an edit of runs written in 64 KiB pieces reads its edges per 64 old ranges, the next window while this one is written', async (t) => {
  const dir = tmpDir(t);
  const store = await SegmentStore.open(dir);
  const rng = new Rng(12);
  const base = rng.bytes(24 * MiB);
  const w0 = await store.writeBuffer(base);
  await store.commit([], w0.deps);

  // As an incremental backup's copy writes: 100 dirty runs of 192 KiB, each as three 64 KiB
  // extents (the NBD reads' buffers, kept as they came): ~400 pieces, 100 of them old ranges.
  const want = Buffer.from(base);
  const extents: Array<{ offset: number; data: Buffer }> = [];
  for (let i = 0; i < 100; i++) {
    const offset = i * 240 * KiB + 4 * KiB + rng.int(16 * KiB);
    for (let j = 0; j < 3; j++) {
      const data = rng.bytes(64 * KiB);
      data.copy(want, offset + j * 64 * KiB);
      extents.push({ offset: offset + j * 64 * KiB, data });
    }
  }

  await store.close();
  const reopened = await SegmentStore.open(dir);
  t.teardown(() => reopened.close());
  const internals = reopened as unknown as { reader: { decode: Decode }; engine: { hash: (...a: unknown[]) => Promise<unknown> } };
  const reader = internals.reader;
  const engine = internals.engine;
  const decode = reader.decode.bind(reader);
  const hash = engine.hash.bind(engine);
  // Batch reads of edge segments (more than a handful of segments at once), and how many
  // batches of new bytes the edit had hashed when each began.
  let hashed = 0;
  const batches: Array<{ segments: number; hashedBefore: number }> = [];
  reader.decode = async (out, pieces, ...rest) => {
    if (pieces.length > 8) batches.push({ segments: pieces.length, hashedBefore: hashed });
    return decode(out, pieces, ...rest);
  };
  engine.hash = (...a: unknown[]) => {
    hashed++;
    return hash(...a);
  };
  const r = await reopened.writeExtents(w0.version, extents);
  await reopened.commit([], r.deps);
  reader.decode = decode;
  engine.hash = hash;

  // Windows of 64 old ranges: 2 batches here; windows of 64 pieces of any kind made 7.
  t.ok(batches.length >= 2 && batches.length <= 3, `edge segments read in ${batches.length} batches (${batches.map((b) => b.segments).join(', ')} segments)`);
  // The second window's edges are asked for before the first window's new bytes are hashed:
  // read ahead, not after the first window was written.
  // Read after the first window was written, the second batch would follow its ~64 runs' new
  // bytes (two thirds of the edit's hashing); read ahead, it begins while the first runs are cut.
  t.ok(batches.length >= 2 && batches[1].hashedBefore * 3 < hashed, `the next window is read while this one is written (${batches[1]?.hashedBefore} of ${hashed} batches hashed before)`);
  t.ok((await reopened.read(r.version, 0, want.length)).equals(want), 'the edited version holds the written bytes');
  const streamed = await reopened.writeBuffer(want);
  t.same(r.version, streamed.version, 'the same tree as a stream of the same bytes');
});
