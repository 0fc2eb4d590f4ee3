// dispatchOps: an onBatch that calls one function per op. The function answers through the
// session; a missing op is answered ENOSYS, one that throws or rejects EIO (if still
// unanswered), with a log line, so a bug in a handler never crashes the process or hangs the
// caller.
import { EIO, ENOSYS } from './errno.js';
import type { LlSession, OnBatch } from './session.js';
import type { LlOp, LlRequest, LlRequestOf } from './types.js';

export type LlOps = { [O in LlOp]: (req: LlRequestOf<O>, session: LlSession) => void | Promise<void> };

export function dispatchOps(ops: Partial<LlOps>, opts: { log?: (line: string) => void } = {}): OnBatch {
  const log = opts.log ?? ((line: string) => void process.stderr.write(`vmvault fuse3: ${line}\n`));
  const failed = (s: LlSession, r: LlRequest, err: unknown): void => {
    if (r.id !== 0 && s.replyErr(r.id, EIO)) log(`${r.op} failed, answered EIO: ${(err as Error)?.stack ?? String(err)}`);
    else log(`${r.op} failed after answering: ${(err as Error)?.message ?? String(err)}`);
  };
  return (reqs, s) => {
    for (const r of reqs) {
      const fn = ops[r.op] as ((req: LlRequest, s: LlSession) => void | Promise<void>) | undefined;
      if (!fn) {
        if (r.id !== 0) s.replyErr(r.id, ENOSYS);
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
