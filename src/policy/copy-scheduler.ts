// The scheduling both kinds of copy share (issue 14): clone copies of points (clone-scheduler.ts)
// and DR copies of the appliance (dr-scheduler.ts). Each names its schedules; this runs them:
//
// - The missed-run rule of backups (scheduler.ts): however many times a schedule passed while the
//   appliance was down, one copy per run it names. Each schedule's last tick is kept in the run
//   history, so a restart does not repeat what already ran.
// - A failed copy is retried on a backoff (RETRY_MS: 1 min, 5 min, 15 min, 1 h, 4 h), each failure
//   and its retry time recorded in the policy's run history; the next scheduled time starts afresh.
// - A copy due while the same copy (same key) is running or waiting for its retry is skipped, and
//   that is recorded too: never two of one copy at once.
// - One bad schedule (a damaged policies.json) is logged and skipped; the others go on.

import { type SchedulerClock, systemClock } from './clock.js';
import { lastDue, parseCron } from './policies.js';
import type { RunHistory } from './run-history.js';

export const RETRY_MS = [60_000, 5 * 60_000, 15 * 60_000, 60 * 60_000, 4 * 60 * 60_000];

/** What a started copy job reports when it ends. */
export interface CopyResult {
  ok: boolean;
  error?: string;
  /** The point copied (clone copies). */
  point?: string;
  /** The copy's name (DR copies). */
  copy?: string;
}

/** One copy a schedule makes when it is due. */
export interface CopyRun {
  /** Copies with the same key never run at once. */
  key: string;
  policy: string;
  /** The run history's VM field. */
  vm: string;
  /** What the copy is, for the history: "clone to site-b". */
  what: string;
  /** Why a due copy was skipped because the same one is still active. */
  busy: string;
  start(): Promise<{ job: string; done: Promise<CopyResult> }>;
  /** The history's detail of a success. */
  succeeded(r: CopyResult): string;
}

/** One cron schedule of one policy and the copies it makes when due. */
export interface CopySchedule {
  /** The run-history tick key (unique per policy, kind, cron and destination). */
  tickKey: string;
  cron: string;
  /** Used to compute the missed-run start when the history has no tick yet. */
  createdAt: string;
  /** Names the schedule in the log when its cron does not parse. */
  describe: string;
  runs(): CopyRun[];
}

export interface CopySchedulerOptions {
  /** "clone" or "dr": the log's prefix. */
  name: string;
  schedules: () => CopySchedule[];
  history: RunHistory;
  clock?: SchedulerClock;
  retryMs?: number[];
  recheckMs?: number;
  log?: (l: string) => void;
}

interface Active {
  done: Promise<void>;
  retryTimer?: unknown;
}

export class CopyScheduler {
  private readonly clock: SchedulerClock;
  readonly retryMs: number[];
  private readonly log: (l: string) => void;
  /** Copies running or waiting for a retry, by key. */
  private readonly active = new Map<string, Active>();
  private timer: unknown;
  private stopped = true;
  private ticking: Promise<void> = Promise.resolve();

  constructor(private readonly o: CopySchedulerOptions) {
    this.clock = o.clock ?? systemClock;
    this.retryMs = o.retryMs ?? RETRY_MS;
    this.log = o.log ?? (() => {});
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clear(this.timer);
    this.timer = undefined;
    for (const a of this.active.values()) if (a.retryTimer !== undefined) this.clock.clear(a.retryTimer);
  }

  reschedule(): void {
    if (!this.stopped) void this.tick();
  }

  async ticked(): Promise<void> {
    await this.ticking;
  }

  /** Resolves when no copy runs (retries waiting on a timer do not count). */
  async settled(): Promise<void> {
    await this.ticking;
    await Promise.all([...this.active.values()].map((a) => a.done));
  }

  /** Keys of the copies running or waiting for a retry (for `policy show`). */
  activity(): string[] {
    return [...this.active.keys()];
  }

