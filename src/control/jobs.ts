// Long operations (GC, verify, index rebuild, VM backups and restores) run as jobs: started by
// one request, watched by polling, cancelled by another. The runner owns the bookkeeping (state,
// progress, rate, ETA, history, exclusivity); the work itself is a body function from
// ControlServices.

import { randomBytes } from 'node:crypto';
import { isVmvaultError, vmError } from '../errors.js';
import { INTERNAL_CODE } from './http-status.js';
import type { JobHistoryFile } from './job-history.js';
import type { JobContext, ProgressUnit } from './services.js';

export const JOB_KINDS = ['gc', 'verify', 'index-rebuild', 'backup', 'restore', 'catalog', 'clone'] as const;
export type JobKind = (typeof JOB_KINDS)[number];
export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

// GC deletes and rewrites containers and index entries, and a rebuild rewrites the whole index,
// so neither may overlap the other or itself; a verify running beside either would report
// segments moved under it as missing. Verifies may overlap each other.
//
// A backup writes into its VM's share through the namespace, as any writer on the mount does, and
// the mount keeps taking writes during all three: GC marks from open writers and marks live every
// segment dedup hits while it runs (store/gc/hooks.ts), a verify of the store reads only sealed
// containers, and an index rebuild leaves alone containers created while it runs (ARCHITECTURE.md,
// commit rules). So backups and restores (which read an immutable snapshot) overlap them freely.
// What they must not overlap is themselves on one resource (JobOptions.resource): two backups of
// one VM would interleave writes into the same disk files and fight over QEMU's fleecing nodes and
// checkpoint bitmaps; two restores into one directory would write the same files.
const CONFLICTS: Record<JobKind, readonly JobKind[]> = {
  gc: ['gc', 'index-rebuild', 'verify'],
  'index-rebuild': ['gc', 'index-rebuild', 'verify'],
  verify: ['gc', 'index-rebuild'],
  backup: [],
  restore: [],
  // A catalog build reads one snapshot (immutable) and writes its own SQLite file; builds of one
  // share queue in the catalog service (reuse needs the previous point's catalog finished).
  catalog: [],
  // A clone copy reads one snapshot (immutable) and writes elsewhere (issue 14).
  clone: [],
};
/** Kinds that conflict with a job of the listed kinds on the same resource. */
const RESOURCE_CONFLICTS: Record<JobKind, readonly JobKind[]> = {
  gc: [],
  'index-rebuild': [],
  verify: [],
  backup: ['backup'],
  restore: ['restore'],
  catalog: [],
  // Two copies of one VM to one destination would send the same files twice at once.
  clone: ['clone'],
};

export interface JobOptions {
  /** What the job holds ("vm:web01" for a backup, "dir:/srv/restore" for a restore); see RESOURCE_CONFLICTS. */
  resource?: string;
}

const LOG_LINES = 50;
// Rate is a moving average over windows at least this long, so a burst of tiny reports does
// not make it jump around.
const RATE_WINDOW_MS = 500;
const RATE_WEIGHT = 0.3;

export interface JobView {
  id: string;
  kind: JobKind;
  /** What the job works on, e.g. "store" or "snapshot vms/nightly". */
  target: string;
  state: JobState;
  progress: { done: number; total: number; unit: ProgressUnit; phase?: string };
  /** Units per second, smoothed; null until known. */
  rate: number | null;
  /** Seconds left at the current rate; null when unknown. */
  etaSeconds: number | null;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  cancelRequested: boolean;
  result: unknown;
  error: { code: string; message: string } | null;
  log: string[];
}

export type JobBody = (ctx: JobContext) => Promise<unknown>;

export interface JobRunnerOptions {
  /** Finished jobs kept for GET /jobs (default 200). */
  history?: number;
  /**
   * Where the history survives restarts: loaded by restore(), saved whenever a job starts or
   * ends. Without it the history lives only as long as the process.
   */
  persist?: JobHistoryFile;
  now?: () => number;
  /** Where failures that are not VmvaultErrors (bugs) are reported with their stack. */
  onInternalError?: (job: JobView, err: unknown) => void;
}

interface Job {
  view: JobView;
  controller: AbortController;
  finished: Promise<void>;
  rateAt: number;
  rateDone: number;
  resource?: string;
}

