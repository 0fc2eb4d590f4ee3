// What deduplication costs on disk, measured with the store's own counters on a real store:
// a second copy of 256 MiB of real files, a copy shifted by a few inserted bytes, and a
// 4 KiB write into the middle of a 1 GiB file.

import t from 'tap';
import { fpHex, isZeroFp } from '../src/store/codec/fingerprint.js';
import { SegmentStore, type FileVersion, type StoreStats } from '../src/store/store.js';
import { childFp } from '../src/store/tree/node.js';
import { noisePiece, usrCorpus } from './helpers/corpus.js';
import { Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

async function writeStream(store: SegmentStore, pieces: Iterable<Buffer>): Promise<FileVersion> {
  const w = store.writer();
  for (const p of pieces) await w.write(p);
  const { version, deps } = await w.finish();
  await store.commit([], deps);
  return version;
}

function* slices(buf: Buffer, size = MiB): Generator<Buffer> {
  for (let at = 0; at < buf.length; at += size) yield buf.subarray(at, at + size);
}

function delta(a: StoreStats, b: StoreStats): { segments: number; nodes: number; stored: number; unique: number } {
  return { segments: b.segments - a.segments, nodes: b.treeNodes - a.treeNodes, stored: b.storedBytes - a.storedBytes, unique: b.uniqueBytes - a.uniqueBytes };
}

/** Tree nodes of a version by level: level -> set of hex fingerprints. */
async function nodesByLevel(store: SegmentStore, v: FileVersion): Promise<Map<number, Set<string>>> {
  const out = new Map<number, Set<string>>();
  const walk = async (fp: Buffer): Promise<void> => {
    const n = await store.reader.node(fp);
    const set = out.get(n.level) ?? new Set<string>();
    if (set.has(fpHex(fp))) return;
    set.add(fpHex(fp));
    out.set(n.level, set);
    if (n.level > 1) for (let i = 0; i < n.count; i++) await walk(childFp(n, i));
  };
  if (v.height > 0 && !isZeroFp(v.root)) await walk(v.root);
  return out;
}

t.test('the same 256 MiB stored twice costs < 1% extra space, and so does a shifted copy', { timeout: 240_000 }, async (t) => {
  const store = await SegmentStore.open(tmpDir(t));
  t.teardown(() => store.close());
  const corpus = usrCorpus(256 * MiB);
  const s0 = await store.stats();
  const first = await writeStream(store, slices(corpus));
  const s1 = await store.stats();
  const d1 = delta(s0, s1);
  t.comment(`first copy: ${d1.segments} segments (${d1.nodes} tree nodes), ${(d1.unique / MiB).toFixed(1)} MiB unique, ${(d1.stored / MiB).toFixed(1)} MiB stored`);
  t.ok(d1.stored > 0 && d1.stored < corpus.length, 'the first copy is stored, compressed');

  const second = await writeStream(store, slices(corpus, 3 * MiB + 17));
  const s2 = await store.stats();
  const d2 = delta(s1, s2);
  t.comment(`identical copy: +${d2.segments} segments, +${d2.stored} bytes stored (${((100 * d2.stored) / d1.stored).toFixed(4)}%)`);
  t.ok(second.root.equals(first.root) && second.size === first.size, 'the identical copy has the same root');
  t.ok(d2.stored < d1.stored / 100, `the identical copy adds < 1% (${d2.stored} bytes)`);

  const prefix = Buffer.from('shift!!');
  const shifted = await writeStream(store, [prefix, ...slices(corpus)]);
  const s3 = await store.stats();
  const d3 = delta(s2, s3);
  t.comment(`copy shifted by ${prefix.length} bytes: +${d3.segments} segments (${d3.segments - d3.nodes} data, ${d3.nodes} tree nodes), +${d3.stored} bytes stored (${((100 * d3.stored) / d1.stored).toFixed(4)}%)`);
  t.ok(d3.stored < d1.stored / 100, `the shifted copy adds < 1% (${d3.stored} bytes)`);
  t.ok(d3.segments <= 16, `... in ${d3.segments} new segments`);

  // The shifted copy reads back right, at its start, its end and in between.
  const expect = Buffer.concat([prefix, corpus]);
  const rng = new Rng(3);
  let bad = 0;
  for (const off of [0, 1, expect.length - 70000, ...Array.from({ length: 20 }, () => rng.int(expect.length))]) {
    const got = await store.read(shifted, off, 70000);
    if (!got.equals(expect.subarray(off, off + 70000))) bad++;
  }
  t.equal(bad, 0, 'the shifted copy reads back identical at 23 places');
});

t.test('one 4 KiB write in the middle of a 1 GiB file adds a few segments', { timeout: 240_000 }, async (t) => {
  const store = await SegmentStore.open(tmpDir(t));
  t.teardown(() => store.close());
  const PIECE = 4 * MiB;
  const PIECES = 256; // 1 GiB
  const SEED = 1;
  function* pieces(): Generator<Buffer> {
    for (let i = 0; i < PIECES; i++) yield noisePiece(SEED, i, PIECE);
  }
  const started = Date.now();
  const big = await writeStream(store, pieces());
  const ingestMs = Date.now() - started;
  const s0 = await store.stats();
  t.equal(big.size, PIECES * PIECE, 'a 1 GiB version');
  t.comment(`1 GiB: ${s0.segments} unique segments (${s0.treeNodes} tree nodes), height ${big.height}, ingested in ${ingestMs} ms`);
  t.ok(s0.uniqueBytes >= big.size && s0.zeroBytes === 0, 'no part of it deduplicates against another part');

  const offset = 512 * MiB + 12345;
  const patch = new Rng(9).bytes(4096);
  const r = await store.writeAt(big, offset, patch);
  await store.commit([], r.deps);
  const s1 = await store.stats();
  const d = delta(s0, s1);

  const before = await nodesByLevel(store, big);
  const after = await nodesByLevel(store, r.version);
  const perLevel: string[] = [];
  let newNodes = 0;
  for (const [level, set] of [...after].sort((a, b) => a[0] - b[0])) {
    const fresh = [...set].filter((fp) => !before.get(level)?.has(fp)).length;
    newNodes += fresh;
    perLevel.push(`L${level}: ${fresh}`);
  }
  t.comment(`4 KiB write at ${offset}: ${d.segments} new segments = ${d.segments - d.nodes} data + ${d.nodes} tree nodes (${perLevel.join(', ')}), +${d.stored} bytes stored`);
  t.equal(newNodes, d.nodes, 'the new tree nodes are exactly the ones the new version has and the old lacks');
  t.ok(d.segments <= 8, `at most 8 new segments (${d.segments})`);
  t.ok(d.segments - d.nodes <= 3, `at most 3 new data segments (${d.segments - d.nodes})`);
  t.ok(d.stored < 100 * 1024, `stored bytes grow by < 100 KiB (${d.stored})`);
  t.equal(r.version.height, big.height, 'the tree keeps its height');

  // The patched region and its surroundings read back as they should, in both versions.
  const first = Math.floor(offset / PIECE) - 1;
  const around = Buffer.concat([noisePiece(SEED, first, PIECE), noisePiece(SEED, first + 1, PIECE), noisePiece(SEED, first + 2, PIECE)]);
  const base = first * PIECE;
  const want = Buffer.from(around);
  patch.copy(want, offset - base);
  t.ok((await store.read(r.version, base, 3 * PIECE)).equals(want), 'the new version reads the patch and the bytes around it');
  t.ok((await store.read(big, base, 3 * PIECE)).equals(around), 'the old version is unchanged');
  const tail = await store.read(r.version, big.size - MiB, MiB);
  t.ok(tail.equals(noisePiece(SEED, PIECES - 1, PIECE).subarray(PIECE - MiB)), 'the end of the new version is the old end');
});
