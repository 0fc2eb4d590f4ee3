// Protection policies in the composition root (issue 14, part A): the registry, run history and
// lock clock in the data directory, the policy service the /policies routes call, the backup hook
// (every new point of an assigned VM gets its policy's lock, then its retention), and the
// scheduler, whose runs are ordinary backup jobs of the job runner (`vmvault jobs` shows them).

import type { ApplianceServices } from './appliance-services.js';
import type { BackupService } from './backup/backup-service.js';
import type { VmRegistry } from './backup/vm-registry.js';
import type { JobRunner } from './control/jobs.js';
import { vmResource } from './control/routes/vms.js';
import type { BackupRequest } from './control/services.js';
import type { Namespace } from './namespace/namespace.js';
import type { SchedulerClock } from './policy/clock.js';
import { LockClock } from './policy/lock-clock.js';
import { PolicyRegistry } from './policy/policies.js';
import { PolicyService } from './policy/policy-service.js';
import { RunHistory } from './policy/run-history.js';
import { Scheduler } from './policy/scheduler.js';
import { CloneScheduler } from './policy/clone-scheduler.js';
import { CloneService } from './policy/clone-service.js';
import type { DrControl } from './control/routes/dr.js';
import { DrScheduler } from './policy/dr-scheduler.js';
import { vmError } from './errors.js';
import type { GroupBackupResult, GroupControl } from './control/group-types.js';
import { groupResource } from './control/routes/groups.js';

export interface PolicyParts {
  service: PolicyService;
  scheduler: Scheduler;
  /** Destinations and clone copies (issue 14 part B). */
  clones: CloneService;
  /** The policies' scheduled clone copies (`clone` jobs, retried on a backoff). */
  cloneScheduler: CloneScheduler;
  /** The policies' scheduled DR copies (`dr-copy` jobs), when the appliance makes DR copies. */
  drScheduler?: DrScheduler;
  /** A DR destination (a directory destination's name, or an absolute path) as a directory path. */
  resolveDr(destination: string): string;
}