export class JobRunner {
  private readonly jobs = new Map<string, Job>();
  private readonly historyLimit: number;
  private readonly now: () => number;
  private readonly onInternalError: (job: JobView, err: unknown) => void;
  private readonly persist: JobHistoryFile | undefined;
  private closed = false;

  constructor(opts: JobRunnerOptions = {}) {
    this.historyLimit = opts.history ?? 200;
    this.now = opts.now ?? Date.now;
    this.onInternalError = opts.onInternalError ?? (() => {});
    this.persist = opts.persist;
  }

  /**
   * Loads the saved history (before any job starts). A job saved as queued or running was cut
   * off by a crash or a kill: it shows as failed, interrupted, never as still running.
   */
  async restore(): Promise<void> {
    if (!this.persist) return;
    for (const saved of await this.persist.load()) {
      if (this.jobs.has(saved.id)) continue;
      const view: JobView = { ...snapshot({ ...saved, log: Array.isArray(saved.log) ? saved.log : [] }) };
      if (isActive(view.state)) {
        view.state = 'failed';
        view.etaSeconds = null;
        view.endedAt = null;
        view.error = { code: 'CLOSED', message: `interrupted: the appliance stopped while this job was ${saved.state} (crash or kill); it did not finish` };
      }
      this.jobs.set(view.id, { view, controller: new AbortController(), finished: Promise.resolve(), rateAt: 0, rateDone: 0 });
    }
    this.trimHistory();
    this.save();
  }

  /** Resolves once the history is on disk (after close(), before the process exits). */
  async flush(): Promise<void> {
    await this.persist?.flush();
  }

  /** Starts `body` as a job; CONFLICT (details.job = the running job's id) if a conflicting job is active. */
  start(kind: JobKind, target: string, body: JobBody, opts: JobOptions = {}): JobView {
    if (this.closed) throw vmError('CLOSED', 'the appliance is shutting down; no new jobs');
    for (const other of this.jobs.values()) {
      if (!isActive(other.view.state)) continue;
      const sameResource = opts.resource !== undefined && other.resource === opts.resource && RESOURCE_CONFLICTS[kind].includes(other.view.kind);
      if (CONFLICTS[kind].includes(other.view.kind) || sameResource) {
        const what = sameResource ? `${other.view.kind} job ${other.view.id} (${other.view.target})` : `${other.view.kind} job ${other.view.id}`;
        throw vmError('CONFLICT', `${what} is ${other.view.state}; wait for it or cancel it before starting ${kind}`, {
          job: other.view.id,
        });
      }
    }
    const id = this.newId();
    const view: JobView = {
      id,
      kind,
      target,
      state: 'queued',
      progress: { done: 0, total: 0, unit: 'items' },
      rate: null,
      etaSeconds: null,
      createdAt: this.iso(),
      startedAt: null,
      endedAt: null,
      cancelRequested: false,
      result: null,
      error: null,
      log: [],
    };
    const job: Job = { view, controller: new AbortController(), finished: Promise.resolve(), rateAt: 0, rateDone: 0, resource: opts.resource };
    this.jobs.set(id, job);
    job.finished = this.run(job, body);
    this.save();
    return snapshot(view);
  }

  /** The active job of one of `kinds` holding `resource`, if any. */
  activeOn(resource: string, kinds: readonly JobKind[]): JobView | undefined {
    for (const job of this.jobs.values()) {
      if (isActive(job.view.state) && job.resource === resource && kinds.includes(job.view.kind)) return snapshot(job.view);
    }
    return undefined;
  }

  get(id: string): JobView {
    return snapshot(this.mustFind(id).view);
  }

  /** Newest first. */
  list(): JobView[] {
    return [...this.jobs.values()].map((j) => snapshot(j.view)).reverse();
  }

  /** Asks a queued or running job to stop; it ends 'cancelled' once its body gives up. */
  cancel(id: string): JobView {
    const job = this.mustFind(id);
    if (!isActive(job.view.state)) {
      throw vmError('CONFLICT', `job ${id} already ${job.view.state}; nothing to cancel`, { job: id });
    }
    job.view.cancelRequested = true;
    job.controller.abort(vmError('CANCELLED', `job ${id} was cancelled`));
    return snapshot(job.view);
  }

  /** Resolves when the job has ended (any final state). */
  async wait(id: string): Promise<JobView> {
    const job = this.mustFind(id);
    await job.finished;
    return snapshot(job.view);
  }

