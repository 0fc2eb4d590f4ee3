// The policy scheduler: runs each assigned VM's backup when its policy's cron schedule says.
//
// - Schedules are croner expressions in the appliance's local time zone. Time and timers come from
//   an injectable SchedulerClock: tests move time by hand.
// - Missed-run rule: each tick looks at every policy from where the last tick left it
//   (RunHistory.lastTick, persisted) to now. However many schedule times passed in between (the
//   appliance was down, or asleep), the VM is backed up ONCE, and the run's history entry says
//   how many times were missed. So a restart after a day's downtime runs one backup per VM,
//   not 24.
// - No overlap: a VM whose previous run is still queued or running is not queued again; the
//   due run is recorded as skipped, naming the run in the way. A backup started by hand holds
//   the same job resource, so a scheduled run meeting it is skipped the same way (CONFLICT).
// - Bounded: at most `maxParallel` scheduled backups run at once (--max-parallel-backups,
//   default 2); the queue behind them holds at most `maxQueue` runs, more are recorded as
//   skipped. Later the agents' capacity sets the bound (issue 12).
// - A policy's group (issue 13) runs as ONE group backup per schedule time (the group-backup job
//   `backup --group` starts: one moment for all its VMs, busiest first), through the
//   GroupBackupStarter; its members are resolved by that job, at the run. Overlap, the missed-run
//   rule and the bounds apply to a group run as to a VM's: it is keyed `group NAME`, which is also
//   what its history entries carry as `vm` (with `group` set).
// - Scheduled runs are ordinary backup jobs (the BackupStarter makes them through the job
//   runner), visible in `vmvault jobs`.

import { isVmvaultError } from '../errors.js';
import { type SchedulerClock, systemClock } from './clock.js';
import { lastDue, MISSED_COUNT_CAP, parseCron, type Policy, type PolicyRegistry } from './policies.js';
import type { RunHistory } from './run-history.js';

export type BackupStarter = (
  vm: string,
  opts: { policy: string; workflow?: string },
) => Promise<{ job: string; done: Promise<{ ok: boolean; point?: string; error?: string }> }>;

/** Starts one group backup (a group-backup job) of a policy's group. */
export type GroupBackupStarter = (
  group: string,
  opts: { policy: string; workflow?: string },
) => Promise<{ job: string; done: Promise<{ ok: boolean; point?: string; error?: string }> }>;

/** What a group's runs are keyed and recorded under (never a VM name: those have no space). */
export function groupRunKey(group: string): string {
  return `group ${group}`;
}

export interface SchedulerOptions {
  registry: PolicyRegistry;
  history: RunHistory;
  start: BackupStarter;
  /** Starts a group's run; absent: policies' groups are not run (recorded as failed). */
  startGroup?: GroupBackupStarter;
  clock?: SchedulerClock;
  /** Scheduled backups running at once. Default 2. */
  maxParallel?: number;
  /** Runs waiting behind them. Default 64. */
  maxQueue?: number;
  /** The longest sleep between ticks (policy changes and clock jumps are seen within it). Default 60 s. */
  recheckMs?: number;
  log?: (l: string) => void;
  /** Called at every tick (the appliance raises the lock clock's high-water mark there). */
  onTick?: () => Promise<unknown>;
}

export const DEFAULT_MAX_PARALLEL = 2;
const DEFAULT_MAX_QUEUE = 64;
/** Missed times are counted up to this many (a per-second schedule and a week's downtime). */

interface QueuedRun {
  policy: string;
  /** The VM, or groupRunKey(group) for a group run. */
  vm: string;
  group?: string;
  due: number;
  workflow?: string;
  missed: number;
}

export class Scheduler {
  private readonly clock: SchedulerClock;
  private readonly maxParallel: number;
  private readonly maxQueue: number;
  private readonly recheckMs: number;
  private readonly log: (l: string) => void;
  private readonly queue: QueuedRun[] = [];
  private readonly running = new Map<string, { policy: string; job?: string; done: Promise<void> }>();
  private timer: unknown;
  private stopped = true;
  private ticking: Promise<void> = Promise.resolve();

