// Watches a job until it ends: a redrawn bar on a terminal, a line every few seconds in a log,
// and Ctrl-C cancels the job on the appliance (not just the watching) before exiting.

import { isActive, type JobView } from '../control/jobs.js';
import { type ApiClient, seg } from './client.js';
import { formatDuration, formatProgress, formatRate, progressBar } from './format.js';
import type { CliIO } from './io.js';

const POLL_MS = 300;
const LOG_EVERY_MS = 5000;
/** After Ctrl-C, how long to wait for the job to confirm it stopped. */
const CANCEL_WAIT_MS = 10_000;

export interface WatchResult {
  job: JobView;
  /** Ctrl-C was pressed (and the job was asked to cancel). */
  interrupted: boolean;
}

export async function watchJob(client: ApiClient, id: string, io: CliIO, pollMs = POLL_MS): Promise<WatchResult> {
  let interrupted = false;
  let cancelledAt = 0;
  let forceExit: (() => void) | undefined;
  const forced = new Promise<void>((resolve) => (forceExit = resolve));
  const stop = io.onInterrupt(() => {
    if (interrupted) return forceExit?.();
    interrupted = true;
    cancelledAt = Date.now();
    io.stderr(`${io.stderrIsTTY ? '\n' : ''}cancelling job ${id} (Ctrl-C again to stop waiting)\n`);
    client.delete(`/jobs/${seg(id)}`).catch(() => {
      // Already ended (409) or unreachable: the next poll tells which.
    });
  });
  let lastLog = Date.now();
  let drawn = false;
  try {
    for (;;) {
      const job = await client.get<JobView>(`/jobs/${seg(id)}`);
      if (!isActive(job.state) || (interrupted && Date.now() - cancelledAt > CANCEL_WAIT_MS)) {
        if (drawn) io.stderr('\r\x1b[2K');
        return { job, interrupted };
      }
      if (io.stderrIsTTY) {
        io.stderr(`\r\x1b[2K${progressLine(job, true)}`);
        drawn = true;
      } else if (Date.now() - lastLog >= LOG_EVERY_MS) {
        io.stderr(`${progressLine(job, false)}\n`);
        lastLog = Date.now();
      }
      const outcome = await Promise.race([sleep(pollMs).then(() => 'poll' as const), forced.then(() => 'forced' as const)]);
      if (outcome === 'forced') return { job, interrupted: true };
    }
  } finally {
    stop();
  }
}

/**
 * "gc: sweeping containers  [######......]  50%  12 / 24 containers  3.5 containers/s  0:04 left":
 * the job, its phase, how far in the phase's own unit, the rate and the time left when known.
 */
export function progressLine(job: JobView, bar: boolean): string {
  const { done, total, unit, phase } = job.progress;
  if (job.state === 'queued') return `${job.kind}: queued`;
  const parts: string[] = [phase === undefined ? job.kind : `${job.kind}: ${phase}`];
  if (bar && total > 0) parts.push(progressBar(done, total, 24));
  parts.push(formatProgress(done, total, unit));
  if (job.rate !== null) parts.push(formatRate(job.rate, unit));
  if (job.etaSeconds !== null) parts.push(`${formatDuration(job.etaSeconds)} left`);
  return parts.join('  ');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
