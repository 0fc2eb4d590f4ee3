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
