// Whole MiB-blocks of zeros in written bytes skip the copy and the cut (ChunkStream.feed): the
// tree must be the one the cut loop gives the same bytes, wherever the zero runs start and end
// relative to segment boundaries and to the writes' pieces.

import t from 'tap';
import { SegmentStore } from '../src/store/store.js';
import { Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1 << 20;

function image(rng: Rng): Buffer {
  const parts: Buffer[] = [];
  for (let k = 0; k < 12; k++) {
    parts.push(rng.bytes(rng.range(1, 3 * MiB)));
    parts.push(Buffer.alloc(rng.int(4) === 0 ? rng.range(1, 70000) : rng.range(1, 6 * MiB)));
  }
  return Buffer.concat(parts);
}

async function write(store: SegmentStore, data: Buffer, pieces: (at: number) => number) {
  const w = store.writer();
  for (let at = 0; at < data.length; ) {
    const n = Math.min(data.length - at, pieces(at));
    await w.write(data.subarray(at, at + n));
    at += n;
  }
  return (await w.finish()).version;
}

t.test('zero blocks skipped in big writes give the tree of small writes', async (t) => {
  const store = await SegmentStore.open(tmpDir(t));
  t.teardown(() => store.close());
  const rng = new Rng(31);
  for (let round = 0; round < 4; round++) {
    const data = image(rng);
    const small = await write(store, data, () => 65521); // never a whole aligned MiB block
    const big = await write(store, data, () => 8 * MiB);
    const odd = await write(store, data, () => rng.range(MiB, 5 * MiB));
    t.ok(big.root.equals(small.root) && big.height === small.height, `round ${round}: 8 MiB writes, same root`);
    t.ok(odd.root.equals(small.root), `round ${round}: 1-5 MiB writes, same root`);
    t.ok((await store.read(big, 0, big.size)).equals(data), `round ${round}: reads back`);
  }
});
