// Scheduled DR copies (issue 14): each policy's `--dr 'daily 03:00 -> dr-1'` makes a copy of the
// whole appliance (dr-copy.ts) to the destination when the schedule says. A copy is an ordinary
// `dr-copy` job (the starter makes it). The missed-run rule, the retries on a backoff and the skip
// of a copy still running are copy-scheduler.ts's, shared with clone copies; here: one copy per
// destination at a time. Each event goes into the policy's run history with the VM field
// "(dr copy)", since a DR copy is of the appliance, not of a VM.

import type { SchedulerClock } from './clock.js';
import { type CopyResult, CopyScheduler, type CopySchedule } from './copy-scheduler.js';
import type { PolicyRegistry } from './policies.js';
import type { RunHistory } from './run-history.js';

export type DrStarter = (destination: string, policy: string) => Promise<{ job: string; done: Promise<CopyResult> }>;

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

export class DrScheduler extends CopyScheduler {
  constructor(o: DrSchedulerOptions) {
    super({ ...o, name: 'dr', schedules: () => drSchedules(o) });
  }
}

function drSchedules(o: DrSchedulerOptions): CopySchedule[] {
  return o.registry.list().flatMap((p) => {
    const dr = p.dr;
    if (!dr) return [];
    return [
      {
        tickKey: `${p.name}\u0000dr ${dr.cron} -> ${dr.destination}`,
        cron: dr.cron,
        createdAt: p.createdAt,
        describe: `policy ${p.name}: --dr ${dr.spec}`,
        runs: () => [
          {
            key: dr.destination,
            policy: p.name,
            vm: DR_RUN_VM,
            what: `DR copy to ${dr.destination}`,
            busy: `DR copy to ${dr.destination} not started: the previous one is running or waiting to retry`,
            start: () => o.start(dr.destination, p.name),
            succeeded: (r) => `DR copy ${r.copy ?? ''} to ${dr.destination}`,
          },
        ],
      },
    ];
  });
}
