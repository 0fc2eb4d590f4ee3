// Retention locks in the namespace (real store, real LevelDB): a locked snapshot survives a
// snapshot delete, a share delete with --force --delete-snapshots and GC (its segments stay and
// read back identical), each refusal LOCKED naming when the lock ends; once the namespace's
// clock passes the lock, it can be deleted. Locks only grow, survive a restart, and clones do
// not inherit them.

import t from 'tap';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { isVmvaultError } from '../src/errors.js';
import { runGc } from '../src/namespace/maintenance.js';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { generate, Rng } from './helpers/data.js';
import { readFile, writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;
const T0 = Date.parse('2026-12-05T12:00:00Z');
const HOUR = 3_600_000;

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
    return { code: 'ok', message: '' };
  } catch (err) {
    return isVmvaultError(err) ? { code: err.code, message: err.message } : { code: 'bug', message: String(err) };
  }
}

async function open(dir: string, clock: { t: number }): Promise<{ store: SegmentStore; ns: Namespace; close(): Promise<void> }> {
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {}, now: () => clock.t });
  return {
    store,
    ns,
    close: async () => {
      await ns.close();
      await store.close();
    },
  };
}

t.test('a locked snapshot survives delete, share delete --force --delete-snapshots and GC until its lock ends', async (t) => {
  const dir = path.join(tmpDir(t, 'vmvault-locks-'), 'store');
  const clock = { t: T0 };
  let h = await open(dir, clock);
  t.teardown(() => h.close());
  const { ns } = h;
  await ns.shares.create('web');
  const data = generate(new Rng(7), 'random', 3 * MiB);
  await writeFile(ns, '/web/disk.raw', data);
  await ns.snapshots.create('web', 'p1');
  // The share's file changes, so only the snapshot holds the old segments.
  await ns.fs.unlink('/web/disk.raw');
  await writeFile(ns, '/web/disk.raw', generate(new Rng(8), 'random', MiB));

  const until = T0 + 2 * HOUR;
  const info = await ns.snapshots.lock('web', 'p1', until);
  t.equal(info.lockedUntil, new Date(until).toISOString());
  const iso = new Date(until).toISOString();

  const del = await refusal(ns.snapshots.remove('web', 'p1'));
  t.equal(del.code, 'LOCKED');
  t.match(del.message, `snapshot web/p1 is under a retention lock until ${iso}`);
  const shareDel = await refusal(ns.shares.remove('web', { force: true, deleteSnapshots: true }));
  t.equal(shareDel.code, 'LOCKED', 'share delete --force --delete-snapshots is refused too');
  t.match(shareDel.message, iso);
  t.match(shareDel.message, 'deleting share web');
  // Through the file system door: rmdir of the share (what FUSE calls).
  t.equal((await refusal(ns.fs.rmdir('/web'))).code === 'ok', false, 'rmdir of the share does not remove it');

  // A shorter lock asked later leaves the longer one.
  const again = await ns.snapshots.lock('web', 'p1', T0 + HOUR);
  t.equal(again.lockedUntil, iso, 'a lock is never shortened');

  // GC: the snapshot's segments are live; it reads back identical afterwards.
  await runGc(ns, { copyForwardBelow: 1 });
  t.equal(sha(await readFile(ns, '/web/.snapshots/p1/disk.raw')), sha(data), 'the locked point reads back identical after GC');

  // A clone of a locked snapshot is an ordinary share: deletable.
  await ns.snapshots.clone('web', 'p1', 'web-copy');
  await ns.shares.remove('web-copy', { force: true });
  t.pass('a clone does not inherit the lock');

  // Restart: the lock is on disk.
  await h.close();
  h = await open(dir, clock);
  t.equal((await h.ns.snapshots.get('web', 'p1')).lockedUntil, iso, 'the lock survives a restart');
  t.equal((await refusal(h.ns.snapshots.remove('web', 'p1'))).code, 'LOCKED');

  // Time passes (the namespace's clock): one ms before the end it still holds, at the end it is gone.
  clock.t = until - 1;
  t.equal((await refusal(h.ns.snapshots.remove('web', 'p1'))).code, 'LOCKED');
  clock.t = until;
  t.equal((await refusal(h.ns.snapshots.remove('web', 'p1'))).code, 'ok', 'deletable once the lock ended');
  await h.ns.shares.remove('web', { force: true });
  // Its segments are garbage now.
  const gc = await runGc(h.ns, { copyForwardBelow: 1 });
  t.ok(gc.reclaimedBytes >= 3 * MiB * 0.9, `GC frees the point's bytes once it is gone (${gc.reclaimedBytes})`);
});

t.test('the share delete names the lock that ends last; an unlocked share still deletes', async (t) => {
  const dir = path.join(tmpDir(t, 'vmvault-locks2-'), 'store');
  const clock = { t: T0 };
  const h = await open(dir, clock);
  t.teardown(() => h.close());
  const { ns } = h;
  await ns.shares.create('db');
  await ns.snapshots.create('db', 'a');
  await ns.snapshots.create('db', 'b');
  await ns.snapshots.create('db', 'c');
  await ns.snapshots.lock('db', 'a', T0 + HOUR);
  await ns.snapshots.lock('db', 'b', T0 + 3 * HOUR);
  const r = await refusal(ns.shares.remove('db', { force: true, deleteSnapshots: true }));
  t.equal(r.code, 'LOCKED');
  t.match(r.message, 'snapshot db/b');
  t.match(r.message, new Date(T0 + 3 * HOUR).toISOString());
  t.match(r.message, 'one of 2 locked snapshots');
  t.equal((await refusal(ns.snapshots.remove('db', 'c'))).code, 'ok', 'an unlocked snapshot beside locked ones deletes');
  const bad = await refusal(ns.snapshots.lock('db', 'a', Number.NaN));
  t.equal(bad.code, 'INVALID_ARGUMENT');
  t.equal((await refusal(ns.snapshots.lock('db', 'nosuch', T0))).code, 'NOT_FOUND');
  clock.t = T0 + 3 * HOUR;
  t.equal((await refusal(ns.shares.remove('db', { force: true, deleteSnapshots: true }))).code, 'ok', 'after the last lock ends the share deletes');
});