export async function openPolicies(o: {
  data: string;
  ns: Namespace;
  vms: VmRegistry;
  backups: BackupService;
  jobs: JobRunner;
  svc: ApplianceServices;
  maxLockMs?: number;
  maxParallel?: number;
  clock?: SchedulerClock;
  /** The DR copy (appliance-dr.ts); absent: --dr policies are kept but no copy runs. */
  dr?: DrControl;
  /**
   * VM groups (issue 13): a group's members now (NOT_FOUND for an unknown group), and the group
   * backup `backup --group` runs, which a policy's scheduled group run starts too.
   */
  groups?: { members(name: string): string[]; control: GroupControl };
  log: (l: string) => void;
}): Promise<PolicyParts> {
  const groups = o.groups;
  const registry = await PolicyRegistry.open(o.data, { maxLockMs: o.maxLockMs });
  const history = await RunHistory.open(o.data);
  const lockClock = await LockClock.open(o.data, { log: o.log, ...(o.clock ? { now: o.clock.now } : {}) });
  const clones = await CloneService.open({
    dataDir: o.data,
    ns: o.ns,
    vms: o.vms,
    listBackups: (vm) => o.backups.listBackups(vm),
    policiesUsing: (d) => registry.list().filter((p) => (p.clones ?? []).some((c) => c.destination === d)).map((p) => p.name),
    log: o.log,
  });
  let cloneScheduler: CloneScheduler | undefined;
  let drScheduler: DrScheduler | undefined;
  const resolveDr = (d: string): string => {
    if (d.startsWith('/')) return d;
    const dest = clones.destinations.get(d);
    if (dest.kind !== 'dir') throw vmError('INVALID_ARGUMENT', `destination ${d} is another appliance; a DR copy goes to a directory destination (vmvault destination add NAME --dir PATH) or an absolute path`);
    return dest.path;
  };
  const service = new PolicyService({
    dataDir: o.data,
    ns: o.ns,
    registry,
    history,
    lockClock,
    vms: o.vms,
    listBackups: (vm) => o.backups.listBackups(vm),
    ...(groups ? { groupMembers: (g: string) => groups.members(g) } : {}),
    backupRunning: (vm) => o.jobs.activeOn(vmResource(vm), ['backup']) !== undefined,
    checkDestination: (d) => void clones.destinations.get(d),
    copiesOf: (vm, point) => clones.copiesOf(vm, point),
    checkDrDestination: (d) => void resolveDr(d),
    onChange: () => {
      cloneScheduler?.reschedule();
      drScheduler?.reschedule();
    },
    ...(o.clock ? { now: o.clock.now } : {}),
    log: o.log,
  });
  o.backups.onPointCreated((ev) => service.onPointCreated(ev));
  const scheduler = new Scheduler({
    registry,
    history,
    ...(o.clock ? { clock: o.clock } : {}),
    maxParallel: o.maxParallel,
    log: o.log,
    onTick: () => lockClock.observe(),
    start: async (vm, { policy, workflow }) => {
      const req: BackupRequest = workflow === undefined ? {} : { workflow };
      await o.svc.checkBackup(vm, req);
      const label = `vm ${vm} (policy ${policy}${workflow === undefined ? '' : `, ${workflow}`})`;
      const job = o.jobs.start('backup', label, (ctx) => o.svc.backupVm(ctx, vm, req), { resource: vmResource(vm) });
      const done = o.jobs.wait(job.id).then((v) => {
        const point = (v.result as { point?: unknown } | null)?.point;
        return {
          ok: v.state === 'succeeded',
          ...(typeof point === 'string' ? { point } : {}),
          ...(v.error ? { error: `${v.error.code}: ${v.error.message}` } : v.state === 'cancelled' ? { error: 'cancelled' } : {}),
        };
      });
      return { job: job.id, done };
    },
    // One group-backup job, as `vmvault backup --group` starts it (same checks, resource, label).
    ...(groups
      ? {
          startGroup: async (group: string, { policy, workflow }: { policy: string; workflow?: string }) => {
            const req = workflow === undefined ? {} : { workflow };
            await groups.control.checkBackup(group, req);
            const label = `group ${group} (policy ${policy}${workflow === undefined ? '' : `, ${workflow}`})`;
            const job = o.jobs.start('group-backup', label, (ctx) => groups.control.backup(ctx, group, req), { resource: groupResource(group) });
            const done = o.jobs.wait(job.id).then((v) => {
              // A member that failed fails the run (the others made their points, locked and pruned).
              const r = v.result as GroupBackupResult | null;
              const failed = (r?.vms ?? []).filter((x) => !x.ok);
              return {
                ok: v.state === 'succeeded' && failed.length === 0,
                ...(typeof r?.point === 'string' ? { point: r.point } : {}),
                ...(v.error
                  ? { error: `${v.error.code}: ${v.error.message}` }
                  : v.state === 'cancelled'
                    ? { error: 'cancelled' }
                    : failed.length > 0
                      ? { error: `${failed.length} of ${r!.vms.length} VM(s) failed: ${failed.map((x) => `${x.vm}: ${x.error ? `${x.error.code}: ${x.error.message}` : 'failed'}`).join('; ')}` }
                      : {}),
              };
            });
            return { job: job.id, done };
          },
        }
      : {}),
  });
  service.scheduler = scheduler;
  cloneScheduler = new CloneScheduler({
    registry,
    history,
    vmsOf: (p) => service.protectedVms(p),
    ...(o.clock ? { clock: o.clock } : {}),
    log: o.log,
    start: async (vm, destination, policy) => {
      await clones.check(vm, destination);
      const job = o.jobs.start('clone', `vm ${vm} -> ${destination} (policy ${policy})`, (ctx) => clones.clone(vm, destination, undefined, { signal: ctx.signal, progress: (d, t) => ctx.progress(d, t, 'bytes', 'copying'), log: (l) => ctx.log(l) }), {
        resource: `clone:${vm}:${destination}`,
      });
      const done = o.jobs.wait(job.id).then((v) => {
        const point = (v.result as { point?: unknown } | null)?.point;
        return {
          ok: v.state === 'succeeded',
          ...(typeof point === 'string' ? { point } : {}),
          ...(v.error ? { error: `${v.error.code}: ${v.error.message}` } : v.state === 'cancelled' ? { error: 'cancelled' } : {}),
        };
      });
      return { job: job.id, done };
    },
  });
  const dr = o.dr;
  if (dr) {
    drScheduler = new DrScheduler({
      registry,
      history,
      ...(o.clock ? { clock: o.clock } : {}),
      log: o.log,
      start: async (destination, policy) => {
        const to = resolveDr(destination);
        const job = o.jobs.start('dr-copy', `to ${to} (policy ${policy})`, (ctx) => dr.copy(ctx, to));
        const done = o.jobs.wait(job.id).then((v) => {
          const copy = (v.result as { copy?: unknown } | null)?.copy;
          return {
            ok: v.state === 'succeeded',
            ...(typeof copy === 'string' ? { copy } : {}),
            ...(v.error ? { error: `${v.error.code}: ${v.error.message}` } : v.state === 'cancelled' ? { error: 'cancelled' } : {}),
          };
        });
        return { job: job.id, done };
      },
    });
  }
  const n = registry.list().length;
  if (n > 0) o.log(`policies: ${n} (${registry.file})`);
  return { service, scheduler, clones, cloneScheduler, ...(drScheduler ? { drScheduler } : {}), resolveDr };
}
