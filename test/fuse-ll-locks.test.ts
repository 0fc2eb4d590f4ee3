// The lock table behind the libfuse3 mount's POSIX, OFD and flock locks (src/fuse/ll-locks.ts):
// conflicts by owner and range, unlock splitting a range, waiters woken by a release, flock
// conversions. The same table is exercised through the kernel in fuse-ll-fs.test.ts.

import t from 'tap';
import { F_RDLCK, F_UNLCK, F_WRLCK, LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN, LockTable } from '../src/fuse/ll-locks.js';

const N = 5n;
const range = (type: number, start: number, end: number) => ({ type, start, end, pid: 1 });

t.test('POSIX ranges: readers share, a writer excludes, unlock splits', async (t) => {
  const l = new LockTable();
  t.equal(l.set(N, 1n, range(F_RDLCK, 0, 99), false), true, 'a read lock');
  t.equal(l.set(N, 2n, range(F_RDLCK, 50, 149), false), true, 'another owner reads an overlapping range');
  t.equal(l.set(N, 3n, range(F_WRLCK, 90, 95), false), false, 'a writer over readers is refused');
  t.equal(l.test(N, 3n, range(F_WRLCK, 90, 95)).type, F_RDLCK, 'getlk names the conflicting read lock');
  t.equal(l.test(N, 1n, range(F_WRLCK, 0, 10)).type, F_UNLCK, "an owner's own lock is no conflict");
  l.set(N, 1n, range(F_UNLCK, 40, 59), false);
  t.equal(l.set(N, 3n, range(F_WRLCK, 150, 200), false), true, 'a disjoint write lock');
  t.equal(l.conflict(N, 3n, range(F_WRLCK, 45, 49)), undefined, 'the unlocked middle of the split range is free');
  t.not(l.conflict(N, 3n, range(F_WRLCK, 30, 39)), undefined, 'the head of the split range is still held');
  l.dropOwner(N, 1n);
  l.dropOwner(N, 2n);
  t.equal(l.set(N, 4n, range(F_WRLCK, 0, 100), false), true, 'flush dropped the owners: the range is free');
});

t.test('a blocking request waits for the release', async (t) => {
  const l = new LockTable();
  l.set(N, 1n, range(F_WRLCK, 0, 0), false);
  let got = false;
  const p = (l.set(N, 2n, range(F_WRLCK, 0, 0), true) as Promise<true>).then(() => (got = true));
  await new Promise((r) => setImmediate(r));
  t.equal(got, false, 'still waiting while the lock is held');
  l.set(N, 1n, range(F_UNLCK, 0, 0), false);
  await p;
  t.equal(got, true, 'granted once it is released');
  t.not(l.conflict(N, 1n, range(F_RDLCK, 0, 0)), undefined, 'and now held by the waiter');
});

t.test('flock: shared, exclusive, non-blocking, conversion, release', async (t) => {
  const l = new LockTable();
  t.equal(l.flock(N, 10, LOCK_SH), true, 'shared');
  t.equal(l.flock(N, 11, LOCK_SH | LOCK_NB), true, 'shared again by another open file');
  t.equal(l.flock(N, 12, LOCK_EX | LOCK_NB), false, 'exclusive refused while shared');
  l.flock(N, 11, LOCK_UN);
  t.equal(l.flock(N, 10, LOCK_EX | LOCK_NB), true, 'the only holder converts to exclusive');
  const waiting = l.flock(N, 12, LOCK_EX) as Promise<true>;
  l.dropFlock(N, 10);
  t.equal(await waiting, true, 'release hands it to the waiter');
  t.equal(l.count(N), 1, 'one lock held');
});

t.test('release of a handle drops the locks taken through it (OFD locks end with their file)', async (t) => {
  const l = new LockTable();
  l.used(7, 42n);
  l.set(N, 42n, range(F_WRLCK, 100, 100), false);
  l.flock(N, 7, LOCK_EX);
  t.equal(l.set(N, 43n, range(F_RDLCK, 100, 100), false), false, 'held while the file is open');
  l.dropHandle(N, 7);
  t.equal(l.count(N), 0, 'nothing held after release');
  t.equal(l.set(N, 43n, range(F_RDLCK, 100, 100), false), true, 'another owner gets it');
});

t.test('a waiting request given up (the kernel interrupted it) rejects with EINTR and leaves the queue', async (t) => {
  const l = new LockTable();
  l.set(N, 1n, range(F_WRLCK, 0, 0), false);
  let cancelSet: (() => void) | undefined;
  const p = l.set(N, 2n, range(F_WRLCK, 0, 0), true, (c) => (cancelSet = c)) as Promise<true>;
  l.flock(N, 10, LOCK_EX);
  let cancelFlock: (() => void) | undefined;
  const f = l.flock(N, 11, LOCK_EX, (c) => (cancelFlock = c)) as Promise<true>;
  t.equal(l.waiting(N), 2, 'both wait');
  cancelSet!();
  cancelFlock!();
  await t.rejects(p, { code: 'EINTR' }, 'the POSIX wait fails with EINTR');
  await t.rejects(f, { code: 'EINTR' }, 'the flock wait fails with EINTR');
  t.equal(l.waiting(N), 0, 'nobody waits any more');
  l.set(N, 1n, range(F_UNLCK, 0, 0), false);
  l.dropFlock(N, 10);
  t.equal(l.count(N), 0, 'the given-up requests took nothing when the locks were freed');
  cancelSet!();
  t.pass('a second cancel does nothing');
});
