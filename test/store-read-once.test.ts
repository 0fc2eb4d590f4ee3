// One pass over a file through the store's read-ahead (what the mount does for each FUSE read:
// SegmentStore.readWith) reads each segment from its container once, when the reads arrive out
// of order as they do through the mount: the kernel's 1 MiB read-ahead requests handed over a
// few MiB late by libfuse's threads (a sequential reader: qemu-img bench, a recovered VM), and
// `qemu-img convert`'s 8 reads of 2 MiB in flight at once (a parallel reader). The orders below
// are the shapes traced through a real mount (tools/PERFORMANCE.md, recovery5), replayed here
// so the test is deterministic.
//
// What counts a read from the store: every segment decoded from a container for a file read is
// offered to the decoded cache (decoded-cache.ts), which notes the first offer of a fingerprint
// (`ghosted`) and keeps or refuses the second (`puts`, `tooFar`). The file is random bytes, so
// no two of its segments are alike: any second offer is a segment read twice.
//
// Checked to fail before the fix (read-ahead.ts with windows kept 1 MiB behind and a late read
// resetting the stream; segment-reader.ts without `partials`): 883 (sequential) and 687
// (parallel) of 7,141 segments were read twice; with the read-ahead fix alone, 4-6 (the
// segments across the edge of two windows read at once).

import t from 'tap';
import { SegmentStore } from '../src/store/store.js';
import { Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';
import type { TestT } from './helpers/tap-types.js';

const MiB = 1 << 20;
const SIZE = 64 * MiB;

/** Each pass gets a store of its own: the decoded cache's notes start empty. */
async function pass(t: TestT, order: (rng: Rng) => number[][]): Promise<{ first: number; again: number; bad: number }> {
  const store = await SegmentStore.open(tmpDir(t));
  t.teardown(() => store.close());
  const rng = new Rng(314);
  const a = rng.bytes(SIZE);
  const v = (await store.writeBuffer(a)).version;
  await store.commit();
  let bad = 0;
  // Batches of 1 MiB requests (by index), each handed over in the order given, then awaited
  // together: the requests in flight at once.
  for (const batch of order(rng)) {
    await Promise.all(
      batch.map((k) => {
        const off = k * MiB;
        const r = store.readWith(v, off, MiB, (b) => {
          if (!b.equals(a.subarray(off, off + MiB))) bad++;
        });
        return r === true ? undefined : r;
      }),
    );
  }
  const s = store.reader.decodedCacheStats();
  return { first: s.ghosted, again: s.puts + s.tooFar, bad };
}

const N = SIZE / MiB;

/** Requests (MiB index k, arrival time) in order of arrival, handed over 8 at a time (8 in flight). */
function inFlight8(keyed: Array<{ k: number; at: number }>): number[][] {
  keyed.sort((x, y) => x.at - y.at);
  const out: number[][] = [];
  for (let i = 0; i < keyed.length; i += 8) out.push(keyed.slice(i, i + 8).map((x) => x.k));
  return out;
}

t.test('a sequential reader whose requests arrive up to 4 MiB late reads each segment once', async (t) => {
  const r = await pass(t, (rng) => {
    // Request k is handed over at position k + (0..4): up to 4 MiB late. 8 in flight.
    const keyed = Array.from({ length: N }, (_, k) => ({ k, at: k + rng.int(5) + rng.int(1000) / 1000 }));
    return inFlight8(keyed);
  });
  t.equal(r.bad, 0, 'every read equals the file');
  t.ok(r.first > SIZE / (64 * 1024), `${r.first} segments read`);
  t.equal(r.again, 0, `no segment read from the store twice (${r.again} were)`);
});

t.test("qemu-img convert's 8 parallel 2 MiB reads, some of them 8-14 MiB late, read each segment once", async (t) => {
  const r = await pass(t, (rng) => {
    // 2 MiB chunks taken in order by 8 readers: a chunk's two requests arrive in either order,
    // up to 6 MiB late, and one chunk in 8 (a reader that stalled) 8-14 MiB late.
    const keyed: Array<{ k: number; at: number }> = [];
    for (let c = 0; c < N; c += 2) {
      const late = rng.int(8) === 0 ? 8 + rng.int(7) : rng.int(7);
      for (const k of rng.int(2) ? [c, c + 1] : [c + 1, c]) keyed.push({ k, at: c + late + rng.int(1000) / 1000 });
    }
    return inFlight8(keyed);
  });
  t.equal(r.bad, 0, 'every read equals the file');
  t.ok(r.first > SIZE / (64 * 1024), `${r.first} segments read`);
  t.equal(r.again, 0, `no segment read from the store twice (${r.again} were)`);
});
