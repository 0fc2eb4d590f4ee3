// VM groups (issue 13): a named set of VMs backed up together at one moment (group-backup.ts).
// A group names its members one of three ways, and a pattern or a host is resolved at each run,
// so a VM registered (or moved to the host) later is in the next run:
//   vms      an explicit list of VM names
//   pattern  a glob over VM names (`*` any run of characters, `?` one character)
//   host     every VM whose registration names that host (the VM record's `host`, which the
//            hosts part adds; a VM without it is on no host)
//
// Format (version 1), `<data>/groups.json`, written whole on every change through
// writeFileAtomic (temporary file, fsync, rename, fsync of the directory):
//   { "format": "vmvault-groups", "version": 1,
//     "groups": [ { "name": "web", "vms": ["web01", "web02"],    (exactly one of vms,
//                   "pattern": "web*", "host": "node1",           pattern, host)
//                   "createdAt": "2026-12-05T12:00:00.000Z" } ] }    sorted by name
// A reader refuses a newer version (UNSUPPORTED_FORMAT) and a file it cannot parse
// (CORRUPT_RECORD, naming the file): it is the operator's configuration, never dropped. Adding a
// field is not a format change (readers ignore fields they do not know).

import fs from 'node:fs/promises';
import path from 'node:path';
import { vmError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic-file.js';
import { validateName } from '../namespace/names.js';
import { checkAgentName, checkVmName } from './vm-registry.js';

export const GROUPS_FORMAT = 'vmvault-groups';
export const GROUPS_VERSION = 1;
export const GROUPS_FILE = 'groups.json';
/** Most VMs one group may list (a run holds every member's QMP monitor and fleecing at once). */
export const MAX_GROUP_VMS = 1000;
const MAX_PATTERN = 256;

export interface VmGroup {
  name: string;
  vms?: string[];
  pattern?: string;
  host?: string;
  createdAt: string;
}

export type NewGroup = Omit<VmGroup, 'createdAt'>;

/** What resolving needs of a registered VM (the hosts part adds `host`). */
export interface GroupMemberLike {
  name: string;
  host?: string;
}

/** A group's members now: the VMs found, and the listed names not registered (skipped with a reason). */
export interface ResolvedGroup {
  group: VmGroup;
  vms: string[];
  missing: string[];
}

const FIELDS = new Set(['name', 'vms', 'pattern', 'host']);

export class GroupRegistry {
  private readonly groups = new Map<string, VmGroup>();
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(readonly file: string) {}

  static async open(dataDir: string): Promise<GroupRegistry> {
    const reg = new GroupRegistry(path.join(dataDir, GROUPS_FILE));
    for (const g of await readFile(reg.file)) reg.groups.set(g.name, g);
    return reg;
  }

  list(): VmGroup[] {
    return [...this.groups.values()].sort(byName).map(copy);
  }

  get(name: string): VmGroup {
    checkGroupName(name);
    const g = this.groups.get(name);
    if (g === undefined) throw vmError('NOT_FOUND', `no group ${JSON.stringify(name)} (vmvault group list shows them; vmvault group create makes one)`, { group: name });
    return copy(g);
  }

  async create(input: NewGroup): Promise<VmGroup> {
    const g = checkNewGroup(input);
    return this.serial(async () => {
      if (this.groups.has(g.name)) throw vmError('CONFLICT', `a group named ${JSON.stringify(g.name)} exists (vmvault group remove ${g.name} first to change it)`, { group: g.name });
      const next = new Map(this.groups).set(g.name, g);
      await writeFile(this.file, next);
      this.groups.set(g.name, g);
      return copy(g);
    });
  }

  remove(name: string): Promise<void> {
    return this.serial(async () => {
      this.get(name);
      const next = new Map(this.groups);
      next.delete(name);
      await writeFile(this.file, next);
      this.groups.delete(name);
    });
  }

  /**
   * Takes a removed VM out of every group that lists it by name (a pattern or a host simply stops
   * matching it). A group left with no VM stays: a backup of it says it is empty. Returns the
   * groups changed.
   */
  forgetVm(vm: string): Promise<string[]> {
    return this.serial(async () => {
      const next = new Map(this.groups);
      const changed: string[] = [];
      for (const g of next.values()) {
        if (g.vms?.includes(vm)) {
          next.set(g.name, { ...g, vms: g.vms.filter((v) => v !== vm) });
          changed.push(g.name);
        }
      }
      if (changed.length === 0) return changed;
      await writeFile(this.file, next);
      for (const n of changed) this.groups.set(n, next.get(n)!);
      return changed;
    });
  }

  /** The group's members among the registered VMs now, sorted by name. */
  resolve(name: string, registered: GroupMemberLike[]): ResolvedGroup {
    return resolveGroup(this.get(name), registered);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

export function resolveGroup(group: VmGroup, registered: GroupMemberLike[]): ResolvedGroup {
  const names = new Set(registered.map((v) => v.name));
  if (group.vms !== undefined) {
    return { group, vms: group.vms.filter((v) => names.has(v)).sort(), missing: group.vms.filter((v) => !names.has(v)) };
  }
  if (group.pattern !== undefined) {
    const re = globToRegExp(group.pattern);
    return { group, vms: registered.filter((v) => re.test(v.name)).map((v) => v.name).sort(), missing: [] };
  }
  return { group, vms: registered.filter((v) => v.host !== undefined && v.host === group.host).map((v) => v.name).sort(), missing: [] };
}

export function checkGroupName(name: unknown): asserts name is string {
  try {
    validateName('share', name);
  } catch (err) {
    const e = err as Error & { code: Parameters<typeof vmError>[0] };
    throw vmError(e.code, e.message.replace(/^share name/, 'group name'));
  }
}

/** Every field checked before anything is written; exactly one way of naming the members. */
export function checkNewGroup(input: NewGroup): VmGroup {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw vmError('INVALID_ARGUMENT', 'a group is an object with name and one of vms, pattern, host');
  for (const k of Object.keys(input)) {
    if (!FIELDS.has(k)) throw vmError('INVALID_ARGUMENT', `unknown group field ${JSON.stringify(k)} (known: ${[...FIELDS].join(', ')})`);
  }
  checkGroupName(input.name);
  const ways = (['vms', 'pattern', 'host'] as const).filter((k) => input[k] !== undefined);
  if (ways.length !== 1) {
    throw vmError('INVALID_ARGUMENT', `group ${input.name}: give exactly one of --vms a,b,c, --pattern 'web*' or --host H${ways.length > 1 ? ` (got ${ways.join(' and ')})` : ''}`);
  }
  const g: VmGroup = { name: input.name, createdAt: new Date().toISOString() };
  if (input.vms !== undefined) {
    if (!Array.isArray(input.vms) || input.vms.length === 0) throw vmError('INVALID_ARGUMENT', `group ${input.name}: vms must list at least one VM name`);
    if (input.vms.length > MAX_GROUP_VMS) throw vmError('INVALID_ARGUMENT', `group ${input.name}: at most ${MAX_GROUP_VMS} VMs`);
    const seen = new Set<string>();
    for (const v of input.vms) {
      checkVmName(v);
      if (seen.has(v)) throw vmError('INVALID_ARGUMENT', `group ${input.name}: VM ${v} is listed twice`);
      seen.add(v);
    }
    g.vms = [...input.vms];
  } else if (input.pattern !== undefined) {
    const p = input.pattern;
    if (typeof p !== 'string' || p.length === 0 || p.length > MAX_PATTERN || !/^[A-Za-z0-9._*?-]+$/.test(p)) {
      throw vmError('INVALID_ARGUMENT', `group ${input.name}: pattern ${JSON.stringify(String(p).slice(0, 80))} is not valid: 1 to ${MAX_PATTERN} of VM-name characters, '*' and '?'`);
    }
    g.pattern = p;
  } else {
    try {
      g.host = checkAgentName(input.host);
    } catch {
      throw vmError('INVALID_ARGUMENT', `group ${input.name}: host ${JSON.stringify(String(input.host).slice(0, 80))} is not a valid host name (1 to 64 letters, digits, '.', '_' or '-')`);
    }
  }
  return g;
}

export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\-]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

async function readFile(file: string): Promise<VmGroup[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw vmError('IO', `reading the groups ${file}: ${(err as Error).message}`, undefined, err);
  }
  let doc: { format?: unknown; version?: unknown; groups?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch (err) {
    throw vmError('CORRUPT_RECORD', `the groups file ${file} is not valid JSON (${(err as Error).message}); fix or restore it by hand`);
  }
  if (doc === null || typeof doc !== 'object' || doc.format !== GROUPS_FORMAT || typeof doc.version !== 'number' || !Array.isArray(doc.groups)) {
    throw vmError('CORRUPT_RECORD', `the groups file ${file} is not a ${GROUPS_FORMAT} file`);
  }
  if (doc.version > GROUPS_VERSION) throw vmError('UNSUPPORTED_FORMAT', `the groups file ${file} has format version ${doc.version}; this vmvault reads up to ${GROUPS_VERSION}`);
  const out: VmGroup[] = [];
  for (const [i, raw] of (doc.groups as unknown[]).entries()) {
    try {
      const { createdAt, ...rest } = raw as Record<string, unknown>;
      const known = Object.fromEntries(Object.entries(rest).filter(([k]) => FIELDS.has(k))) as unknown as NewGroup;
      // A group whose last listed VM was removed is kept with an empty list (forgetVm).
      const g = known.vms !== undefined && Array.isArray(known.vms) && known.vms.length === 0 ? { ...checkNewGroup({ ...known, vms: ['x'] }), vms: [] } : checkNewGroup(known);
      if (typeof createdAt !== 'string') throw vmError('INVALID_ARGUMENT', 'createdAt is missing');
      g.createdAt = createdAt;
      out.push(g);
    } catch (err) {
      throw vmError('CORRUPT_RECORD', `the groups file ${file}: entry ${i}: ${(err as Error).message}`);
    }
  }
  return out;
}

async function writeFile(file: string, groups: Map<string, VmGroup>): Promise<void> {
  const sorted = [...groups.values()].sort(byName);
  await writeFileAtomic(file, `${JSON.stringify({ format: GROUPS_FORMAT, version: GROUPS_VERSION, groups: sorted }, null, 2)}\n`, `writing the groups ${file}`);
}

function byName(a: VmGroup, b: VmGroup): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function copy(g: VmGroup): VmGroup {
  return g.vms === undefined ? { ...g } : { ...g, vms: [...g.vms] };
}
