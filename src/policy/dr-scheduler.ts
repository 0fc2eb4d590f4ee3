// Scheduled DR copies (issue 14): each policy's `--dr 'daily 03:00 -> dr-1'` makes a copy of the
// whole appliance (dr-copy.ts) to the destination when the schedule says. The missed-run rule of
// backups and clones (scheduler.ts, clone-scheduler.ts): however many times passed while the
// appliance was down, one copy. A copy is an ordinary `dr-copy` job (the starter makes it). A
// failed copy is retried on the clone copies' backoff (RETRY_MS); a copy due while one to the
// same destination is running or waiting to retry is skipped. Each event goes into the policy's
// run history with the VM field "(dr copy)", since a DR copy is of the appliance, not of a VM.

import { type SchedulerClock, systemClock } from './clock.js';
import { RETRY_MS } from './clone-scheduler.js';
import { lastDue, parseCron, type PolicyRegistry } from './policies.js';
import type { RunHistory } from './run-history.js';

export type DrStarter = (destination: string, policy: string) => Promise<{ job: string; done: Promise<{ ok: boolean; error?: string; copy?: string }> }>;

export const DR_RUN_VM = '(dr copy)';

export interface DrSchedulerOptions {
  registry: PolicyRegistry;
  history: RunHistory;
  start: DrStarter;
  clock?: SchedulerClock;
  retryMs?: number[];
  recheckMs?: number;
  log?: (l: string) => void;
}

function tickKey(policy: string, cron: string, destination: string): string {
  return `${policy}\u0000dr ${cron} -> ${destination}`;
}

export class DrScheduler {
  private readonly clock: SchedulerClock;
  private readonly retryMs: number[];
  private readonly log: (l: string) => void;
  /** Destinations with a copy running or waiting for a retry. */
  private readonly active = new Map<string, { done: Promise<void>; retryTimer?: unknown }>();
  private timer: unknown;
  private stopped = true;
  private ticking: Promise<void> = Promise.resolve();

  constructor(private readonly o: DrSchedulerOptions) {
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

  /** Resolves when no copy runs (retries waiting on a timer do not count). */
  async settled(): Promise<void> {
    await this.ticking;
    await Promise.all([...this.active.values()].map((a) => a.done));
  }

  private tick(): Promise<void> {
    const run = this.ticking.then(() => this.tickNow()).catch((err) => this.log(`dr scheduler: ${(err as Error).message}`));
    this.ticking = run;
    return run;
  }

  private async tickNow(): Promise<void> {
    if (this.stopped) return;
    if (this.timer !== undefined) this.clock.clear(this.timer);
    this.timer = undefined;
    const now = this.clock.now();
    const ticks: Record<string, number> = {};
    for (const p of this.o.registry.list()) {
      if (!p.dr) continue;
      const key = tickKey(p.name, p.dr.cron, p.dr.destination);
      const from = this.o.history.lastTick(key) ?? Date.parse(p.createdAt);
      const { due } = lastDue(parseCron(p.dr.cron), from, now);
      ticks[key] = now;
      if (due !== undefined) await this.begin(p.name, p.dr.destination, new Date(due).toISOString(), 0);
    }
    if (Object.keys(ticks).length > 0) await this.o.history.setTicks(ticks);
    this.arm(now);
  }

  private arm(now: number): void {
    if (this.stopped) return;
    let wait = this.o.recheckMs ?? 60_000;
    for (const p of this.o.registry.list()) {
      if (!p.dr) continue;
      const next = parseCron(p.dr.cron).nextRun(new Date(now));
      if (next) wait = Math.min(wait, Math.max(0, next.getTime() - this.clock.now()));
    }
    this.timer = this.clock.setTimer(() => void this.tick(), wait);
  }

  private async begin(policy: string, destination: string, due: string, attempt: number): Promise<void> {
    const h = this.o.history;
    const vm = DR_RUN_VM;
    if (attempt === 0 && this.active.has(destination)) {
      await h.add({ at: this.iso(), policy, vm, event: 'skipped', due, detail: `DR copy to ${destination} not started: the previous one is running or waiting to retry` });
      return;
    }
    const entry: { done: Promise<void>; retryTimer?: unknown } = { done: Promise.resolve() };
    this.active.set(destination, entry);
    entry.done = (async () => {
      let failed: string | undefined;
      let job: string | undefined;
      let copy: string | undefined;
      try {
        const started = await this.o.start(destination, policy);
        job = started.job;
        await h.add({ at: this.iso(), policy, vm, event: 'started', due, job, detail: `DR copy to ${destination}${attempt > 0 ? ` (retry ${attempt} of ${this.retryMs.length})` : ''}` });
        const r = await started.done;
        copy = r.copy;
        if (!r.ok) failed = r.error ?? 'failed';
      } catch (err) {
        failed = (err as Error).message;
      }
      if (failed === undefined) {
        await h.add({ at: this.iso(), policy, vm, event: 'succeeded', due, ...(job ? { job } : {}), detail: `DR copy ${copy ?? ''} to ${destination}` });
        this.active.delete(destination);
        return;
      }
      if (this.stopped || attempt >= this.retryMs.length) {
        await h.add({ at: this.iso(), policy, vm, event: 'failed', due, ...(job ? { job } : {}), detail: `DR copy to ${destination} failed: ${failed}; ${this.stopped ? 'the appliance is stopping' : `gave up after ${attempt} retries; the next scheduled time tries again`}` });
        this.active.delete(destination);
        return;
      }
      const wait = this.retryMs[attempt];
      const at = new Date(this.clock.now() + wait).toISOString();
      await h.add({ at: this.iso(), policy, vm, event: 'failed', due, ...(job ? { job } : {}), detail: `DR copy to ${destination} failed: ${failed}; retry ${attempt + 1} of ${this.retryMs.length} at ${at}` });
      this.log(`policy ${policy}: DR copy to ${destination} failed (${failed}); retry at ${at}`);
      entry.retryTimer = this.clock.setTimer(() => {
        if (this.stopped) return;
        this.active.delete(destination);
        void this.begin(policy, destination, due, attempt + 1);
      }, wait);
    })().catch((err) => {
      this.log(`dr scheduler: ${(err as Error).message}`);
      this.active.delete(destination);
    });
  }

  private iso(): string {
    return new Date(this.clock.now()).toISOString();
  }
}
