// Scheduled clone copies (issue 14 part B): each policy's `--clone 'daily 02:00 -> site-b'`
// copies the newest point of each of its VMs to the destination when the schedule says. A copy
// is an ordinary `clone` job (the starter makes it). The missed-run rule, the retries on a
// backoff and the skip of a copy still running are copy-scheduler.ts's, shared with DR copies;
// here: one copy per VM and destination at a time, and a policy's backups go on meanwhile (they
// are the other scheduler's).

import type { SchedulerClock } from './clock.js';
import { type CopyResult, CopyScheduler, type CopySchedule } from './copy-scheduler.js';
import type { Policy, PolicyRegistry } from './policies.js';
import type { RunHistory } from './run-history.js';

export { RETRY_MS } from './copy-scheduler.js';

export type CloneStarter = (vm: string, destination: string, policy: string) => Promise<{ job: string; done: Promise<CopyResult> }>;

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

export class CloneScheduler extends CopyScheduler {
  constructor(o: CloneSchedulerOptions) {
    super({ ...o, name: 'clone', schedules: () => cloneSchedules(o) });
  }
}

function cloneSchedules(o: CloneSchedulerOptions): CopySchedule[] {
  return o.registry.list().flatMap((p) =>
    (p.clones ?? []).map((c) => ({
      tickKey: `${p.name}\u0000clone ${c.cron} -> ${c.destination}`,
      cron: c.cron,
      createdAt: p.createdAt,
      describe: `policy ${p.name}: --clone ${c.spec}`,
      runs: () =>
        (o.vmsOf?.(p) ?? p.vms).map((vm) => ({
          key: `${vm} -> ${c.destination}`,
          policy: p.name,
          vm,
          what: `clone to ${c.destination}`,
          busy: `clone to ${c.destination} not started: the previous copy of ${vm} to ${c.destination} is running or waiting to retry`,
          start: () => o.start(vm, c.destination, p.name),
          succeeded: () => `clone to ${c.destination}`,
        })),
    })),
  );
}
