// Policies as the control plane sees them: create, list, show, assign, unassign, remove, prune;
// and the backup hook (BackupService.onPointCreated) that gives every new point of an assigned
// VM the policy's lock and then applies its retention.
//
// Retention removes a point by deleting its snapshot through the namespace (which refuses a
// locked one whoever asks) and then dropping its backup record; its segments come back at the
// next GC, which can only collect segments no snapshot references. A prune never runs beside a
// backup of the same VM (they would both rewrite the VM's record file): the hook runs inside
// the backup, and a prune by hand is refused while that VM's backup job is active.

import { type BackupRecord, BackupRecords } from '../backup/backup-records.js';
import type { PointEvent } from '../backup/backup-service.js';
import { isVmvaultError, vmError } from '../errors.js';
import type { Namespace } from '../namespace/namespace.js';
import { formatDurationMs } from './durations.js';
import type { LockClock } from './lock-clock.js';
import type { NewPolicy, Policy, PolicyRegistry } from './policies.js';
import { formatKeep, pointTime, type RetentionMark, selectRetention } from './retention.js';
import type { PolicyRun, RunHistory } from './run-history.js';
import type { Scheduler } from './scheduler.js';

export interface PolicyView {
  name: string;
  backup: string;
  keep: string;
  lock: string;
  lockMs: number;
  workflow?: string;
  vms: string[];
  createdAt: string;
  nextRuns: string[];
  /** Clone copies: 'daily 02:00 -> site-b', ... (issue 14 part B). */
  clones?: string[];
}

export interface PointView {
  point: string;
  created: string;
  lockedUntil?: string;
  locked: boolean;
  /** Verified copies of the point elsewhere (copies.ts). */
  copies?: Array<{ destination: string; kind: 'appliance' | 'dir'; verifiedAt?: string }>;
}

export interface PolicyDetail extends PolicyView {
  points: Array<{ vm: string; share: string; points: PointView[]; problem?: string }>;
  runs: PolicyRun[];
  queued: Array<{ vm: string; due: string }>;
  running: Array<{ vm: string; job?: string }>;
}

export interface PruneResult {
  policy: string;
  dryRun: boolean;
  vms: Array<{ vm: string; marks: RetentionMark[]; removed: string[]; failed: Array<{ point: string; error: string }> }>;
}

export interface PolicyServiceOptions {
  dataDir: string;
  ns: Namespace;
  registry: PolicyRegistry;
  history: RunHistory;
  lockClock: LockClock;
  /** The VMs the appliance knows (for assign, and a VM's share). */
  vms: { get(name: string): { name: string; share: string } };
  /** Restore points of a VM whose snapshot exists (BackupService.listBackups). */
  listBackups(vm: string): Promise<Array<{ point: string }>>;
  /** True while a backup job of the VM is queued or running. */
  backupRunning?(vm: string): boolean;
  scheduler?: Scheduler;
  /** Throws NOT_FOUND for a destination a --clone names that does not exist (issue 14 part B). */
  checkDestination?(name: string): void;
  /** The copies of a point (copies.ts), for `policy show`. */
  copiesOf?(vm: string, point: string): Array<{ destination: string; kind: 'appliance' | 'dir'; verifiedAt?: string }>;
  /** Called after a policy was created (the clone scheduler looks again). */
  onChange?(): void;
  /** Judges locks in retention (the namespace judges them for deletes). Default Date.now. */
  now?: () => number;
  log?: (l: string) => void;
}

export class PolicyService {
  private readonly records: BackupRecords;
  private readonly now: () => number;
  private readonly log: (l: string) => void;
  /** Prunes of one VM, one at a time. */
  private readonly pruning = new Map<string, Promise<unknown>>();

  constructor(private readonly o: PolicyServiceOptions) {
    this.records = new BackupRecords(o.dataDir);
    this.now = o.now ?? Date.now;
    this.log = o.log ?? (() => {});
  }

  get scheduler(): Scheduler | undefined {
    return this.o.scheduler;
  }
  set scheduler(s: Scheduler | undefined) {
    this.o.scheduler = s;
  }

  list(): PolicyView[] {
    return this.o.registry.list().map((p) => this.view(p));
  }

  async create(req: NewPolicy): Promise<PolicyView> {
    if (this.o.checkDestination) for (const c of this.o.registry.validate(req).clones ?? []) this.o.checkDestination(c.destination);
    const p = await this.o.registry.create(req, new Date(this.now()));
    this.o.scheduler?.reschedule();
    this.o.onChange?.();
    return this.view(p);
  }

