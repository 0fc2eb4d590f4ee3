// dispatchOps: an onBatch that calls one function per op. The function answers through the
// session; a missing op is answered ENOSYS, one that throws or rejects EIO (if still
// unanswered), with a log line, so a bug in a handler never crashes the process or hangs the
// caller. A request the kernel interrupted before it reached us (its caller got a signal) is
// answered EINTR without running, when nothing has been done for it yet and giving it up
// changes nothing: reads, writes, syncs, waiting lock requests, seeks, listings. release, flush
// and forget always run (they free handles and drop locks); the rest run and answer as usual.
// A lock request that does not wait (getlk, F_SETLK, flock with LOCK_NB) runs even when
// interrupted: on a local file system it never sleeps, so it never fails with EINTR, and QEMU
// takes its image locks with F_OFD_SETLK and does not retry on EINTR (a signal to any thread of
// a qemu-img converting into the mount failed it: "Failed to get "resize" lock: Interrupted
// system call").
import { EINTR, EIO, ENOSYS } from './errno.js';
import type { LlSession, OnBatch } from './session.js';
import type { LlOp, LlRequest, LlRequestOf } from './types.js';

const GIVE_UP = new Set<LlOp>(['read', 'write', 'fsync', 'fsyncdir', 'setlk', 'flock', 'lseek', 'fallocate', 'copy_file_range', 'readdir']);
const LOCK_NB = 4;
const LOCK_UN = 8;

/** Whether an interrupted request is answered EINTR without running (see above). */
function givesUp(r: LlRequest): boolean {
  if (!GIVE_UP.has(r.op)) return false;
  if (r.op === 'setlk') return r.sleep;
  if (r.op === 'flock') return (r.operation & (LOCK_NB | LOCK_UN)) === 0;
  return true;
}

export type LlOps = { [O in LlOp]: (req: LlRequestOf<O>, session: LlSession) => void | Promise<void> };

export function dispatchOps(ops: Partial<LlOps>, opts: { log?: (line: string) => void } = {}): OnBatch {
  const log = opts.log ?? ((line: string) => void process.stderr.write(`vmvault fuse3: ${line}\n`));
  const failed = (s: LlSession, r: LlRequest, err: unknown): void => {
    if (r.id !== 0 && s.replyErr(r.id, EIO)) log(`${r.op} failed, answered EIO: ${(err as Error)?.stack ?? String(err)}`);
    else log(`${r.op} failed after answering: ${(err as Error)?.message ?? String(err)}`);
  };
  return (reqs, s) => {
    for (const r of reqs) {
      if (r.interrupted && givesUp(r)) {
        s.replyErr(r.id, EINTR);
        // A payload in the write ring nobody will read (write-ring.ts).
        if (r.op === 'write') r.release?.();
        continue;
      }
      const fn = ops[r.op] as ((req: LlRequest, s: LlSession) => void | Promise<void>) | undefined;
      if (!fn) {
        if (r.id !== 0) s.replyErr(r.id, ENOSYS);
        if (r.op === 'write') r.release?.();
        continue;
      }
      try {
        const p = fn(r, s);
        if (p && typeof (p as Promise<void>).then === 'function') (p as Promise<void>).catch((err) => failed(s, r, err));
      } catch (err) {
        failed(s, r, err);
      }
    }
  };
}