  constructor(private readonly opts: SchedulerOptions) {
    this.clock = opts.clock ?? systemClock;
    this.maxParallel = opts.maxParallel ?? DEFAULT_MAX_PARALLEL;
    this.maxQueue = opts.maxQueue ?? DEFAULT_MAX_QUEUE;
    this.recheckMs = opts.recheckMs ?? 60_000;
    this.log = opts.log ?? (() => {});
  }

  /** Starts ticking; the first tick applies the missed-run rule to the time the appliance was down. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.tick();
  }

  /** Stops scheduling; runs already started go on (their jobs end with the job runner). */
  stop(): void {
    this.stopped = true;
    this.queue.length = 0;
    if (this.timer !== undefined) this.clock.clear(this.timer);
    this.timer = undefined;
  }

  /** Resolves once no tick is in progress, the queue is empty and nothing runs. */
  async settled(): Promise<void> {
    for (;;) {
      await this.ticking;
      const running = [...this.running.values()].map((r) => r.done);
      if (running.length === 0 && this.queue.length === 0) return;
      await Promise.all(running);
    }
  }

  /** Resolves once the tick in progress (if any) has queued and started what it found due. */
  async ticked(): Promise<void> {
    await this.ticking;
  }

  /** A policy or an assignment changed: look at the schedules again now. */
  reschedule(): void {
    if (this.stopped) return;
    void this.tick();
  }

  /** The next `n` times a policy runs (ISO), from now. */
  nextRuns(policy: Policy, n = 3): string[] {
    return parseCron(policy.backup)
      .nextRuns(n, new Date(this.clock.now()))
      .map((d) => d.toISOString());
  }

  /** VMs queued and running now (for `policy show`). */
  activity(): { queued: Array<{ policy: string; vm: string; due: string }>; running: Array<{ policy: string; vm: string; job?: string }> } {
    return {
      queued: this.queue.map((q) => ({ policy: q.policy, vm: q.vm, due: new Date(q.due).toISOString() })),
      running: [...this.running.entries()].map(([vm, r]) => ({ policy: r.policy, vm, ...(r.job ? { job: r.job } : {}) })),
    };
  }

  private tick(): Promise<void> {
    const run = this.ticking.then(() => this.tickNow()).catch((err) => this.log(`policy scheduler: ${(err as Error).message}`));
    this.ticking = run;
    return run;
  }

  private async tickNow(): Promise<void> {
    if (this.stopped) return;
    if (this.timer !== undefined) this.clock.clear(this.timer);
    this.timer = undefined;
    await this.opts.onTick?.();
    const now = this.clock.now();
    const ticks: Record<string, number> = {};
    for (const p of this.opts.registry.list()) {
      let cron;
      try {
        cron = parseCron(p.backup);
      } catch (err) {
        this.log(`policy ${p.name}: ${(err as Error).message}`);
        continue;
      }
      const from = this.opts.history.lastTick(p.name) ?? Date.parse(p.createdAt);
      const { due, count } = lastDue(cron, from, now);
      ticks[p.name] = now;
      if (due === undefined) continue;
      for (const vm of p.vms) {
        await this.enqueue({ policy: p.name, vm, due, missed: count - 1, ...(p.workflow ? { workflow: p.workflow } : {}) });
        this.pump(); // the queue bound counts waiting runs only
      }
      for (const group of p.groups ?? []) {
        await this.enqueue({ policy: p.name, vm: groupRunKey(group), group, due, missed: count - 1, ...(p.workflow ? { workflow: p.workflow } : {}) });
        this.pump();
      }
    }
    await this.opts.history.setTicks(ticks);
    this.pump();
    this.arm(now);
  }

