// A backup or restore reports in bytes (phase, total, advance, log); a job shows done/total,
// rate and ETA. This adapter turns the one into the other, so the backup service knows nothing of
// jobs and the job runner nothing of backups.

import type { ByteProgress, JobContext } from './services.js';

/**
 * Done bytes accumulate over the whole job: a new phase changes the label (and restarts the
 * rate), a new total() replaces the total without resetting what is done, so a service that
 * learns the size of the next disk late can raise the total as it goes.
 */
export function jobProgress(ctx: JobContext): ByteProgress {
  let phase: string | undefined;
  let done = 0;
  let total = 0;
  const report = () => ctx.progress(done, total, 'bytes', phase);
  return {
    signal: ctx.signal,
    phase(name: string) {
      phase = name;
      ctx.log(name);
      report();
    },
    total(n: number) {
      if (!Number.isFinite(n) || n < 0) return;
      total = n;
      report();
    },
    advance(n: number) {
      if (!Number.isFinite(n) || n <= 0) return;
      done += n;
      report();
    },
    log: (line: string) => ctx.log(line),
  };
}