  private tick(): Promise<void> {
    const run = this.ticking.then(() => this.tickNow()).catch((err) => this.log(`${this.o.name} scheduler: ${(err as Error).message}`));
    this.ticking = run;
    return run;
  }

  private async tickNow(): Promise<void> {
    if (this.stopped) return;
    if (this.timer !== undefined) this.clock.clear(this.timer);
    this.timer = undefined;
    const now = this.clock.now();
    const ticks: Record<string, number> = {};
    for (const s of this.o.schedules()) {
      let cron;
      try {
        cron = parseCron(s.cron);
      } catch (err) {
        this.log(`${s.describe}: ${(err as Error).message}`);
        continue;
      }
      const from = this.o.history.lastTick(s.tickKey) ?? Date.parse(s.createdAt);
      const { due } = lastDue(cron, from, now);
      ticks[s.tickKey] = now;
      if (due === undefined) continue;
      for (const r of s.runs()) await this.begin(r, new Date(due).toISOString(), 0);
    }
    if (Object.keys(ticks).length > 0) await this.o.history.setTicks(ticks);
    this.arm(now);
  }

  private arm(now: number): void {
    if (this.stopped) return;
    let wait = this.o.recheckMs ?? 60_000;
    for (const s of this.o.schedules()) {
      try {
        const next = parseCron(s.cron).nextRun(new Date(now));
        if (next) wait = Math.min(wait, Math.max(0, next.getTime() - this.clock.now()));
      } catch {
        // logged by the tick
      }
    }
    this.timer = this.clock.setTimer(() => void this.tick(), wait);
  }

  private async begin(r: CopyRun, due: string, attempt: number): Promise<void> {
    const h = this.o.history;
    const { policy, vm } = r;
    if (attempt === 0 && this.active.has(r.key)) {
      await h.add({ at: this.iso(), policy, vm, event: 'skipped', due, detail: r.busy });
      return;
    }
    const entry: Active = { done: Promise.resolve() };
    this.active.set(r.key, entry);
    entry.done = (async () => {
      let failed: string | undefined;
      let job: string | undefined;
      let result: CopyResult | undefined;
      try {
        const started = await r.start();
        job = started.job;
        await h.add({ at: this.iso(), policy, vm, event: 'started', due, job, detail: `${r.what}${attempt > 0 ? ` (retry ${attempt} of ${this.retryMs.length})` : ''}` });
        result = await started.done;
        if (!result.ok) failed = result.error ?? 'failed';
      } catch (err) {
        failed = (err as Error).message;
      }
      const jobField = job ? { job } : {};
      if (failed === undefined) {
        await h.add({ at: this.iso(), policy, vm, event: 'succeeded', due, ...jobField, ...(result?.point ? { point: result.point } : {}), detail: r.succeeded(result!) });
        this.active.delete(r.key);
        return;
      }
      if (this.stopped || attempt >= this.retryMs.length) {
        await h.add({ at: this.iso(), policy, vm, event: 'failed', due, ...jobField, detail: `${r.what} failed: ${failed}; ${this.stopped ? 'the appliance is stopping' : `gave up after ${attempt} retries; the next scheduled time tries again`}` });
        this.active.delete(r.key);
        return;
      }
      const wait = this.retryMs[attempt];
      const at = new Date(this.clock.now() + wait).toISOString();
      // Armed before it is recorded: whoever reads the record finds the retry already set.
      entry.retryTimer = this.clock.setTimer(() => {
        if (this.stopped) return;
        this.active.delete(r.key);
        void this.begin(r, due, attempt + 1);
      }, wait);
      await h.add({ at: this.iso(), policy, vm, event: 'failed', due, ...jobField, detail: `${r.what} failed: ${failed}; retry ${attempt + 1} of ${this.retryMs.length} at ${at}` });
      this.log(`policy ${policy}: ${r.what} failed (${failed}); retry at ${at}`);
    })().catch((err) => {
      this.log(`${this.o.name} scheduler: ${(err as Error).message}`);
      this.active.delete(r.key);
    });
  }

  private iso(): string {
    return new Date(this.clock.now()).toISOString();
  }
}
