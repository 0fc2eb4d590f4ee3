// Metadata-only changes (create, chmod, utimens, rename, unlink, mkdir) are queued behind the
// writes before them and answered at once (kv/db.ts, writeLater; ARCHITECTURE.md, "Commit
// rules"): a small file's operations no longer wait, one by one, for an unsynced LevelDB batch.
// What must hold all the same, checked on the real LevelDB through the write seam
// (helpers/db-writes.ts): changes made one after another share batches; every reader sees a
// queued change (point reads, listings, the emptiness check of rmdir, a snapshot's copy); fsync
// and fsyncdir still make every change made before them durable; the queue lands in call
// order; a queued write that fails fails every later change with IO instead of losing them
// quietly.

import t from 'tap';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { recordWrites, type WriteLog } from './helpers/db-writes.js';
import { readFile, writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';
import type { TestT } from './helpers/tap-types.js';

async function setup(t: TestT): Promise<{ ns: Namespace; store: SegmentStore; log: WriteLog; dir: string }> {
  const dir = tmpDir(t);
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {} });
  await ns.fs.mkdir('/s', 0o755);
  const log = recordWrites(store.db);
  t.teardown(async () => {
    log.stop();
    await ns.close();
    await store.close();
  });
  return { ns, store, log, dir };
}

const N = 200;

t.test('changes made one after another share batches instead of waiting for one each', async (t) => {
  const { ns, log } = await setup(t);
  const before = log.writes.length;
  for (let i = 0; i < N; i++) {
    const fh = await ns.fs.create(`/s/f${i}`, 0o600);
    await ns.fs.release(fh);
    await ns.fs.chmod(`/s/f${i}`, 0o644);
  }
  await ns.fs.fsyncdir('/s');
  const batches = log.writes.length - before;
  // Before: one batch per create and one per chmod (2 * N), plus the sync.
  t.ok(batches < N / 2, `${2 * N} metadata changes took ${batches} LevelDB batches`);
  const names = (await ns.fs.readdir('/s')).map((e) => e.name).filter((n) => n.startsWith('f'));
  t.equal(names.length, N, 'every file is listed');
  t.equal((await ns.fs.getattr('/s/f7')).mode & 0o7777, 0o644, 'the chmod holds');
});

t.test('fsync and fsyncdir make every change made before them durable', async (t) => {
  const { ns, log } = await setup(t);
  await ns.fs.mkdir('/s/d', 0o755);
  for (let i = 0; i < 50; i++) await ns.fs.release(await ns.fs.create(`/s/d/x${i}`, 0o644));
  await ns.fs.rename('/s/d/x0', '/s/d/renamed');
  const queuedAtCall = log.mark();
  await ns.fs.fsyncdir('/s/d');
  const after = log.mark();
  const notDurable = log.writes.filter((w) => w.start < queuedAtCall || w.end <= after).filter((w) => !log.durableAt(w, after));
  t.equal(notDurable.length, 0, 'fsyncdir: no batch written for an earlier change is left unsynced');
  const renamedKey = log.writes.some((w) => w.keys.some((k) => k.includes(Buffer.from('renamed'))) && log.durableAt(w, after));
  t.ok(renamedKey, 'the rename made just before fsyncdir is in a durable batch');

  const fh = await ns.fs.create('/s/d/y', 0o644);
  await ns.fs.chmod('/s/d/y', 0o600);
  await ns.fs.fsync(fh);
  const after2 = log.mark();
  t.equal(log.writes.filter((w) => !log.durableAt(w, after2)).length, 0, 'fsync: every batch so far is durable');
  await ns.fs.release(fh);
});

t.test('readers see queued changes: lookups, listings, rmdir, snapshots', async (t) => {
  const { ns } = await setup(t);
  await ns.fs.mkdir('/s/d', 0o755);
  await ns.fs.release(await ns.fs.create('/s/d/child', 0o644));
  // No await between the change and the readers that scan LevelDB.
  await t.rejects(ns.fs.rmdir('/s/d'), { code: 'NOT_EMPTY' }, 'rmdir sees the queued child');
  t.same((await ns.fs.readdir('/s/d')).map((e) => e.name).filter((n) => n !== '.' && n !== '..'), ['child'], 'the listing has it');
  await writeFile(ns, '/s/d/data', Buffer.from('hello'));
  await ns.fs.rename('/s/d/data', '/s/d/data2');
  await ns.snapshots.create('s', 'snap');
  const inSnap = (await ns.fs.readdir('/s/.snapshots/snap/d')).map((e) => e.name).sort();
  t.ok(inSnap.includes('child') && inSnap.includes('data2') && !inSnap.includes('data'), `the snapshot holds the queued changes (${inSnap.join(', ')})`);
  await ns.fs.unlink('/s/d/child');
  await t.rejects(ns.fs.getattr('/s/d/child'), { code: 'NOT_FOUND' }, 'an unlinked name is gone at once');
  t.equal((await readFile(ns, '/s/.snapshots/snap/d/data2')).toString(), 'hello', 'the snapshot reads the file');
});

