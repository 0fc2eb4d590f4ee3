// Policies as the control plane sees them: create, list, show, assign, unassign, remove, prune;
// and the backup hook (BackupService.onPointCreated) that gives every new point of an assigned
// VM the policy's lock and then applies its retention.
//
// A policy protects the VMs assigned with --vm and the members of its groups (issue 13), resolved
// at each use: a VM registered later that a group's pattern matches is protected from then on.
// A VM is in at most one policy: assigning a VM or a group that would put a VM in two is refused
// (CONFLICT naming both). A VM registered later can still come to match a group of another policy
// than its --vm one; its explicit --vm assignment then decides its lock and retention.
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
  /** Assigned groups and the VMs each holds now (absent: none). */
  groups?: Array<{ name: string; members: string[]; problem?: string }>;
  createdAt: string;
  nextRuns: string[];
  /** Clone copies: 'daily 02:00 -> site-b', ... (issue 14 part B). */
  clones?: string[];
  /** The DR copy: 'daily 03:00 -> dr-1'. */
  dr?: string;
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
  /** A VM group's registered members now; NOT_FOUND for an unknown group. Absent: no groups. */
  groupMembers?(group: string): string[];
  /** True while a backup job of the VM is queued or running. */
  backupRunning?(vm: string): boolean;
  scheduler?: Scheduler;
  /** Throws NOT_FOUND for a destination a --clone names that does not exist (issue 14 part B). */
  checkDestination?(name: string): void;
  /** Throws for a --dr destination name that is not a directory destination (the DR copy). */
  checkDrDestination?(name: string): void;
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
    const valid = this.o.registry.validate(req);
    if (this.o.checkDestination) for (const c of valid.clones ?? []) this.o.checkDestination(c.destination);
    if (valid.dr && !valid.dr.destination.startsWith('/')) this.o.checkDrDestination?.(valid.dr.destination);
    const p = await this.o.registry.create(req, new Date(this.now()));
    this.o.scheduler?.reschedule();
    this.o.onChange?.();
    return this.view(p);
  }

  async show(name: string): Promise<PolicyDetail> {
    const p = this.o.registry.get(name);
    const points: PolicyDetail['points'] = [];
    for (const vm of this.protectedVms(p)) {
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
    const target = checkTarget('assign', opts);
    this.o.registry.get(name);
    if ('group' in target) {
      const group = target.group;
      const members = this.membersOf(group); // NOT_FOUND for an unknown group
      const p = await this.o.registry.assignGroup(name, group, (policies) => {
        for (const vm of members) {
          const where = this.whereIs(vm, policies, { group });
          if (where) throw vmError('CONFLICT', `group ${group} holds VM ${vm}, which is ${where.how} policy ${where.policy}; a VM is in at most one policy (${where.fix})`, { policy: where.policy, group, vm });
        }
      });
      this.o.scheduler?.reschedule();
      return this.view(p);
    }
    const vm = target.vm;
    this.o.vms.get(vm); // NOT_FOUND for an unknown VM
    const p = await this.o.registry.assign(name, vm, (policies) => {
      const where = this.whereIs(vm, policies, { vm });
      if (where) throw vmError('CONFLICT', `VM ${vm} is ${where.how} policy ${where.policy}; a VM is in at most one policy (${where.fix})`, { policy: where.policy, vm });
    });
    this.o.scheduler?.reschedule();
    return this.view(p);
  }

  async unassign(name: string, opts: { vm?: string; group?: string }): Promise<PolicyView> {
    const target = checkTarget('unassign', opts);
    const p = 'group' in target ? await this.o.registry.unassignGroup(name, target.group) : await this.o.registry.unassign(name, target.vm);
    this.o.scheduler?.reschedule();
    return this.view(p);
  }

  /** The policy protecting a VM: its --vm assignment, else the policy of a group holding it now. */
  policyFor(vm: string): Policy | undefined {
    const direct = this.o.registry.policyOf(vm);
    if (direct) return direct;
    return this.o.registry.list().find((p) => (p.groups ?? []).some((g) => this.safeMembers(g).includes(vm)));
  }

  /** The policy naming a group, if any (a group a policy names cannot be removed). */
  policyOfGroup(group: string): string | undefined {
    return this.o.registry.policyOfGroup(group)?.name;
  }

  /**
   * Where `vm` is protected already, other than by what is being assigned (`adding`): by --vm, or
   * as a member of an assigned group. Undefined: nowhere else.
   */
  private whereIs(vm: string, policies: Policy[], adding: { vm?: string; group?: string }): { policy: string; how: string; fix: string } | undefined {
    for (const q of policies) {
      if (q.vms.includes(vm) && adding.vm === undefined) return { policy: q.name, how: 'assigned with --vm to', fix: `vmvault policy unassign ${q.name} --vm ${vm} first` };
      for (const g of q.groups ?? []) {
        if (g === adding.group) continue;
        if (this.safeMembers(g).includes(vm)) return { policy: q.name, how: `a member of group ${g}, assigned to`, fix: `vmvault policy unassign ${q.name} --group ${g} first` };
      }
    }
    return undefined;
  }

  private membersOf(group: string): string[] {
    if (!this.o.groupMembers) throw vmError('NOT_SUPPORTED', 'this appliance has no VM groups');
    return this.o.groupMembers(group);
  }

  /** A group's members now, or none if it cannot be resolved (a group removed by hand from groups.json). */
  private safeMembers(group: string): string[] {
    try {
      return this.membersOf(group);
    } catch {
      return [];
    }
  }

  /** Every VM the policy protects now: its --vm VMs, then its groups' members. */
  protectedVms(p: Policy): string[] {
    const out = [...p.vms];
    for (const g of p.groups ?? []) for (const vm of this.safeMembers(g)) if (!out.includes(vm)) out.push(vm);
    return out;
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
      for (const vm of this.protectedVms(p)) {
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
    let vms = this.protectedVms(p);
    if (opts.vm !== undefined) {
      if (!vms.includes(opts.vm)) throw vmError('NOT_FOUND', `VM ${opts.vm} is not assigned to policy ${name}`, { policy: name, vm: opts.vm });
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
    const p = this.policyFor(ev.vm);
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

  private groupView(group: string): { name: string; members: string[]; problem?: string } {
    try {
      return { name: group, members: this.membersOf(group) };
    } catch (err) {
      return { name: group, members: [], problem: (err as Error).message };
    }
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
      ...(p.groups && p.groups.length > 0 ? { groups: p.groups.map((g) => this.groupView(g)) } : {}),
      createdAt: p.createdAt,
      nextRuns: this.o.scheduler ? this.o.scheduler.nextRuns(p) : [],
      ...(p.clones && p.clones.length > 0 ? { clones: p.clones.map((c) => c.spec) } : {}),
      ...(p.dr ? { dr: p.dr.spec } : {}),
    };
  }
}

/** Exactly one of --vm and --group. */
function checkTarget(verb: string, opts: { vm?: unknown; group?: unknown }): { vm: string } | { group: string } {
  const o = opts ?? {};
  if (o.vm !== undefined && o.group !== undefined) throw vmError('INVALID_ARGUMENT', `policy ${verb} takes --vm VM or --group GROUP, not both`);
  if (typeof o.group === 'string' && o.group !== '') return { group: o.group };
  if (typeof o.vm === 'string' && o.vm !== '') return { vm: o.vm };
  throw vmError('INVALID_ARGUMENT', `policy ${verb} needs --vm VM or --group GROUP`);
}
