// The decoded cache (src/store/decoded-cache.ts): a file read a third time through the store's
// file reads (the mount's path) copies verified bytes instead of reading, decoding and
// re-hashing its segments again; a segment read once is not kept (a single pass pays no copy
// and maps no arena), one read twice is; a restore's direct reads do not fill it; verify never reads
// through it, so damage that reaches a container after its segments were cached is still
// found; and whatever the budget and the order of puts, a hit is the segment's own bytes.

import t from 'tap';
import { DecodedCache } from '../src/store/decoded-cache.js';
import { SegmentStore } from '../src/store/store.js';
import { allRecords, containerPath, flipByte, RECORD_HEADER_BYTES } from './helpers/containers.js';
import { generate, Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

const pick = (s: { entries: number; arenaBytes: number }) => ({ entries: s.entries, arenaBytes: s.arenaBytes });

/** Reads the whole version as the mount does: 1 MiB requests in order, through read-ahead. */
async function readAll(store: SegmentStore, v: Parameters<SegmentStore['read']>[0]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let off = 0; off < v.size; off += 1 << 20) parts.push(await store.read(v, off, 1 << 20));
  return Buffer.concat(parts);
}

t.test('a second pass over a file decodes nothing and reads identical, even with its containers damaged meanwhile', async (t) => {
  const dir = tmpDir(t);
  const rng = new Rng(1414);
  // Compressible and incompressible data around a hole, as a VM disk has. The hole makes the
  // file longer than the read-ahead keeps windows behind and ahead of its reader (16 + 16 MiB),
  // so the second pass reads its segments again rather than from the first pass's windows.
  const content = Buffer.concat([generate(rng, 'text', 5 << 20), Buffer.alloc(26 << 20), rng.bytes((3 << 20) + 4321), generate(rng, 'sparse', 2 << 20)]);
  const w = await SegmentStore.open(dir);
  const { version } = await w.writeBuffer(content);
  await w.commit();
  await w.close(); // seals the containers, so every record is in a table
  const store = await SegmentStore.open(dir, { decodedCacheBytes: 64 << 20, log: () => {} });
  t.teardown(() => store.close());

  t.ok((await readAll(store, version)).equals(content), 'first pass identical');
  const after0 = store.reader.decodedCacheStats();
  // Only a segment the file holds twice (the generated text repeats) is read twice in one pass.
  t.ok(after0.ghosted > 100, `the first pass noted ${after0.ghosted} fingerprints`);
  t.ok(after0.puts <= after0.ghosted / 50, `the first pass kept next to nothing (${after0.puts} segments it met twice)`);
  t.ok((await readAll(store, version)).equals(content), 'second pass identical');
  const after1 = store.reader.decodedCacheStats();
  t.ok(after1.puts > 0 && after1.bytes > 0, `the second pass kept what it decoded again (${after1.puts} segments, ${after1.bytes} bytes)`);
  t.ok(after1.puts >= after0.ghosted * 0.95, `nearly every segment noted on the first pass was kept on the second (${after1.puts} of ${after0.ghosted})`);

  // Damage every data record's payload: a read that went to the containers would now fail.
  const data = allRecords(dir).filter((r) => r.kind === 0);
  t.ok(data.length > 100, `${data.length} data records`);
  for (const r of data) flipByte(containerPath(dir, r.cid), r.offset + RECORD_HEADER_BYTES + Math.floor(r.storedLen / 2));

  const third = await readAll(store, version);
  t.ok(third.equals(content), 'third pass identical: served from verified bytes, no container read');
  const after2 = store.reader.decodedCacheStats();
  t.equal(after2.puts, after1.puts, 'the third pass decoded nothing new');
  t.ok(after2.hitBytes - after1.hitBytes >= content.length - (26 << 20) - (2 << 20), `the third pass hit ${after2.hitBytes - after1.hitBytes} bytes`);

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
  // Random bytes: no segment repeats within the file, so a first read offers each only once.
  const content = rng.bytes(6 << 20);
  const { version } = await store.writeBuffer(content);
  await store.commit();
  t.ok((await store.readDirect(version, 0, content.length)).equals(content), 'direct read identical');
  t.equal(store.reader.decodedCacheStats().entries, 0, 'a direct read keeps nothing');
  t.ok((await readAll(store, version)).equals(content), 'file read identical');
  t.same(pick(store.reader.decodedCacheStats()), { entries: 0, arenaBytes: 0 }, 'a first file read keeps nothing and maps no arena');
  t.ok((await readAll(store, version)).equals(content), 'second file read identical');
  t.ok(store.reader.decodedCacheStats().entries > 0, 'a second file read keeps what it decoded');
  const off = await SegmentStore.open(tmpDir(t), { decodedCacheBytes: 0 });
  t.teardown(() => off.close());
  const v2 = (await off.writeBuffer(content)).version;
  await off.commit();
  t.ok((await readAll(off, v2)).equals(content), 'with the cache off, identical');
  t.ok((await readAll(off, v2)).equals(content), 'with the cache off, identical again');
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
  for (let round = 0; round < 4; round++) for (let i = 0; i < 100; i++) if (!c.get(fpOf(i))) c.put(fpOf(i), bytesOf(i, 65536), 0, 65536);
  t.equal(c.stats().puts, 100, 'a working set under the budget is kept once');
  t.equal(c.stats().ghosted, 100, 'after one pass that only noted it');
  t.equal(c.stats().hits, 200, 'and hit on every later pass');
});