t.test('queued changes survive a reopen in the order they were made', async (t) => {
  const dir = tmpDir(t);
  {
    const store = await SegmentStore.open(dir);
    const ns = await Namespace.open(store, { log: () => {} });
    await ns.fs.mkdir('/s', 0o755);
    for (let i = 0; i < 100; i++) {
      await ns.fs.release(await ns.fs.create(`/s/t${i}`, 0o644));
      if (i % 2 === 0) await ns.fs.rename(`/s/t${i}`, `/s/u${i}`);
      if (i % 3 === 0) await ns.fs.unlink(i % 2 === 0 ? `/s/u${i}` : `/s/t${i}`);
    }
    await ns.close();
    await store.close();
  }
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {} });
  t.teardown(async () => {
    await ns.close();
    await store.close();
  });
  const names = new Set((await ns.fs.readdir('/s')).map((e) => e.name));
  let wrong = 0;
  for (let i = 0; i < 100; i++) {
    const want = i % 3 === 0 ? undefined : i % 2 === 0 ? `u${i}` : `t${i}`;
    for (const n of [`t${i}`, `u${i}`]) if (names.has(n) !== (n === want)) wrong++;
  }
  t.equal(wrong, 0, 'every create, rename and unlink is there after a clean close');
});

t.test('a queued write that fails fails every later change with IO', async (t) => {
  const dir = tmpDir(t);
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {} });
  await ns.fs.mkdir('/s', 0o755);
  // Closing fails too once a write has failed (as LevelDB refuses writes after a log error).
  t.teardown(async () => {
    await ns.close().catch(() => {});
    await store.close().catch(() => {});
    await store.db.close().catch(() => {});
  });
  // A LevelDB log write error cannot be made to happen on demand here: this one batch write is
  // made to fail (the only stand-in in this file); LevelDB itself then refuses every write too.
  const db = store.db as unknown as { batch: () => Record<string, unknown> };
  const orig = db.batch;
  let failOnce = true;
  db.batch = function (this: unknown) {
    const b = orig.call(this);
    const write = b.write as (o?: unknown) => Promise<void>;
    b.write = (o?: unknown) => {
      if (failOnce) {
        failOnce = false;
        return Promise.reject(Object.assign(new Error('IO error: simulated log write failure'), { code: 'LEVEL_IO_ERROR' }));
      }
      return write.call(b, o);
    };
    return b;
  };
  t.teardown(() => {
    db.batch = orig;
  });
  await ns.fs.release(await ns.fs.create('/s/lost', 0o644));
  await t.rejects(ns.fs.fsyncdir('/s'), { code: 'IO' }, 'fsyncdir reports the failed write');
  await t.rejects(ns.fs.create('/s/next', 0o644), { code: 'IO' }, 'a later change is refused');
  await t.rejects(ns.fs.chmod('/s/lost', 0o600), { code: 'IO' }, 'so is a chmod');
});

t.test('fsyncs that arrive together share synced batches', async (t) => {
  const { ns, log } = await setup(t);
  const fhs: number[] = [];
  for (let i = 0; i < 100; i++) {
    const fh = await ns.fs.create(`/s/w${i}`, 0o644);
    await ns.write(fh, 0, Buffer.from(`content of w${i}`));
    fhs.push(fh);
  }
  const before = log.mark();
  await Promise.all(fhs.map((fh) => ns.fs.fsync(fh)));
  const synced = log.syncedBetween(before, log.mark()).length;
  // Before: a round (one synced batch) per fsync, as each asked for its own.
  t.ok(synced <= 5, `100 fsyncs at once took ${synced} synced batches`);
  for (const fh of fhs) await ns.fs.release(fh);
  t.equal((await readFile(ns, '/s/w42')).toString(), 'content of w42', 'the content is there');
});
