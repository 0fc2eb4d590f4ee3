// A file written as a stream of appends (dd or cp into the mount) keeps one store writer across
// its commits (namespace/append-stream.ts, TreeWriter.checkpoint): no commit edits the tree
// again, re-reading and re-cutting the previous commit's last segment. What must hold: every
// commit's version is the canonical tree of the file's bytes (the one a single store writer of
// all of them builds), reads see every byte while commits run, anything but an append (an
// overwrite, a truncation) drops the writer and the content stays right, a garbage collection
// between commits keeps what the writer holds, and the file reads back after a reopen.
// The store is real; the store's methods are only wrapped to count which path a commit took.

import t from 'tap';
import { createHash } from 'node:crypto';
import type { Namespace } from '../src/namespace/namespace.js';
import { runGc, runVerify } from '../src/namespace/maintenance.js';
import { SegmentStore } from '../src/store/store.js';
import { generate, Rng } from './helpers/data.js';
import { openNs, readFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';
import type { TestT } from './helpers/tap-types.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function open(t: TestT, dir = tmpDir(t), fresh = true, streamIdleMs?: number) {
  const { store, ns, close } = await openNs(t, dir, { streamCommitBytes: 2 * MiB, streamIdleMs });
  const calls = { appender: 0, writeExtents: 0 };
  // (Guarded: so that this test runs, and fails, on a store from before the kept writer.)
  if (typeof store.appender === 'function') {
    const appender = store.appender.bind(store);
    store.appender = (v) => {
      calls.appender++;
      return appender(v);
    };
  }
  const writeExtents = store.writeExtents.bind(store);
  store.writeExtents = (v, e, n) => {
    calls.writeExtents++;
    return writeExtents(v, e, n);
  };
  if (fresh) await ns.fs.mkdir('/s', 0o755);
  return { ns, store, calls, close, dir };
}

/** The root a single store writer gives these bytes, in a store of its own. */
async function canonical(t: TestT, data: Buffer): Promise<string> {
  const store = await SegmentStore.open(tmpDir(t));
  try {
    return (await store.writeBuffer(data)).version.root.toString('hex');
  } finally {
    await store.close();
  }
}

/** Appends `data` from `at` in 1 MiB writes, letting each stream commit start and finish. */
async function append(ns: Namespace, fh: number, data: Buffer, at: number, end: number): Promise<void> {
  const f = ns.fs.handle(fh).file;
  for (let p = at; p < end; p += MiB) {
    await ns.write(fh, p, data.subarray(p, Math.min(end, p + MiB)));
    if (f.commitPending) await f.settled();
  }
}

t.test('a stream of appends commits through one writer, each version the canonical tree', async (t) => {
  const { ns, calls, close, dir } = await open(t);
  const data = generate(new Rng(31), 'random', 24 * MiB + 12345);
  const fh = await ns.fs.create('/s/f', 0o644);
  const f = ns.fs.handle(fh).file;
  const roots: string[] = [];
  for (let p = 0; p < data.length; p += MiB) {
    await ns.write(fh, p, data.subarray(p, Math.min(data.length, p + MiB)));
    if (f.commitPending) {
      await f.settled();
      // Each commit's version: the canonical tree of the bytes it holds.
      if (f.base.size > 0 && roots.length < 3) roots.push(`${f.base.size}:${f.base.root.toString('hex')}`);
    }
  }
  t.ok(roots.length >= 2, `${roots.length} stream commits checked`);
  for (const r of roots) {
    const [n, root] = r.split(':');
    t.equal(root, await canonical(t, data.subarray(0, Number(n))), `the version of the first ${n} bytes is canonical`);
  }
  t.equal(sha(await ns.fs.read(fh, 0, data.length)), sha(data), 'read while the stream runs');
  await ns.fs.fsync(fh);
  t.equal(f.base.size, data.length, 'the version holds every byte');
  t.equal(f.base.root.toString('hex'), await canonical(t, data), 'the final version is the one a single writer builds');
  await ns.fs.release(fh);
  // Before: a fresh writer per commit, each an edit of the tree (writeExtents).
  t.equal(calls.appender, 1, 'one writer for the whole stream');
  t.equal(calls.writeExtents, 0, 'no commit edited the tree');
  await close();
  const again = await open(t, dir, false);
  t.equal(sha(await readFile(again.ns, '/s/f')), sha(data), 'read back after a reopen');
  const v = await runVerify(again.ns, {}, undefined);
  t.same(v.problems, [], 'the store verifies clean');
});