t.test('admission: a segment offered once is not kept and maps no arena; offered twice, it is kept', async (t) => {
  const fp = (i: number) => {
    const b = Buffer.alloc(32);
    b.writeUInt32LE(Math.imul(i + 1, 2654435761) >>> 0, 0);
    b.writeUInt32LE(Math.imul(i + 7, 40503) >>> 0, 4);
    b.writeUInt32LE(i, 8);
    return b;
  };
  const c = new DecodedCache(16 << 20);
  // One pass over more than the budget of distinct segments: nothing kept.
  let early = 0;
  for (let i = 0; i < 4000; i++) {
    if (c.get(fp(i))) early++;
    c.put(fp(i), Buffer.alloc(8192, i & 255), 0, 8192);
  }
  t.equal(early, 0, 'no hit on a first pass');
  let s = c.stats();
  t.same({ puts: s.puts, entries: s.entries, bytes: s.bytes, arenaBytes: s.arenaBytes, ghosted: s.ghosted }, { puts: 0, entries: 0, bytes: 0, arenaBytes: 0, ghosted: 4000 }, 'a single pass keeps nothing and allocates no arena');
  t.equal(c.get(fp(3990)), undefined, 'a segment read once is not a hit');
  // Read again: its second offer admits it, and the bytes a hit returns are its own.
  const bytes = Buffer.alloc(8192, 77);
  bytes.write('segment five', 100);
  c.put(fp(3990), Buffer.concat([Buffer.alloc(10), bytes]), 10, 8192);
  s = c.stats();
  t.equal(s.puts, 1, 'the second offer is kept');
  t.equal(s.arenaBytes, 16 << 20, 'the arena is allocated at the first admission');
  t.ok(c.get(fp(3990))?.equals(bytes), 'a hit returns the segment kept');
  // The last ghost entries are still known after a pass that overflows nothing (4000 tags, 8192 slots).
  let kept = 0;
  for (let i = 3900; i < 4000; i++) {
    c.put(fp(i), Buffer.alloc(8192, i & 255), 0, 8192);
    if (c.get(fp(i))) kept++;
  }
  t.equal(kept, 100, 'every segment read a second time soon after its first is kept');
  // Passes over more than the budget (31 MiB against 16): each segment is read again only after
  // 31 MiB of other reads, so it would be evicted before its next read: none is kept, whatever
  // the pass, and what the cache holds stays.
  const before = c.stats();
  let far = 0;
  for (let pass = 0; pass < 2; pass++) {
    for (let i = 0; i < 4000; i++) {
      if (c.get(fp(i))) continue;
      c.put(fp(i), Buffer.alloc(8192, i & 255), 0, 8192);
      far++;
    }
  }
  s = c.stats();
  t.equal(s.puts, before.puts, `passes over twice the budget keep nothing (${far} second offers, ${s.puts - before.puts} kept)`);
  t.ok(s.tooFar >= far - 200, `each was refused as read again too far apart (${s.tooFar})`);
  t.ok(c.get(fp(3990))?.equals(bytes), 'what was kept is still there');
  // clear() forgets the ghost too: a cold cache again.
  c.clear();
  c.put(fp(6), Buffer.alloc(8192, 6), 0, 8192);
  t.equal(c.get(fp(6)), undefined, 'after clear(), a first offer is not kept');
});
