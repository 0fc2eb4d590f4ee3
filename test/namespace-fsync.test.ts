// fsync returning means durable, metadata included (DESIGN.md, POSIX), and fsync on a directory
// makes its entries durable. A SIGKILL cannot check this (the page cache survives it), so these
// tests watch the real LevelDB's writes through a seam (helpers/db-writes.ts): every batch that
// completed before fsync was called must be synced, or followed by a synced batch, by the time
// fsync returns. And a file's new content and its inode land in one synced batch together with
// the index entries (src/namespace/FORMAT.md, "Rules").

import t from 'tap';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { recordWrites, type WriteLog } from './helpers/db-writes.js';
import { readFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';
import type { TestT } from './helpers/tap-types.js';

async function setup(t: TestT): Promise<{ ns: Namespace; log: WriteLog; dir: string }> {
  const dir = tmpDir(t);
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {} });
  const log = recordWrites(store.db);
  t.teardown(async () => {
    log.stop();
    await ns.close();
    await store.close();
  });
  await ns.fs.mkdir('/s', 0o755);
  return { ns, log, dir };
}

/** Fails on every write that completed before `before` but was not durable at `after`. */
function allDurable(t: TestT, log: WriteLog, before: number, after: number, what: string): void {
  const done = log.writes.filter((w) => w.end <= before);
  t.ok(done.length > 0, `${what}: there were writes to make durable`);
  const lost = done.filter((w) => !log.durableAt(w, after));
  t.equal(lost.length, 0, `${what}: every earlier batch is durable when it returns (${lost.length} of ${done.length} are not)`);
}

t.test('create then fsync: the new name and inode are durable', async (t) => {
  const { ns, log } = await setup(t);
  const fh = await ns.fs.create('/s/new', 0o644);
  const before = log.mark();
  await ns.fs.fsync(fh);
  allDurable(t, log, before, log.mark(), 'fsync after create');
  await ns.fs.release(fh);
});

t.test('rename then fsync: the rename is durable', async (t) => {
  const { ns, log } = await setup(t);
  const fh = await ns.fs.create('/s/a', 0o644);
  await ns.fs.fsync(fh);
  await ns.fs.rename('/s/a', '/s/b');
  const before = log.mark();
  await ns.fs.fsync(fh);
  allDurable(t, log, before, log.mark(), 'fsync after rename');
  await ns.fs.release(fh);
});

t.test('chmod then fsync: the mode is durable', async (t) => {
  const { ns, log } = await setup(t);
  const fh = await ns.fs.create('/s/m', 0o644);
  await ns.fs.fsync(fh);
  await ns.fs.chmod('/s/m', 0o600);
  const before = log.mark();
  await ns.fs.fsync(fh);
  allDurable(t, log, before, log.mark(), 'fsync after chmod');
  await ns.fs.release(fh);
});

t.test('a read-only descriptor fsyncs what happened to its file', async (t) => {
  const { ns, log } = await setup(t);
  const w = await ns.fs.create('/s/ro', 0o644);
  await ns.fs.release(w);
  const fh = await ns.fs.open('/s/ro', 0);
  await ns.fs.chmod('/s/ro', 0o400);
  const before = log.mark();
  await ns.fs.fsync(fh);
  allDurable(t, log, before, log.mark(), 'fsync on a read-only descriptor');
  await ns.fs.release(fh);
});

t.test('fsync on a directory makes its entries durable', async (t) => {
  const { ns, log } = await setup(t);
  await ns.fs.mkdir('/s/d', 0o755);
  const f = await ns.fs.create('/s/d/x', 0o644);
  await ns.fs.release(f);
  await ns.fs.symlink('x', '/s/d/y');
  let before = log.mark();
  await ns.fs.fsyncdir('/s/d');
  allDurable(t, log, before, log.mark(), 'fsyncdir after create, mkdir and symlink');
  await ns.fs.unlink('/s/d/y');
  before = log.mark();
  await ns.fs.fsyncdir('/s/d');
  allDurable(t, log, before, log.mark(), 'fsyncdir after unlink');
  await t.rejects(ns.fs.fsyncdir('/s/nope'), { code: 'NOT_FOUND' }, 'a missing directory is an error');
});

t.test('fsync with nothing new to make durable writes nothing', async (t) => {
  const { ns, log } = await setup(t);
  const fh = await ns.fs.create('/s/idle', 0o644);
  await ns.fs.fsync(fh);
  const before = log.mark();
  await ns.fs.fsync(fh);
  await ns.fs.fsyncdir('/s');
  t.same(
    log.writes.filter((w) => w.start > before),
    [],
    'no LevelDB write when everything is already durable',
  );
  await ns.fs.release(fh);
});

t.test('written data: index entries, counters and inode in one synced batch', async (t) => {
  const { ns, log, dir } = await setup(t);
  const fh = await ns.fs.create('/s/data', 0o644);
  await ns.fs.fsync(fh);
  const data = Buffer.alloc(64 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919) >>> 5;
  await ns.write(fh, 0, data);
  const before = log.mark();
  await ns.fs.fsync(fh);
  const after = log.mark();
  const synced = log.syncedBetween(before, after);
  t.equal(synced.length, 1, 'one synced batch per fsync of written data');
  const prefixes = new Set((synced[0]?.keys ?? []).map((k) => String.fromCharCode(k[0])));
  t.ok(prefixes.has('x'), 'the batch holds index entries');
  t.ok(prefixes.has('m'), 'the batch holds the store counters and checkpoint');
  t.ok(prefixes.has('i'), 'the batch holds the inode');
  t.ok(prefixes.has('V'), 'the batch holds the volume counters');
  t.same(
    log.writes.filter((w) => w.start > before && w.end <= after && !w.sync),
    [],
    'and no unsynced batch beside it',
  );
  await ns.fs.release(fh);
  t.same(await readFile(ns, '/s/data'), data, 'reads back');
  await ns.close();
  await ns.store.close();
  const again = await SegmentStore.open(dir);
  const ns2 = await Namespace.open(again, { log: () => {} });
  t.same(await readFile(ns2, '/s/data'), data, 'reads back after reopening');
  await ns2.close();
  await again.close();
});
