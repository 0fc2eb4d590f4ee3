// The policy registry: <data>/policies.json.
//
// Format (version 1):
//   { "version": 1, "policies": [Policy, ...] }
//   Policy: { "name", "backup": CRON, "keep": {rule: count}, "lockMs": ms (0: none),
//             "workflow"?: NAME, "vms": [VM, ...], "createdAt": ISO,
//             "clones"?: [{"spec", "cron", "destination"}],   (issue 14 part B; absent: none)
//             "dr"?: {"spec", "cron", "destination"},          (the DR copy, dr-spec.ts; absent: none)
//             "groups"?: [GROUP, ...] }                        (VM groups, issue 13; absent: none)
// `groups` came later without a version bump: readers ignore fields they do not know, and a
// reader that does not know it would only stop scheduling those groups, never misread a field.
// Written atomically (json-file.ts); every change is one write under one serial queue, so two
// API calls never lose each other's change. A VM is in at most one policy: two policies would
// give one VM two schedules and two retention rules fighting over the same points. A group is in
// at most one policy too; its members are resolved at each use (policy-service.ts checks that
// no member would be in two policies at assignment).

import path from 'node:path';
import { Cron } from 'croner';
import { vmError } from '../errors.js';
import { formatDurationMs, parseDuration } from './durations.js';
import { Serial, readVersioned, writeAtomic } from './json-file.js';
import { checkKeep, type Keep, parseKeep } from './retention.js';
import { type CloneSpec, parseCloneSpecs } from './clone-spec.js';
import { type DrSpec, parseDrSpec } from './dr-spec.js';

export const POLICIES_VERSION = 1;
/** The longest lock allowed unless the appliance is configured otherwise (--max-lock). */
export const DEFAULT_MAX_LOCK_MS = 10 * 365 * 86_400_000;

export interface Policy {
  name: string;
  backup: string;
  keep: Keep;
  lockMs: number;
  workflow?: string;
  vms: string[];
  createdAt: string;
  /** Clone copies of its VMs' newest points: when and where (clone-spec.ts). */
  clones?: CloneSpec[];
  /** The appliance's DR copy: when and where (dr-spec.ts). */
  dr?: DrSpec;
  /** VM groups whose members the policy protects, one group backup per run (issue 13). */
  groups?: string[];
}

/** What `policy create` asks for (strings as the operator wrote them, or the parsed forms). */
export interface NewPolicy {
  name: string;
  backup: string;
  keep?: string | Keep;
  lock?: string;
  workflow?: string;
  /** `--clone 'daily 02:00 -> site-b'`, one or several. */
  clone?: string | string[];
  /** `--dr 'daily 03:00 -> dr-1'`. */
  dr?: string;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function checkPolicyName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw vmError('INVALID_ARGUMENT', `a policy name is 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit, not ${JSON.stringify(name)}`);
  }
  return name;
}

/** A croner schedule for `expr` (5 fields, or 6 with seconds), in the local time zone; INVALID_ARGUMENT otherwise. */
/** Most missed times counted after downtime (the run is one run however many passed). */
export const MISSED_COUNT_CAP = 1000;

/**
 * The missed-run rule every schedule here keeps (backups, clone and DR copies): of the times
 * `cron` named after `from` up to `now`, the latest (`due`, absent when none passed) and how many
 * passed (`count`, at most MISSED_COUNT_CAP): one run for all of them, not one each.
 */
export function lastDue(cron: Cron, from: number, now: number): { due?: number; count: number } {
  let due: number | undefined;
  let count = 0;
  for (let next = cron.nextRun(new Date(from)); next !== null && next.getTime() <= now; next = cron.nextRun(next)) {
    due = next.getTime();
    if (++count >= MISSED_COUNT_CAP) break;
  }
  return due === undefined ? { count } : { due, count };
}

export function parseCron(expr: unknown): Cron {
  if (typeof expr !== 'string' || expr.trim() === '') throw vmError('INVALID_ARGUMENT', `--backup must be a cron expression such as '0 */4 * * *', not ${JSON.stringify(expr)}`);
  try {
    return new Cron(expr, { paused: true, mode: '5-or-6-parts' });
  } catch (err) {
    throw vmError('INVALID_ARGUMENT', `--backup ${JSON.stringify(expr)} is not a cron expression (minute hour day-of-month month day-of-week, e.g. '0 */4 * * *'): ${(err as Error).message}`);
  }
}

