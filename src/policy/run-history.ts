// Policy run history and the scheduler's state: <data>/policy-runs.json.
//
// Format (version 1):
//   { "version": 1,
//     "runs": [PolicyRun, ...],          // oldest first, at most `limit` (default 1000)
//     "lastTick": { POLICY: ms, ... } }  // up to when each policy's schedule was looked at
// `lastTick` is what the missed-run rule reads after a restart (scheduler.ts). Saved atomically
// after every change, one write at a time (json-file.ts); a crash loses at most the change
// being written.

import path from 'node:path';
import { Serial, readVersioned, writeAtomic } from './json-file.js';

export const RUNS_VERSION = 1;
export const DEFAULT_RUNS_KEPT = 1000;

export type RunEvent =
  /** A scheduled backup's job started. */
  | 'started'
  | 'succeeded'
  | 'failed'
  /** A due run that did not start: the VM's previous run still going, the queue full, ... */
  | 'skipped'
  /** Retention removed points (detail lists them). */
  | 'pruned'
  /** A point got the policy's lock. */
  | 'locked';

export interface PolicyRun {
  at: string;
  policy: string;
  /** The VM, or `group NAME` for a group's run (scheduler.ts groupRunKey). */
  vm: string;
  /** The group, for a group's run (issue 13; absent in older files: a VM's run). */
  group?: string;
  event: RunEvent;
  /** The schedule time this run is for (ISO), for scheduled runs. */
  due?: string;
  job?: string;
  point?: string;
  detail?: string;
}

export class RunHistory {
  private runs: PolicyRun[] = [];
  private ticks: Record<string, number> = {};
  private readonly serial = new Serial();
  private constructor(
    readonly file: string,
    private readonly limit: number,
  ) {}

  static async open(dataDir: string, opts: { limit?: number } = {}): Promise<RunHistory> {
    const h = new RunHistory(path.join(dataDir, 'policy-runs.json'), opts.limit ?? DEFAULT_RUNS_KEPT);
    const v = await readVersioned(h.file, RUNS_VERSION, 'policy run history');
    if (v !== undefined) {
      if (Array.isArray(v.runs)) h.runs = (v.runs as PolicyRun[]).filter((r) => typeof r?.policy === 'string' && typeof r.at === 'string').slice(-h.limit);
      if (typeof v.lastTick === 'object' && v.lastTick !== null) {
        for (const [k, t] of Object.entries(v.lastTick as Record<string, unknown>)) if (typeof t === 'number') h.ticks[k] = t;
      }
    }
    return h;
  }

  /** Newest last; of one policy (and VM) when given. */
  list(policy?: string, vm?: string): PolicyRun[] {
    return this.runs.filter((r) => (policy === undefined || r.policy === policy) && (vm === undefined || r.vm === vm)).map((r) => ({ ...r }));
  }

  lastTick(policy: string): number | undefined {
    return this.ticks[policy];
  }

  async add(run: PolicyRun): Promise<void> {
    this.runs.push(run);
    if (this.runs.length > this.limit) this.runs.splice(0, this.runs.length - this.limit);
    await this.save();
  }

  async setTicks(ticks: Record<string, number>): Promise<void> {
    Object.assign(this.ticks, ticks);
    await this.save();
  }

  async forget(policy: string): Promise<void> {
    delete this.ticks[policy];
    await this.save();
  }

  private save(): Promise<void> {
    return this.serial.run(() => writeAtomic(this.file, { version: RUNS_VERSION, runs: this.runs, lastTick: this.ticks }));
  }
}