t.test('an overwrite or a truncation drops the writer; appends after it start a new one', async (t) => {
  const { ns, calls } = await open(t);
  const data = generate(new Rng(41), 'random', 20 * MiB);
  const fh = await ns.fs.create('/s/g', 0o644);
  const f = ns.fs.handle(fh).file;
  await append(ns, fh, data, 0, 8 * MiB);
  // An overwrite in the middle, committed on its own.
  const patch = generate(new Rng(42), 'random', MiB + 777);
  patch.copy(data, 3 * MiB + 5);
  await ns.write(fh, 3 * MiB + 5, patch);
  await f.commit(false);
  t.equal(calls.writeExtents, 1, 'the overwrite was an edit');
  await append(ns, fh, data, 8 * MiB, 14 * MiB);
  // A truncation back into what was appended, then appends again.
  await ns.fs.ftruncate(fh, 12 * MiB);
  data.fill(0, 12 * MiB, 14 * MiB);
  await append(ns, fh, data, 12 * MiB, 20 * MiB);
  await ns.fs.fsync(fh);
  t.ok(calls.appender >= 3, `${calls.appender} writers: one per run of appends`);
  t.equal(sha(await ns.fs.read(fh, 0, data.length + MiB)), sha(data), 'every byte as written');
  t.equal(f.base.root.toString('hex'), await canonical(t, data), 'the version is canonical');
  await ns.fs.release(fh);
  t.equal(sha(await readFile(ns, '/s/g')), sha(data), 'read back after close');
});

t.test('garbage collection between two commits of a stream keeps what its writer holds', async (t) => {
  const { ns, store } = await open(t);
  const data = generate(new Rng(51), 'random', 16 * MiB + 999);
  const fh = await ns.fs.create('/s/h', 0o644);
  await append(ns, fh, data, 0, 8 * MiB);
  // Garbage to sweep: a file written and removed, its containers sealed.
  const junk = generate(new Rng(52), 'random', 8 * MiB);
  const jh = await ns.fs.create('/s/junk', 0o644);
  await append(ns, jh, junk, 0, junk.length);
  await ns.fs.fsync(jh);
  await ns.fs.release(jh);
  await ns.fs.unlink('/s/junk');
  await store.sync();
  t.ok(store.writesInProgress > 0, 'the stream\'s writer is live (and holds its containers from the sweep)');
  const gc = await runGc(ns, { copyForwardBelow: 1 });
  t.ok(gc, 'garbage collection ran');
  await append(ns, fh, data, 8 * MiB, data.length);
  await ns.fs.fsync(fh);
  await ns.fs.release(fh);
  t.equal(sha(await readFile(ns, '/s/h')), sha(data), 'every byte reads back');
  const v = await runVerify(ns, { full: true }, undefined);
  t.same(v.problems, [], 'the store verifies clean');
});

t.test('writers let go at every fsync hand their slabs back once: two streams in turns stay exact', async (t) => {
  const { ns, calls } = await open(t);
  const a = generate(new Rng(61), 'random', 12 * MiB + 3);
  const b = generate(new Rng(62), 'random', 12 * MiB + 5);
  const fa = await ns.fs.create('/s/a', 0o644);
  const fb = await ns.fs.create('/s/b', 0o644);
  // Each fsync drops its file's writer (its slabs back to the pool); the other file's next
  // writer takes them. A slab handed back twice would be given to both, and one file's bytes
  // would land in the other's segments.
  for (let at = 0; at < a.length; at += 3 * MiB) {
    await append(ns, fa, a, at, Math.min(a.length, at + 3 * MiB));
    await append(ns, fb, b, at, Math.min(b.length, at + 3 * MiB));
    await ns.fs.fsync(fa);
    await ns.fs.fsync(fb);
  }
  await append(ns, fb, b, a.length, b.length);
  await ns.fs.release(fa);
  await ns.fs.release(fb);
  t.ok(calls.appender >= 8, `${calls.appender} writers made and let go`);
  t.equal(sha(await readFile(ns, '/s/a')), sha(a), 'the first file reads back exactly');
  t.equal(sha(await readFile(ns, '/s/b')), sha(b), 'the second file reads back exactly');
});

t.test('a stream that pauses with its file open lets its writer go, then resumes exactly', async (t) => {
  // An NFS server or a hypervisor may keep an image open for days after writing it: its kept
  // writer would hold a slab, and every container from its last checkpoint's on from GC.
  const { ns, store, calls } = await open(t, tmpDir(t), true, 300);
  const data = generate(new Rng(71), 'random', 12 * MiB + 17);
  const fh = await ns.fs.create('/s/p', 0o644);
  const f = ns.fs.handle(fh).file;
  await append(ns, fh, data, 0, 6 * MiB);
  await f.commit(false);
  t.ok(f.streamWriterLive && store.writesInProgress > 0, 'the stream keeps its writer (and its hold) while it runs');
  const until = Date.now() + 5000;
  while (Date.now() < until && (f.streamWriterLive || store.writesInProgress > 0)) await new Promise((r) => setTimeout(r, 50));
  t.notOk(f.streamWriterLive, 'the paused stream\'s writer is let go, the file still open');
  t.equal(store.writesInProgress, 0, 'and nothing holds containers from garbage collection');
  await append(ns, fh, data, 6 * MiB, data.length);
  await ns.fs.fsync(fh);
  t.equal(calls.appender, 2, 'the resumed stream started a new writer from the last version');
  t.equal(f.base.root.toString('hex'), await canonical(t, data), 'the version is canonical');
  await ns.fs.release(fh);
  t.equal(sha(await readFile(ns, '/s/p')), sha(data), 'every byte reads back');
});