  /**
   * Sleeps until the next schedule time after `now` (the tick's time). Measured against the clock
   * as it is now: a time that came while the tick ran (its file writes take a while) is due at
   * once, not missed until the next one.
   */
  private arm(now: number): void {
    if (this.stopped) return;
    const current = this.clock.now();
    let wait = this.recheckMs;
    for (const p of this.opts.registry.list()) {
      try {
        const next = parseCron(p.backup).nextRun(new Date(now));
        if (next) wait = Math.min(wait, Math.max(0, next.getTime() - current));
      } catch {
        // logged by the tick
      }
    }
    this.timer = this.clock.setTimer(() => void this.tick(), wait);
  }

  private async enqueue(run: QueuedRun): Promise<void> {
    const at = new Date(this.clock.now()).toISOString();
    const due = new Date(run.due).toISOString();
    const g = run.group !== undefined ? { group: run.group } : {};
    const busy = this.running.get(run.vm);
    const queued = this.queue.find((q) => q.vm === run.vm);
    if (busy || queued) {
      const what = busy ? `its previous run${busy.job ? ` (job ${busy.job})` : ''} is still running` : `its previous run (due ${new Date(queued!.due).toISOString()}) is still queued`;
      await this.opts.history.add({ at, policy: run.policy, vm: run.vm, ...g, event: 'skipped', due, detail: `not started: ${what} (no two runs of one ${run.group !== undefined ? 'group' : 'VM'} overlap)` });
      return;
    }
    if (this.queue.length >= this.maxQueue) {
      await this.opts.history.add({ at, policy: run.policy, vm: run.vm, ...g, event: 'skipped', due, detail: `not started: ${this.queue.length} runs are already queued (the limit)` });
      return;
    }
    this.queue.push(run);
  }

  private pump(): void {
    while (!this.stopped && this.running.size < this.maxParallel && this.queue.length > 0) {
      const run = this.queue.shift()!;
      const entry: { policy: string; job?: string; done: Promise<void> } = { policy: run.policy, done: Promise.resolve() };
      this.running.set(run.vm, entry);
      entry.done = this.runOne(run, entry).finally(() => {
        this.running.delete(run.vm);
        this.pump();
      });
    }
  }

  private async runOne(run: QueuedRun, entry: { job?: string }): Promise<void> {
    const h = this.opts.history;
    const due = new Date(run.due).toISOString();
    const base = { policy: run.policy, vm: run.vm, ...(run.group !== undefined ? { group: run.group } : {}), due };
    const missed = run.missed > 0 ? `; ${run.missed >= MISSED_COUNT_CAP - 1 ? `${MISSED_COUNT_CAP}+` : run.missed} earlier scheduled time(s) passed while the appliance was down or busy: run once, not for each` : '';
    try {
      const opts = { policy: run.policy, ...(run.workflow ? { workflow: run.workflow } : {}) };
      let started;
      if (run.group === undefined) started = await this.opts.start(run.vm, opts);
      else if (this.opts.startGroup) started = await this.opts.startGroup(run.group, opts);
      else throw new Error(`group ${run.group}: this appliance cannot back up groups`);
      const { job, done } = started;
      entry.job = job;
      await h.add({ ...base, at: this.iso(), event: 'started', job, detail: `scheduled ${run.group === undefined ? 'backup' : 'group backup (one moment for all its VMs)'}${missed}` });
      const r = await done;
      await h.add({ ...base, at: this.iso(), event: r.ok ? 'succeeded' : 'failed', job, ...(r.point ? { point: r.point } : {}), ...(r.error ? { detail: r.error } : {}) });
    } catch (err) {
      const conflict = isVmvaultError(err, 'CONFLICT');
      await h
        .add({ ...base, at: this.iso(), event: conflict ? 'skipped' : 'failed', detail: `${conflict ? 'not started: ' : ''}${(err as Error).message}` })
        .catch((e) => this.log(`policy run history: ${(e as Error).message}`));
    }
  }

  private iso(): string {
    return new Date(this.clock.now()).toISOString();
  }
}
