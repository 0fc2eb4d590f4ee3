// Scheduled clone copies (issue 14 part B): each policy's `--clone 'daily 02:00 -> site-b'`
// copies the newest point of each of its VMs to the destination when the schedule says. The
// same missed-run rule as backups (scheduler.ts): however many times passed while the appliance
// was down, one copy per VM. A copy is an ordinary `clone` job (the starter makes it).
//
// A failed copy is retried on a backoff schedule (RETRY_MS: 1 min, 5 min, 15 min, 1 h, 4 h),
// each failure and its retry time recorded in the policy's run history; the policy's backups go
// on meanwhile (they are the other scheduler's). A copy due while one of the same VM to the
// same destination is running or waiting for its retry is skipped (recorded). The next
// scheduled time starts afresh.

import { type SchedulerClock, systemClock } from './clock.js';
import { lastDue, parseCron, type Policy, type PolicyRegistry } from './policies.js';
import type { RunHistory } from './run-history.js';

export type CloneStarter = (
  vm: string,
  destination: string,
  policy: string,
) => Promise<{ job: string; done: Promise<{ ok: boolean; point?: string; error?: string }> }>;

export const RETRY_MS = [60_000, 5 * 60_000, 15 * 60_000, 60 * 60_000, 4 * 60 * 60_000];

export interface CloneSchedulerOptions {
  registry: PolicyRegistry;
  history: RunHistory;
  start: CloneStarter;
  clock?: SchedulerClock;
  retryMs?: number[];
  recheckMs?: number;
  /** The VMs a policy protects now (its --vm VMs and its groups' members); default its --vm VMs. */
  vmsOf?: (p: Policy) => string[];
  log?: (l: string) => void;
}

/** The run-history tick key of one clone schedule of a policy. */
function tickKey(policy: string, cron: string, destination: string): string {
  return `${policy}\u0000clone ${cron} -> ${destination}`;
}

export class CloneScheduler {
  private readonly clock: SchedulerClock;
  private readonly retryMs: number[];
  private readonly log: (l: string) => void;
  /** `vm -> destination` copies running or waiting for a retry. */
  private readonly active = new Map<string, { done: Promise<void>; retryTimer?: unknown }>();
  private timer: unknown;
  private stopped = true;
  private ticking: Promise<void> = Promise.resolve();

  constructor(private readonly o: CloneSchedulerOptions) {
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

  private tick(): Promise<void> {
    const run = this.ticking.then(() => this.tickNow()).catch((err) => this.log(`clone scheduler: ${(err as Error).message}`));
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
      for (const c of p.clones ?? []) {
        const key = tickKey(p.name, c.cron, c.destination);
        const from = this.o.history.lastTick(key) ?? Date.parse(p.createdAt);
        let cron;
        try {
          cron = parseCron(c.cron);
        } catch (err) {
          // One bad schedule (a damaged policies.json) must not stop the others.
          this.log(`policy ${p.name}: --clone ${c.spec}: ${(err as Error).message}`);
          continue;
        }
        const { due } = lastDue(cron, from, now);
        ticks[key] = now;
        if (due === undefined) continue;
        for (const vm of this.o.vmsOf?.(p) ?? p.vms) await this.begin(p.name, vm, c.destination, new Date(due).toISOString(), 0);
      }
    }
    if (Object.keys(ticks).length > 0) await this.o.history.setTicks(ticks);
    this.arm(now);
  }

  private arm(now: number): void {
    if (this.stopped) return;
    let wait = this.o.recheckMs ?? 60_000;
    for (const p of this.o.registry.list()) {
      for (const c of p.clones ?? []) {
        try {
          const next = parseCron(c.cron).nextRun(new Date(now));
          if (next) wait = Math.min(wait, Math.max(0, next.getTime() - this.clock.now()));
        } catch {
          // logged by the tick
        }
      }
    }
    this.timer = this.clock.setTimer(() => void this.tick(), wait);
  }

  private async begin(policy: string, vm: string, destination: string, due: string, attempt: number): Promise<void> {
    const key = `${vm} -> ${destination}`;
    const h = this.o.history;
    if (attempt === 0 && this.active.has(key)) {
      await h.add({ at: this.iso(), policy, vm, event: 'skipped', due, detail: `clone to ${destination} not started: the previous copy of ${vm} to ${destination} is running or waiting to retry` });
      return;
    }
    const entry: { done: Promise<void>; retryTimer?: unknown } = { done: Promise.resolve() };
    this.active.set(key, entry);
    entry.done = (async () => {
      let failed: string | undefined;
      let job: string | undefined;
      let point: string | undefined;
      try {
        const started = await this.o.start(vm, destination, policy);
        job = started.job;
        await h.add({ at: this.iso(), policy, vm, event: 'started', due, job, detail: `clone to ${destination}${attempt > 0 ? ` (retry ${attempt} of ${this.retryMs.length})` : ''}` });
        const r = await started.done;
        point = r.point;
        if (!r.ok) failed = r.error ?? 'failed';
      } catch (err) {
        failed = (err as Error).message;
      }
      if (failed === undefined) {
        await h.add({ at: this.iso(), policy, vm, event: 'succeeded', due, ...(job ? { job } : {}), ...(point ? { point } : {}), detail: `clone to ${destination}` });
        this.active.delete(key);
        return;
      }
      if (this.stopped || attempt >= this.retryMs.length) {
        await h.add({ at: this.iso(), policy, vm, event: 'failed', due, ...(job ? { job } : {}), detail: `clone to ${destination} failed: ${failed}; ${this.stopped ? 'the appliance is stopping' : `gave up after ${attempt} retries; the next scheduled time tries again`}` });
        this.active.delete(key);
        return;
      }
      const wait = this.retryMs[attempt];
      const at = new Date(this.clock.now() + wait).toISOString();
      // Armed before it is recorded: whoever reads the record finds the retry already set.
      entry.retryTimer = this.clock.setTimer(() => {
        if (this.stopped) return;
        this.active.delete(key);
        void this.begin(policy, vm, destination, due, attempt + 1);
      }, wait);
      await h.add({ at: this.iso(), policy, vm, event: 'failed', due, ...(job ? { job } : {}), detail: `clone to ${destination} failed: ${failed}; retry ${attempt + 1} of ${this.retryMs.length} at ${at}` });
      this.log(`policy ${policy}: clone of ${vm} to ${destination} failed (${failed}); retry at ${at}`);
    })().catch((err) => {
      this.log(`clone scheduler: ${(err as Error).message}`);
      this.active.delete(key);
    });
  }

  /** Copies running or waiting for a retry (for `policy show`). */
  activity(): string[] {
    return [...this.active.keys()];
  }

  private iso(): string {
    return new Date(this.clock.now()).toISOString();
  }
}