/** Checks a new policy fully (cron, keep, lock against `maxLockMs`). */
export function validateNewPolicy(req: NewPolicy, maxLockMs: number): Omit<Policy, 'vms' | 'createdAt'> {
  if (typeof req !== 'object' || req === null) throw vmError('INVALID_ARGUMENT', 'a policy needs a name and a backup schedule');
  const name = checkPolicyName(req.name);
  parseCron(req.backup);
  const keep = req.keep === undefined ? {} : typeof req.keep === 'string' ? parseKeep(req.keep) : checkKeep(req.keep, 'keep');
  const lockMs = req.lock === undefined ? 0 : parseDuration(req.lock, '--lock');
  if (lockMs > maxLockMs) {
    throw vmError('INVALID_ARGUMENT', `--lock ${req.lock} is longer than this appliance allows (${formatDurationMs(maxLockMs)}, the appliance's --max-lock); a lock cannot be shortened once set, so a typo would keep points for good`, { maxLock: formatDurationMs(maxLockMs) });
  }
  if (req.workflow !== undefined && (typeof req.workflow !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(req.workflow))) {
    throw vmError('INVALID_ARGUMENT', `--workflow must be a workflow name, not ${JSON.stringify(req.workflow)}`);
  }
  const clones = req.clone === undefined ? [] : parseCloneSpecs(req.clone);
  const dr = req.dr === undefined ? undefined : parseDrSpec(req.dr);
  return { name, backup: req.backup.trim(), keep, lockMs, ...(req.workflow !== undefined ? { workflow: req.workflow } : {}), ...(clones.length > 0 ? { clones } : {}), ...(dr ? { dr } : {}) };
}

export class PolicyRegistry {
  private policies: Policy[] = [];
  private readonly serial = new Serial();
  private constructor(
    readonly file: string,
    readonly maxLockMs: number,
  ) {}

  static async open(dataDir: string, opts: { maxLockMs?: number } = {}): Promise<PolicyRegistry> {
    const r = new PolicyRegistry(path.join(dataDir, 'policies.json'), opts.maxLockMs ?? DEFAULT_MAX_LOCK_MS);
    const v = await readVersioned(r.file, POLICIES_VERSION, 'policies');
    if (v !== undefined) {
      if (!Array.isArray(v.policies)) throw vmError('CORRUPT_RECORD', `${r.file}: policies is not a list`);
      r.policies = (v.policies as unknown[]).map((p, i) => checkStored(p, `${r.file} policy ${i}`));
    }
    return r;
  }

  list(): Policy[] {
    return this.policies.map(copy);
  }

  get(name: string): Policy {
    checkPolicyName(name);
    const p = this.policies.find((x) => x.name === name);
    if (!p) throw vmError('NOT_FOUND', `no policy named ${name}${this.policies.length ? ` (policies: ${this.policies.map((x) => x.name).join(', ')})` : ' (none yet: vmvault policy create)'}`, { policy: name });
    return copy(p);
  }

  /** The policy a VM is assigned to, if any. */
  policyOf(vm: string): Policy | undefined {
    const p = this.policies.find((x) => x.vms.includes(vm));
    return p && copy(p);
  }

  /** The policy a group is assigned to, if any. */
  policyOfGroup(group: string): Policy | undefined {
    const p = this.policies.find((x) => (x.groups ?? []).includes(group));
    return p && copy(p);
  }

  /** Checks a new policy fully (cron, keep, lock against the maximum) without storing it. */
  validate(req: NewPolicy): Omit<Policy, 'vms' | 'createdAt'> {
    return validateNewPolicy(req, this.maxLockMs);
  }

  async create(req: NewPolicy, now: Date = new Date()): Promise<Policy> {
    const base = this.validate(req);
    return this.change(() => {
      if (this.policies.some((p) => p.name === base.name)) throw vmError('ALREADY_EXISTS', `policy ${base.name} already exists`, { policy: base.name });
      const p: Policy = { ...base, vms: [], createdAt: now.toISOString() };
      this.policies.push(p);
      return copy(p);
    });
  }

  /** Assigns a VM; `check` runs inside the same change (the caller's group-member check). */
  async assign(name: string, vm: string, check: (policies: Policy[]) => void = () => {}): Promise<Policy> {
    return this.change(() => {
      const p = this.mutable(name);
      const other = this.policies.find((x) => x.vms.includes(vm));
      if (other === p) return copy(p);
      if (other) throw vmError('CONFLICT', `VM ${vm} is assigned to policy ${other.name}; unassign it there first (vmvault policy unassign ${other.name} --vm ${vm})`, { policy: other.name, vm });
      check(this.policies.map(copy));
      p.vms.push(vm);
      return copy(p);
    });
  }

