// The data path against a plain in-memory model: random stream writes, writes at offsets,
// multi-extent writes, truncates and reads over many versions, checked byte for byte, across
// a reopen of the store. Every edited version must also have exactly the root a fresh
// ingest of the same bytes gets (the tree is canonical), which is what keeps dedup working
// across edits.

import t from 'tap';
import { SegmentStore, type FileVersion } from '../src/store/store.js';
import { generate, type Kind, Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';
import type { TestT } from './helpers/tap-types.js';

const KINDS: Kind[] = ['random', 'zeros', 'sparse', 'text'];

interface Model {
  version: FileVersion;
  content: Buffer;
}

async function checkAll(t: TestT, store: SegmentStore, models: Model[], rng: Rng, label: string): Promise<void> {
  let bad = 0;
  for (const m of models) {
    const whole = await store.read(m.version, 0, m.content.length + 100);
    if (!whole.equals(m.content)) bad++;
    const off = rng.int(m.content.length + 1);
    const len = rng.int(70000);
    const part = await store.read(m.version, off, len);
    if (!part.equals(m.content.subarray(off, off + len))) bad++;
  }
  t.equal(bad, 0, `${label}: all ${models.length} versions read back identical`);
}

function contentFor(rng: Rng, models: Model[], max: number): Buffer {
  if (models.length > 0 && rng.int(4) === 0) {
    // A modified copy of existing content: duplicate data with shifts.
    const src = rng.pick(models).content;
    const cut = rng.int(src.length + 1);
    return Buffer.concat([src.subarray(cut), generate(rng, rng.pick(KINDS), rng.int(5000)), src.subarray(0, cut)]);
  }
  const parts: Buffer[] = [];
  const n = rng.range(1, 4);
  for (let i = 0; i < n; i++) parts.push(generate(rng, rng.pick(KINDS), rng.int(max / n)));
  return Buffer.concat(parts);
}

async function streamWrite(store: SegmentStore, content: Buffer, rng: Rng): Promise<FileVersion> {
  const w = store.writer();
  let at = 0;
  while (at < content.length) {
    const n = rng.range(1, 200000);
    await w.write(content.subarray(at, at + n));
    at += n;
  }
  const r = await w.finish();
  return r.version;
}

async function runModel(t: TestT, opts: { seed: number; ops: number; chunker?: { minSize: number; avgSize: number; maxSize: number }; max: number }): Promise<void> {
  const dir = tmpDir(t);
  const rng = new Rng(opts.seed);
  let store = await SegmentStore.open(dir, { chunker: opts.chunker });
  t.teardown(() => store.close());
  const models: Model[] = [];
  let canonicalMisses = 0;
  const canonical = async (m: Model): Promise<void> => {
    const fresh = await store.writeBuffer(m.content);
    if (!fresh.version.root.equals(m.version.root) || fresh.version.height !== m.version.height || fresh.version.size !== m.content.length) {
      canonicalMisses++;
    }
  };
  for (let op = 0; op < opts.ops; op++) {
    const choice = models.length === 0 ? 0 : rng.int(10);
    if (choice <= 2) {
      const content = contentFor(rng, models, opts.max);
      const version = await streamWrite(store, content, rng);
      models.push({ version, content });
    } else if (choice <= 5) {
      const base = rng.pick(models);
      const off = rng.int(base.content.length + 20000);
      const data = generate(rng, rng.pick(KINDS), rng.range(1, 100000));
      const r = await store.writeAt(base.version, off, data);
      const size = Math.max(base.content.length, off + data.length);
      const content = Buffer.alloc(size);
      base.content.copy(content);
      data.copy(content, off);
      const m = { version: r.version, content };
      await canonical(m);
      models.push(m);
    } else if (choice <= 7) {
      const base = rng.pick(models);
      const extents: Array<{ offset: number; data: Buffer }> = [];
      let pos = 0;
      const n = rng.range(2, 6);
      for (let i = 0; i < n; i++) {
        pos += rng.int(60000);
        const data = generate(rng, rng.pick(KINDS), rng.range(1, 30000));
        extents.push({ offset: pos, data });
        pos += data.length;
      }
      const r = await store.writeExtents(base.version, extents);
      const content = Buffer.alloc(Math.max(base.content.length, pos));
      base.content.copy(content);
      for (const e of extents) e.data.copy(content, e.offset);
      const m = { version: r.version, content };
      await canonical(m);
      models.push(m);
    } else if (choice === 8) {
      const base = rng.pick(models);
      const size = rng.int(2) === 0 ? rng.int(base.content.length + 1) : base.content.length + rng.int(300000);
      const r = await store.truncate(base.version, size);
      const content = Buffer.alloc(size);
      base.content.copy(content, 0, 0, Math.min(size, base.content.length));
      const m = { version: r.version, content };
      await canonical(m);
      models.push(m);
    } else {
      const m = rng.pick(models);
      const off = rng.int(m.content.length + 1);
      const len = rng.int(300000);
      const got = await store.read(m.version, off, len);
      if (!got.equals(m.content.subarray(off, off + len))) t.fail(`read of version ${models.indexOf(m)} at ${off}+${len} differs`);
    }
    if (op % 25 === 0) await store.commit();
  }
  t.equal(canonicalMisses, 0, 'every edited version has the root of a fresh ingest of its bytes');
  await checkAll(t, store, models, rng, 'before reopen');
  await store.close();
  store = await SegmentStore.open(dir);
  await checkAll(t, store, models, rng, 'after reopen');
  const trees = await store.verifyTrees(
    models.map((m, i) => ({ version: m.version, label: `version ${i}` })),
    { full: true },
  );
  t.same(trees.problems, [], 'full tree verify finds nothing wrong');
  const containers = await store.verify({ full: true });
  t.same(containers.problems, [], 'full container verify finds nothing wrong');
  t.ok(containers.records > 0, `verify read ${containers.records} records in ${containers.containers} containers`);
}

t.test('random operations, small segments (tall trees)', (t) =>
  runModel(t, { seed: 1, ops: 160, chunker: { minSize: 256, avgSize: 1024, maxSize: 4096 }, max: 400000 }),
);

t.test('random operations, default segments', (t) => runModel(t, { seed: 7, ops: 60, max: 3000000 }));

t.test('a hole of a terabyte costs nothing and reads as zeros', async (t) => {
  const dir = tmpDir(t);
  const store = await SegmentStore.open(dir);
  t.teardown(() => store.close());
  const head = await store.writeBuffer(Buffer.from('head'));
  const TB = 2 ** 40;
  const r = await store.writeAt(head.version, TB, Buffer.from('tail'));
  t.equal(r.version.size, TB + 4);
  const mid = await store.read(r.version, TB / 2, 4096);
  t.ok(mid.equals(Buffer.alloc(4096)), 'the middle of the hole is zeros');
  const tail = await store.read(r.version, TB - 2, 6);
  t.same([...tail], [0, 0, ...Buffer.from('tail')], 'the tail is where it was written');
  const third = Math.floor(TB / 3);
  const again = await store.writeAt(r.version, third, Buffer.from("middle"));
  const m = await store.read(again.version, third - 1, 8);
  t.same([...m], [0, ...Buffer.from('middle'), 0], 'a write into the hole lands');
  const stats = await store.stats();
  t.ok(stats.storedBytes < 1024 * 1024, `stored bytes stay small (${stats.storedBytes})`);
});