  async show(name: string): Promise<PolicyDetail> {
    const p = this.o.registry.get(name);
    const points: PolicyDetail['points'] = [];
    for (const vm of p.vms) {
      let share = vm;
      try {
        share = this.o.vms.get(vm).share;
        const pts = await this.pointsOf(share);
        if (this.o.copiesOf) for (const pt of pts) pt.copies = this.o.copiesOf(vm, pt.point);
        points.push({ vm, share, points: pts });
      } catch (err) {
        points.push({ vm, share, points: [], problem: (err as Error).message });
      }
    }
    const act = this.o.scheduler?.activity() ?? { queued: [], running: [] };
    return {
      ...this.view(p),
      points,
      runs: this.o.history.list(name).slice(-50),
      queued: act.queued.filter((q) => q.policy === name).map(({ vm, due }) => ({ vm, due })),
      running: act.running.filter((r) => r.policy === name).map(({ vm, job }) => (job ? { vm, job } : { vm })),
    };
  }

  async assign(name: string, opts: { vm?: string; group?: string }): Promise<PolicyView> {
    if (opts.group !== undefined) throw vmError('INVALID_ARGUMENT', `policy assign --group: VM groups do not exist yet (issue 13); assign each VM with --vm`);
    if (typeof opts.vm !== 'string') throw vmError('INVALID_ARGUMENT', 'policy assign needs --vm VM');
    this.o.registry.get(name);
    this.o.vms.get(opts.vm); // NOT_FOUND for an unknown VM
    const p = await this.o.registry.assign(name, opts.vm);
    this.o.scheduler?.reschedule();
    return this.view(p);
  }

  async unassign(name: string, opts: { vm?: string; group?: string }): Promise<PolicyView> {
    if (opts.group !== undefined) throw vmError('INVALID_ARGUMENT', `policy unassign --group: VM groups do not exist yet (issue 13)`);
    if (typeof opts.vm !== 'string') throw vmError('INVALID_ARGUMENT', 'policy unassign needs --vm VM');
    const p = await this.o.registry.unassign(name, opts.vm);
    return this.view(p);
  }

  /** A VM left the registry: it leaves its policy too (its points keep their locks). */
  async vmRemoved(vm: string): Promise<void> {
    const p = this.o.registry.policyOf(vm);
    if (!p) return;
    await this.o.registry.unassign(p.name, vm);
    this.o.scheduler?.reschedule();
    this.o.log?.(`VM ${vm} was removed: unassigned from policy ${p.name} (its points keep their locks)`);
  }

  /** Refused while any point of its VMs is locked (the refusal names them and when the last lock ends). */
  async remove(name: string): Promise<void> {
    await this.o.registry.remove(name, async (p) => {
      const locked: Array<{ what: string; until: string }> = [];
      for (const vm of p.vms) {
        let share: string;
        try {
          share = this.o.vms.get(vm).share;
        } catch {
          continue;
        }
        for (const pt of await this.pointsOf(share).catch(() => [] as PointView[])) if (pt.locked) locked.push({ what: `${vm}/${pt.point}`, until: pt.lockedUntil! });
      }
      if (locked.length > 0) {
        locked.sort((a, b) => a.until.localeCompare(b.until));
        const shown = locked.slice(0, 10).map((l) => `${l.what} (until ${l.until})`).join(', ') + (locked.length > 10 ? ` and ${locked.length - 10} more` : '');
        throw vmError('LOCKED', `policy ${name} has ${locked.length} locked point(s): ${shown}; it can be removed after ${locked.at(-1)!.until}, or unassign its VMs first (their points keep their locks)`, {
          policy: name,
          lockedUntil: locked.at(-1)!.until,
        });
      }
    });
    await this.o.history.forget(name);
  }

  /** Applies (or, with dryRun, shows) the policy's retention to its VMs (or one). */
  async prune(name: string, opts: { vm?: string; dryRun?: boolean } = {}): Promise<PruneResult> {
    const p = this.o.registry.get(name);
    let vms = p.vms;
    if (opts.vm !== undefined) {
      if (!p.vms.includes(opts.vm)) throw vmError('NOT_FOUND', `VM ${opts.vm} is not assigned to policy ${name}`, { policy: name, vm: opts.vm });
      vms = [opts.vm];
    }
    const out: PruneResult = { policy: name, dryRun: opts.dryRun === true, vms: [] };
    for (const vm of vms) {
      if (!opts.dryRun && this.o.backupRunning?.(vm)) throw vmError('CONFLICT', `a backup of ${vm} is running; its retention runs when it ends (or prune again then)`, { vm });
      out.vms.push(await this.pruneVm(p, vm, opts.dryRun === true));
    }
    return out;
  }

