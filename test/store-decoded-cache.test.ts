// The decoded cache (src/store/decoded-cache.ts): a file read a second time through the store's
// file reads (the mount's path) copies verified bytes instead of reading, decoding and
// re-hashing its segments again; a restore's direct reads do not fill it; verify never reads
// through it, so damage that reaches a container after its segments were cached is still
// found; and whatever the budget and the order of puts, a hit is the segment's own bytes.

import t from 'tap';
import { DecodedCache } from '../src/store/decoded-cache.js';
import { SegmentStore } from '../src/store/store.js';
import { allRecords, containerPath, flipByte, RECORD_HEADER_BYTES } from './helpers/containers.js';
import { generate, Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

/** Reads the whole version as the mount does: 1 MiB requests in order, through read-ahead. */
async function readAll(store: SegmentStore, v: Parameters<SegmentStore['read']>[0]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let off = 0; off < v.size; off += 1 << 20) parts.push(await store.read(v, off, 1 << 20));
  return Buffer.concat(parts);
}

t.test('a second pass over a file decodes nothing and reads identical, even with its containers damaged meanwhile', async (t) => {
  const dir = tmpDir(t);
  const rng = new Rng(1414);
  // Compressible and incompressible data around a hole, as a VM disk has.
  const content = Buffer.concat([generate(rng, 'text', 5 << 20), Buffer.alloc(6 << 20), rng.bytes((3 << 20) + 4321), generate(rng, 'sparse', 2 << 20)]);
  const w = await SegmentStore.open(dir);
  const { version } = await w.writeBuffer(content);
  await w.commit();
  await w.close(); // seals the containers, so every record is in a table
  const store = await SegmentStore.open(dir, { decodedCacheBytes: 64 << 20, log: () => {} });
  t.teardown(() => store.close());

  t.ok((await readAll(store, version)).equals(content), 'first pass identical');
  const after1 = store.reader.decodedCacheStats();
  t.ok(after1.puts > 0 && after1.bytes > 0, `the first pass kept what it decoded (${after1.puts} segments, ${after1.bytes} bytes)`);

  // Damage every data record's payload: a read that went to the containers would now fail.
  const data = allRecords(dir).filter((r) => r.kind === 0);
  t.ok(data.length > 100, `${data.length} data records`);
  for (const r of data) flipByte(containerPath(dir, r.cid), r.offset + RECORD_HEADER_BYTES + Math.floor(r.storedLen / 2));

  const second = await readAll(store, version);
  t.ok(second.equals(content), 'second pass identical: served from verified bytes, no container read');
  const after2 = store.reader.decodedCacheStats();
  t.equal(after2.puts, after1.puts, 'the second pass decoded nothing new');
  t.ok(after2.hitBytes - after1.hitBytes >= content.length - (6 << 20) - (2 << 20), `the second pass hit ${after2.hitBytes - after1.hitBytes} bytes`);

  // verify reads containers, never the cache: every damaged record is named.
  const report = await store.verify({ full: true });
  const bad = new Set(report.problems.filter((p) => p.kind === 'corrupt-segment').map((p) => `${p.container}:${p.offset}`));
  t.equal(data.filter((r) => bad.has(`${r.cid}:${r.offset}`)).length, data.length, 'verify names every damaged record');

  // A restore's direct reads use hits but neither fill the cache nor hide damage it does not hold.
  store.reader.clearCaches();
  await t.rejects(store.readDirect(version, 0, 1 << 20), { code: 'CORRUPT_SEGMENT' }, 'with the cache emptied, the damage is met by the next read');
  t.equal(store.reader.decodedCacheStats().entries, 0, 'a failed read keeps nothing');
});

t.test('direct reads (restores) do not fill the cache; file reads do', async (t) => {
  const dir = tmpDir(t);
  const store = await SegmentStore.open(dir, { decodedCacheBytes: 64 << 20 });
  t.teardown(() => store.close());
  const rng = new Rng(1415);
  const content = generate(rng, 'text', 6 << 20);
  const { version } = await store.writeBuffer(content);
  await store.commit();
  t.ok((await store.readDirect(version, 0, content.length)).equals(content), 'direct read identical');
  t.equal(store.reader.decodedCacheStats().entries, 0, 'a direct read keeps nothing');
  t.ok((await readAll(store, version)).equals(content), 'file read identical');
  t.ok(store.reader.decodedCacheStats().entries > 0, 'a file read keeps what it decoded');
  const off = await SegmentStore.open(tmpDir(t), { decodedCacheBytes: 0 });
  t.teardown(() => off.close());
  const v2 = (await off.writeBuffer(content)).version;
  await off.commit();
  t.ok((await readAll(off, v2)).equals(content), 'with the cache off, identical');
  t.equal(off.reader.decodedCacheStats().entries, 0, 'with the cache off, nothing kept');
});

t.test('model: any budget, any order of puts and gets, a hit is the segment itself', async (t) => {
  const rng = new Rng(1416);
  const fpOf = (i: number) => {
    const b = Buffer.alloc(32);
    b.writeUInt32LE(i, 0);
    b.writeUInt32LE(Math.imul(i, 2654435761) >>> 0, 28);
    return b;
  };
  const bytesOf = (i: number, len: number) => {
    // Each segment its own bytes: a fill of its own value, its number at both ends.
    const b = Buffer.alloc(len, (i * 7 + 1) & 255);
    b[0] = i & 255;
    b[len - 1] = (i >> 8) & 255;
    return b;
  };
  for (const budget of [4 << 20, 12 << 20, 32 << 20]) {
    const c = new DecodedCache(budget);
    const lens = new Map<number, number>();
    let wrong = 0;
    let hits = 0;
    for (let step = 0; step < 10_000; step++) {
      const i = rng.int(3000);
      if (!lens.has(i)) lens.set(i, 1 + rng.int(65536));
      const len = lens.get(i)!;
      const got = c.get(fpOf(i));
      if (got) {
        hits++;
        if (!got.equals(bytesOf(i, len))) wrong++;
      } else {
        const src = Buffer.concat([rng.bytes(100), bytesOf(i, len)]);
        c.put(fpOf(i), src, 100, len);
      }
    }
    const s = c.stats();
    t.equal(wrong, 0, `budget ${budget >> 20} MiB: ${hits} hits, all the segment's bytes`);
    t.ok(s.bytes <= budget, `budget ${budget >> 20} MiB: ${s.bytes} bytes kept`);
    t.ok(hits > 0, 'some hits');
  }
  // A working set that fits is kept whole while it is read over and over.
  const c = new DecodedCache(8 << 20);
  for (let round = 0; round < 3; round++) for (let i = 0; i < 100; i++) if (!c.get(fpOf(i))) c.put(fpOf(i), bytesOf(i, 65536), 0, 65536);
  t.equal(c.stats().puts, 100, 'a working set under the budget is decoded once');
});