  /**
   * Assigns a group. `check` runs inside the same change (so two assignments cannot both pass
   * it): the caller's member checks, given the policies as they are then.
   */
  async assignGroup(name: string, group: string, check: (policies: Policy[]) => void = () => {}): Promise<Policy> {
    return this.change(() => {
      const p = this.mutable(name);
      const other = this.policies.find((x) => (x.groups ?? []).includes(group));
      if (other === p) return copy(p);
      if (other) throw vmError('CONFLICT', `group ${group} is assigned to policy ${other.name}; unassign it there first (vmvault policy unassign ${other.name} --group ${group})`, { policy: other.name, group });
      check(this.policies.map(copy));
      p.groups = [...(p.groups ?? []), group];
      return copy(p);
    });
  }

  async unassignGroup(name: string, group: string): Promise<Policy> {
    return this.change(() => {
      const p = this.mutable(name);
      const gs = p.groups ?? [];
      if (!gs.includes(group)) throw vmError('NOT_FOUND', `group ${group} is not assigned to policy ${name}${gs.length ? ` (groups: ${gs.join(', ')})` : ''}`, { policy: name, group });
      const left = gs.filter((x) => x !== group);
      if (left.length > 0) p.groups = left;
      else delete p.groups;
      return copy(p);
    });
  }

  async unassign(name: string, vm: string): Promise<Policy> {
    return this.change(() => {
      const p = this.mutable(name);
      if (!p.vms.includes(vm)) throw vmError('NOT_FOUND', `VM ${vm} is not assigned to policy ${name}${p.vms.length ? ` (assigned: ${p.vms.join(', ')})` : ''}`, { policy: name, vm });
      p.vms = p.vms.filter((x) => x !== vm);
      return copy(p);
    });
  }

  /** Removes a policy; `refuse` runs first inside the same change (the caller's lock check). */
  async remove(name: string, refuse: (p: Policy) => Promise<void>): Promise<void> {
    const p = this.get(name);
    await refuse(p);
    await this.change(() => {
      this.mutable(name);
      this.policies = this.policies.filter((x) => x.name !== name);
    });
  }

  private mutable(name: string): Policy {
    checkPolicyName(name);
    const p = this.policies.find((x) => x.name === name);
    if (!p) throw vmError('NOT_FOUND', `no policy named ${name}`, { policy: name });
    return p;
  }

  /** Applies `fn` to a copy of the list and writes it; the list in memory changes only once the file did. */
  private change<T>(fn: () => T): Promise<T> {
    return this.serial.run(async () => {
      const before = this.policies.map(copy);
      let out: T;
      try {
        out = fn();
        await writeAtomic(this.file, { version: POLICIES_VERSION, policies: this.policies });
      } catch (err) {
        this.policies = before;
        throw err;
      }
      return out;
    });
  }
}

function copy(p: Policy): Policy {
  return { ...p, keep: { ...p.keep }, vms: [...p.vms], ...(p.clones ? { clones: p.clones.map((c) => ({ ...c })) } : {}), ...(p.dr ? { dr: { ...p.dr } } : {}), ...(p.groups ? { groups: [...p.groups] } : {}) };
}

function checkStored(v: unknown, where: string): Policy {
  const p = v as Partial<Policy> | null;
  const bad = (why: string) => vmError('CORRUPT_RECORD', `${where}: ${why}`);
  if (typeof p !== 'object' || p === null) throw bad('not an object');
  if (typeof p.name !== 'string' || typeof p.backup !== 'string' || typeof p.lockMs !== 'number' || !Array.isArray(p.vms) || typeof p.createdAt !== 'string') throw bad('missing or malformed fields');
  return {
    name: p.name,
    backup: p.backup,
    keep: checkKeep(p.keep ?? {}, where),
    lockMs: p.lockMs,
    ...(typeof p.workflow === 'string' ? { workflow: p.workflow } : {}),
    vms: p.vms.filter((x): x is string => typeof x === 'string'),
    createdAt: p.createdAt,
    ...(Array.isArray(p.clones) && p.clones.length > 0 ? { clones: p.clones.map((c, i) => checkStoredClone(c, `${where} clone ${i}`)) } : {}),
    ...(p.dr !== undefined ? { dr: checkStoredClone(p.dr, `${where} dr`) } : {}),
    ...(Array.isArray(p.groups) && p.groups.some((g) => typeof g === 'string') ? { groups: p.groups.filter((g): g is string => typeof g === 'string') } : {}),
  };
}

function checkStoredClone(c: unknown, where: string): CloneSpec {
  const x = c as Partial<CloneSpec> | null;
  if (typeof x?.spec !== 'string' || typeof x.cron !== 'string' || typeof x.destination !== 'string') throw vmError('CORRUPT_RECORD', `${where}: malformed`);
  return { spec: x.spec, cron: x.cron, destination: x.destination };
}
