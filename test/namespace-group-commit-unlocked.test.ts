// The group commit's synced LevelDB write runs without the namespace lock (group-commit.ts,
// round; ARCHITECTURE.md "Commit rules"): creates, unlinks and other metadata changes go on while
// a round's batch syncs, and are written after it; the versions of the round are reported durable
// (fsync, close) only once that batch is written. Checked on the real LevelDB with one seam: the
// synced write is held back until the test lets it go (helpers/db-writes.ts records the order).
// Before the change, a create waited for the whole synced write (the lock was held through it).
// If the held write fails, every later change fails with IO (the cache had learned its inodes).

import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { recordWrites, type WriteLog } from './helpers/db-writes.js';
import { openNs, readFile, writeFile } from './helpers/ns.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

interface Held {
  /** Resolves when a synced batch write has been asked for and is being held. */
  asked: Promise<void>;
  /** Lets the held write go on (or fail with `err`). */
  release(err?: Error): void;
  stop(): void;
}

/** Holds back the next synced batch write of `store`'s database until released. */
function holdNextSyncedWrite(store: SegmentStore): Held {
  const db = store.db as unknown as { batch: () => Record<string, unknown> };
  const orig = db.batch;
  let onAsked!: () => void;
  const asked = new Promise<void>((r) => (onAsked = r));
  let go!: (err?: Error) => void;
  const gate = new Promise<Error | undefined>((r) => (go = r));
  let armed = true;
  db.batch = function (this: unknown) {
    const b = orig.call(this);
    const write = b.write as (o?: { sync?: boolean }) => Promise<void>;
    b.write = async (o?: { sync?: boolean }) => {
      if (armed && o?.sync === true) {
        armed = false;
        onAsked();
        const err = await gate;
        if (err) throw err;
      }
      return write.call(b, o);
    };
    return b;
  };
  return { asked, release: (err) => go(err), stop: () => void (db.batch = orig) };
}

async function setup(t: TestT): Promise<{ ns: Namespace; store: SegmentStore; log: WriteLog; dir: string; close(): Promise<void> }> {
  const dir = tmpDir(t);
  const { ns, store, close } = await openNs(t, dir);
  await ns.fs.mkdir('/s', 0o755);
  for (let i = 0; i < 5; i++) await writeFile(ns, `/s/old${i}`, Buffer.from(`old ${i}`));
  await ns.fs.fsyncdir('/s');
  // Inner wrap first: the log records the write when the hold lets it reach LevelDB.
  const log = recordWrites(store.db);
  t.teardown(() => log.stop());
  return { ns, store, log, dir, close };
}

/** Resolves to true if `p` settles within `ms`. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  // The timer is cancelled once `p` settles, so it does not keep the test alive.
  const timer = new AbortController();
  const late = sleep(ms, false, { signal: timer.signal }).catch(() => false);
  try {
    return await Promise.race([p.then(() => true, () => true), late]);
  } finally {
    timer.abort();
  }
}

t.test('creates and unlinks go on while a group commit syncs, and land after it', async (t) => {
  const { ns, store, log, dir, close } = await setup(t);
  const held = holdNextSyncedWrite(store);
  t.teardown(() => held.stop());
  const fh = await ns.fs.create('/s/big', 0o644);
  await ns.write(fh, 0, Buffer.alloc(64 * 1024, 7));
  // fsync forces a round at once; its synced batch (the inode with the version) is held.
  const synced = ns.fs.fsync(fh);
  await held.asked;
  // The round holds no lock now: these must finish while its batch is still unwritten.
  const meanwhile = (async () => {
    for (let i = 0; i < 20; i++) await ns.fs.release(await ns.fs.create(`/s/new${i}`, 0o644));
    for (let i = 0; i < 5; i++) await ns.fs.unlink(`/s/old${i}`);
    await ns.fs.chmod('/s/new3', 0o600);
  })();
  t.ok(await within(meanwhile, 5000), 'creates, unlinks and a chmod finished while the synced write was held');
  await meanwhile;
  t.notOk(await within(synced, 200), 'fsync has not returned: its batch is not written yet');
  // The cache already shows the round's inode (readers see the newest version anyway).
  t.equal((await ns.fs.getattr('/s/big')).size, 64 * 1024, 'the file has its size while the batch is held');
  const releasedAt = log.mark();
  held.release();
  await synced;
  await ns.fs.release(fh);
  await ns.fs.fsyncdir('/s');
  // Order: the held batch was written before any batch holding the changes made meanwhile.
  const commit = log.writes.find((w) => w.sync && w.start > releasedAt);
  t.ok(commit, 'the held synced batch was written after it was let go');
  const newKey = Buffer.from('new7');
  const later = log.writes.filter((w) => w.keys.some((k) => k.includes(newKey)));
  t.ok(later.length > 0 && later.every((w) => w.start > commit!.end), 'the changes made meanwhile were written after the held batch');
  await close();
  // Everything is there after a reopen, in the order made.
  const again = await openNs(t, dir);
  const names = (await again.ns.fs.readdir('/s')).map((e) => e.name).filter((n) => n !== '.snapshots').sort();
  t.same(names, ['big', ...Array.from({ length: 20 }, (_, i) => `new${i}`)].sort(), 'the creates are there and the unlinked names are gone');
  t.equal((await again.ns.fs.getattr('/s/new3')).mode & 0o7777, 0o600, 'the chmod holds');
  t.same(await readFile(again.ns, '/s/big'), Buffer.alloc(64 * 1024, 7), 'the fsynced file reads back');
});

t.test('if the held synced write fails, the fsync reports it and every later change fails with IO', async (t) => {
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
  const held = holdNextSyncedWrite(store);
  t.teardown(() => held.stop());
  const fh = await ns.fs.create('/s/big', 0o644);
  await ns.write(fh, 0, Buffer.alloc(10_000, 3));
  const synced = ns.fs.fsync(fh);
  await held.asked;
  await ns.fs.release(await ns.fs.create('/s/during', 0o644));
  held.release(Object.assign(new Error('IO error: simulated log write failure'), { code: 'LEVEL_IO_ERROR' }));
  await t.rejects(synced, 'fsync reports the failed commit');
  await t.rejects(ns.fs.create('/s/after', 0o644), { code: 'IO' }, 'a later create is refused with IO');
  await t.rejects(ns.fs.fsyncdir('/s'), { code: 'IO' }, 'so is fsyncdir');
  await ns.fs.release(fh).catch(() => {});
});
