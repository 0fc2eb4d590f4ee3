// TreeWriter.checkpoint(): the version of everything written so far while the writer goes on
// (the kept writer of a file's appending commits, namespace/append-stream.ts). Each checkpoint
// must be the canonical tree of its bytes (what one writer of exactly those bytes builds: the
// open segment stored as the last one, zeros as zero runs), read back exactly, and leave the
// writer's own tree untouched, also across slab rotations, zero runs fed without copying and a
// writer that starts from an old version (SegmentStore.appender). Real store, real segmenter.

import t from 'tap';
import { createHash } from 'node:crypto';
import { SegmentStore } from '../src/store/store.js';
import { generate, Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The store under test and a reference store whose single writers give the canonical trees. */
async function twoStores(t: { teardown(fn: () => unknown): void }): Promise<{ store: SegmentStore; ref: SegmentStore }> {
  const store = await SegmentStore.open(tmpDir(t));
  const ref = await SegmentStore.open(tmpDir(t));
  t.teardown(async () => {
    await store.close();
    await ref.close();
  });
  return { store, ref };
}

t.test('every checkpoint is the canonical version of the bytes written so far', async (t) => {
  const { store, ref } = await twoStores(t);
  const rng = new Rng(71);
  // Pieces of odd sizes: random data, whole MiB of zeros (fed as zero runs), short zero runs
  // (copied and cut), text; more than one 8 MiB slab in all.
  const pieces = [
    generate(rng, 'random', 3 * MiB + 17),
    Buffer.alloc(2 * MiB),
    generate(rng, 'text', 700_000),
    Buffer.alloc(5000),
    generate(rng, 'sparse', 4 * MiB + 3),
    generate(rng, 'random', 123),
    Buffer.alloc(MiB + 1),
    generate(rng, 'random', 2 * MiB),
  ];
  const w = await store.appender((await store.writeBuffer(Buffer.alloc(0))).version);
  let sofar = Buffer.alloc(0);
  for (const [k, p] of pieces.entries()) {
    await w.write(p);
    sofar = Buffer.concat([sofar, p]);
    const r = await w.checkpoint();
    const want = (await ref.writeBuffer(sofar)).version;
    t.equal(r.version.size, sofar.length, `checkpoint ${k}: its size`);
    t.equal(r.version.root.toString('hex'), want.root.toString('hex'), `checkpoint ${k}: the canonical root`);
    t.equal(r.version.height, want.height, `checkpoint ${k}: the canonical height`);
    t.equal(sha(await store.read(r.version, 0, sofar.length)), sha(sofar), `checkpoint ${k}: reads back exactly`);
  }
  const end = await w.finish();
  t.equal(end.version.root.toString('hex'), (await ref.writeBuffer(sofar)).version.root.toString('hex'), 'finish after checkpoints: the canonical root');
});

t.test('a writer started from an old version goes on from its last segment', async (t) => {
  const { store, ref } = await twoStores(t);
  const old = generate(new Rng(81), 'random', 5 * MiB + 999);
  const more = generate(new Rng(82), 'random', 3 * MiB + 1);
  const v = (await store.writeBuffer(old)).version;
  const w = await store.appender(v);
  await w.write(more);
  const r = await w.checkpoint();
  const all = Buffer.concat([old, more]);
  t.equal(r.version.root.toString('hex'), (await ref.writeBuffer(all)).version.root.toString('hex'), 'the canonical root of old + new');
  t.equal(sha(await store.read(r.version, 0, all.length)), sha(all), 'reads back exactly');
  await w.discard();
  t.equal(sha(await store.read(v, 0, old.length)), sha(old), 'the old version is untouched');
});