  /** The backup hook: lock the new point, then apply retention. Errors go to the backup's job log. */
  async onPointCreated(ev: PointEvent): Promise<void> {
    const p = this.o.registry.policyOf(ev.vm);
    if (!p) return;
    const at = new Date(this.now()).toISOString();
    if (p.lockMs > 0) {
      const until = await this.o.lockClock.lockUntil(p.lockMs);
      const info = await this.o.ns.snapshots.lock(ev.share, ev.point, until);
      await this.o.history.add({ at, policy: p.name, vm: ev.vm, event: 'locked', point: ev.point, detail: `locked until ${info.lockedUntil} (${formatDurationMs(p.lockMs)})` });
    }
    const r = await this.pruneVm(p, ev.vm, false);
    if (r.failed.length > 0) throw vmError('IO', `retention of ${ev.vm}: ${r.failed.map((f) => `${f.point}: ${f.error}`).join('; ')}`);
  }

  private pruneVm(p: Policy, vm: string, dryRun: boolean): Promise<PruneResult['vms'][number]> {
    const prev = this.pruning.get(vm) ?? Promise.resolve();
    const run = prev.catch(() => {}).then(() => this.pruneVmNow(p, vm, dryRun));
    this.pruning.set(vm, run);
    return run;
  }

  private async pruneVmNow(p: Policy, vm: string, dryRun: boolean): Promise<PruneResult['vms'][number]> {
    const share = this.o.vms.get(vm).share;
    const live = new Set((await this.o.listBackups(vm)).map((b) => b.point));
    const snaps = await this.pointsOf(share);
    const times = snaps
      .filter((s) => live.has(s.point))
      .map((s) => ({ point: s.point, time: pointTime(s.point) ?? Date.parse(s.created), ...(s.lockedUntil ? { lockedUntil: Date.parse(s.lockedUntil) } : {}) }));
    const marks = selectRetention(times, p.keep, this.now());
    const removed: string[] = [];
    const failed: Array<{ point: string; error: string }> = [];
    if (!dryRun) {
      for (const m of marks.filter((x) => !x.keep)) {
        try {
          await this.o.ns.snapshots.remove(share, m.point);
          removed.push(m.point);
        } catch (err) {
          if (isVmvaultError(err, 'NOT_FOUND')) continue;
          failed.push({ point: m.point, error: (err as Error).message });
        }
      }
      if (removed.length > 0) {
        const state = await this.records.read(vm);
        const gone = new Set(removed);
        await this.records.write({ ...state, records: state.records.filter((r: BackupRecord) => !gone.has(r.point)) });
        await this.o.history.add({ at: new Date(this.now()).toISOString(), policy: p.name, vm, event: 'pruned', detail: `removed ${removed.join(', ')} (${formatKeep(p.keep)}); space returns at the next gc` });
        this.log(`policy ${p.name}: retention removed ${removed.length} point(s) of ${vm}: ${removed.join(', ')}`);
      }
    }
    return { vm, marks, removed, failed };
  }

  private async pointsOf(share: string): Promise<PointView[]> {
    let list;
    try {
      list = await this.o.ns.snapshots.list(share);
    } catch (err) {
      if (isVmvaultError(err, 'NOT_FOUND')) return [];
      throw err;
    }
    const now = this.now();
    return list.map((s) => ({
      point: s.name,
      created: s.created,
      ...(s.lockedUntil ? { lockedUntil: s.lockedUntil } : {}),
      locked: s.lockedUntil !== undefined && Date.parse(s.lockedUntil) > now,
    }));
  }

  private view(p: Policy): PolicyView {
    return {
      name: p.name,
      backup: p.backup,
      keep: formatKeep(p.keep),
      lock: formatDurationMs(p.lockMs),
      lockMs: p.lockMs,
      ...(p.workflow ? { workflow: p.workflow } : {}),
      vms: [...p.vms],
      createdAt: p.createdAt,
      nextRuns: this.o.scheduler ? this.o.scheduler.nextRuns(p) : [],
      ...(p.clones && p.clones.length > 0 ? { clones: p.clones.map((c) => c.spec) } : {}),
    };
  }
}