  /** Cancels every active job and waits for them to end; later start() calls fail with CLOSED. */
  async close(): Promise<void> {
    this.closed = true;
    const active = [...this.jobs.values()].filter((j) => isActive(j.view.state));
    for (const job of active) {
      job.view.cancelRequested = true;
      job.controller.abort(vmError('CLOSED', 'the appliance is shutting down'));
    }
    await Promise.all(active.map((j) => j.finished));
    await this.flush();
  }

  private async run(job: Job, body: JobBody): Promise<void> {
    // Let start() return the job id before any work happens.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const view = job.view;
    const signal = job.controller.signal;
    if (signal.aborted) return this.finish(job, 'cancelled', null, signal.reason);
    view.state = 'running';
    view.startedAt = this.iso();
    job.rateAt = this.now();
    this.save();
    const ctx: JobContext = {
      signal,
      progress: (done, total, unit, phase) => this.progress(job, done, total, unit, phase),
      log: (message) => {
        view.log.push(`${this.iso()} ${message}`);
        if (view.log.length > LOG_LINES) view.log.splice(0, view.log.length - LOG_LINES);
        this.save();
      },
    };
    try {
      const result = await body(ctx);
      this.finish(job, 'succeeded', result ?? null, undefined);
    } catch (err) {
      // Whatever a body throws once it has been asked to stop counts as stopping.
      this.finish(job, signal.aborted ? 'cancelled' : 'failed', null, signal.aborted ? signal.reason : err);
    }
  }

  private finish(job: Job, state: JobState, result: unknown, err: unknown): void {
    const view = job.view;
    view.state = state;
    view.endedAt = this.iso();
    view.result = result;
    view.etaSeconds = state === 'succeeded' ? 0 : null;
    if (err !== undefined) {
      if (isVmvaultError(err)) {
        view.error = { code: err.code, message: err.message };
      } else {
        view.error = { code: INTERNAL_CODE, message: `internal error in the ${view.kind} job; see the appliance log` };
        this.onInternalError(snapshot(view), err);
      }
    }
    this.trimHistory();
    this.save();
  }

  /** Oldest first, as restore() expects them back. */
  private save(): void {
    this.persist?.save([...this.jobs.values()].map((j) => snapshot(j.view)));
  }

  private progress(job: Job, done: number, total: number, unit: ProgressUnit, phase?: string): void {
    const view = job.view;
    if (!isActive(view.state) || !Number.isFinite(done) || !Number.isFinite(total)) return;
    const now = this.now();
    const p = view.progress;
    // A new unit or a step backwards is a new phase: its rate has nothing to do with the last.
    if (unit !== p.unit || phase !== p.phase || done < p.done) {
      view.rate = null;
      job.rateAt = now;
      job.rateDone = done;
    }
    view.progress = phase === undefined ? { done, total, unit } : { done, total, unit, phase };
    const elapsed = now - job.rateAt;
    if (elapsed >= RATE_WINDOW_MS) {
      const instant = ((done - job.rateDone) * 1000) / elapsed;
      view.rate = view.rate === null ? instant : RATE_WEIGHT * instant + (1 - RATE_WEIGHT) * view.rate;
      job.rateAt = now;
      job.rateDone = done;
    }
    view.etaSeconds = view.rate !== null && view.rate > 0 && total > 0 ? Math.max(0, (total - done) / view.rate) : null;
  }

  private trimHistory(): void {
    const finished = [...this.jobs.values()].filter((j) => !isActive(j.view.state));
    for (const job of finished.slice(0, Math.max(0, finished.length - this.historyLimit))) this.jobs.delete(job.view.id);
  }

  private mustFind(id: string): Job {
    const job = this.jobs.get(id);
    if (job === undefined) throw vmError('NOT_FOUND', `no job ${id} (finished jobs are kept for the last ${this.historyLimit})`);
    return job;
  }

  private newId(): string {
    for (;;) {
      const id = randomBytes(6).toString('hex');
      if (!this.jobs.has(id)) return id;
    }
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }
}

/** Queued or running: the CLI stops watching when this turns false. */
export function isActive(state: JobState): boolean {
  return state === 'queued' || state === 'running';
}

// Callers get copies: a view handed to Fastify for serialization must not change under it.
function snapshot(view: JobView): JobView {
  return { ...view, progress: { ...view.progress }, log: [...view.log], error: view.error && { ...view.error } };
}
