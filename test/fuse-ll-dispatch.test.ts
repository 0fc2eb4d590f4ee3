// dispatchOps and requests the kernel interrupted before they reached JavaScript: a request that
// may wait (F_SETLKW, a blocking flock, a read) is given up with EINTR; a lock request that
// never waits runs as usual, because on a local file system it cannot fail with EINTR and QEMU
// does not retry its image locks (F_OFD_SETLK) on EINTR. A run of the suite saw qemu-img fail so while
// converting into the mount. The interrupt's timing cannot be forced through a real mount, so
// the session here is a stand-in that records answers (a test double of LlSession's replies
// only); the dispatcher is the real one.

import t from 'tap';
import { dispatchOps } from '../src/fuse/ll/dispatch.js';
import type { LlSession } from '../src/fuse/ll/session.js';
import type { LlRequest } from '../src/fuse/ll/types.js';

const EINTR = 4;
const LOCK_SH = 1;
const LOCK_NB = 4;
const LOCK_UN = 8;

function run(req: Record<string, unknown>): { errno: number | undefined; ran: boolean } {
  let errno: number | undefined;
  let ran = false;
  const session = { replyErr: (_id: number, e: number) => ((errno = e), true) } as unknown as LlSession;
  const answer = (_r: unknown, s: LlSession) => {
    ran = true;
    s.replyErr(1, 0);
  };
  const onBatch = dispatchOps({ setlk: answer, getlk: answer, flock: answer, read: answer }, { log: () => {} });
  onBatch([{ id: 1, uid: 0, gid: 0, pid: 1, interrupted: true, ino: 2n, fh: 1, lockOwner: 1n, ...req } as unknown as LlRequest], session);
  return { errno, ran };
}

const lock = { type: 1, start: 0, end: 0, pid: 1 };

t.test('interrupted lock requests that never wait still run; waiting ones are given up', async (t) => {
  t.same(run({ op: 'setlk', lock, sleep: false }), { errno: 0, ran: true }, 'F_SETLK (QEMU image locks) runs');
  t.same(run({ op: 'getlk', lock }), { errno: 0, ran: true }, 'F_GETLK runs');
  t.same(run({ op: 'flock', operation: LOCK_SH | LOCK_NB }), { errno: 0, ran: true }, 'flock LOCK_NB runs');
  t.same(run({ op: 'flock', operation: LOCK_UN }), { errno: 0, ran: true }, 'flock LOCK_UN runs');
  t.same(run({ op: 'setlk', lock, sleep: true }), { errno: EINTR, ran: false }, 'F_SETLKW is given up: EINTR');
  t.same(run({ op: 'flock', operation: LOCK_SH }), { errno: EINTR, ran: false }, 'a blocking flock is given up: EINTR');
  t.same(run({ op: 'read', offset: 0, size: 4096 }), { errno: EINTR, ran: false }, 'a read not yet started is given up: EINTR');
});
