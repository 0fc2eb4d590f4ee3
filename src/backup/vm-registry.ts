// The VMs the appliance protects: their names, where to reach QEMU (QMP), the guest agent and
// PostgreSQL, the share their backups go to, and their default workflow. Every door that adds a
// VM (HTTP, CLI through HTTP) comes through add(), which checks everything before anything is
// written: a refused VM leaves no trace.
//
// Format (version 1), `<data>/vms.json`, written whole on every change (temporary file, fsync,
// rename, fsync of the data directory), so a crash leaves the old file or the new one, never a
// mix:
//   { "format": "vmvault-vms", "version": 1,
//     "vms": [ { "name": "web01", "share": "web01", "qmp": "unix:/run/qemu/web01.qmp",
//                "qga": "unix:/run/qemu/web01.qga",            (optional)
//                "pg": "postgres://backup@127.0.0.1:5432/postgres", (optional; may hold a password,
//                                                               hence mode 0600)
//                "workflow": "app-consistent",                 (optional)
//                "agent": "host-a",                            (optional: the external agent that
//                                                               copies its disks; issue 12)
//                "script": "/etc/vmvault/web01-app.sh",        (optional: the operator's executable
//                                                               the built-in script plug-in runs)
//                "host": "node1",                              (optional: the host whose agent
//                                                               relays its QMP; issue 13)
//                "uuid": "6b1e3b2c-...",                       (optional: QEMU's -uuid, how the
//                                                               VM is recognised after a move)
//                "formerHosts": ["node2"],                     (optional: hosts it ran on before a
//                                                               move whose agents may still hold
//                                                               scratch of a killed backup; set
//                                                               by relocate, emptied by backups)
//                "createdAt": "2026-12-05T12:00:00.000Z" } ] }   sorted by name
// A reader refuses a newer version (UNSUPPORTED_FORMAT) and a file it cannot parse
// (CORRUPT_RECORD, naming the file): unlike the job history, this file is the operator's
// configuration, so it is never moved aside or dropped. Adding a field is not a format change
// (readers ignore fields they do not know); renaming or re-typing one is.

import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type VmvaultError, vmError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic-file.js';
import { validateName } from '../namespace/names.js';
import { checkHostName } from './host-registry.js';

export const VMS_FORMAT = 'vmvault-vms';
export const VMS_VERSION = 1;
export const VMS_FILE = 'vms.json';

export interface VmConfig {
  name: string;
  /** Where the backups go: a share of that name holds vda.raw, vm.json and one snapshot per point. */
  share: string;
  /** QMP socket: `unix:/abs/path` or `tcp:host:port`. */
  qmp: string;
  /** Guest agent socket, same forms; without it no app-consistent backup (no fsfreeze). */
  qga?: string;
  /** PostgreSQL URL (postgres://user[:password]@host[:port]/db) for quiesce-database. */
  pg?: string;
  /** The workflow a backup runs when none is named. */
  workflow?: string;
  /**
   * The external agent (`vmvault agent --name NAME`) that copies this VM's disks; absent: the
   * appliance copies them itself (the internal agent). Another live agent that can reach the
   * source takes over when this one is lost.
   */
  agent?: string;
  /**
   * The operator's executable the built-in `script` plug-in runs for this VM (actions and VM as
   * JSON on stdin: src/plugins/script/PROTOCOL.md). Absolute; checked to exist and be executable
   * when the VM is added, described (which actions it performs) at each backup.
   */
  script?: string;
  /**
   * The host (hosts.json, issue 13) whose agent reaches `qmp` (then a UNIX socket on that host):
   * QMP is relayed by that agent, and it copies the disks. Updated when the VM moves.
   */
  host?: string;
  /** QEMU's UUID (lower case): the VM is recognised by it on whichever host it runs. */
  uuid?: string;
  /**
   * Hosts the VM ran on before it moved (relocate() adds them; never from add()): a backup killed
   * there may have left scratch images in that host's agent's folder, which the next backup
   * clears (forgetFormerHost() once it did).
   */
  formerHosts?: string[];
  /** ISO 8601. */
  createdAt: string;
}

/** What add() takes: the share defaults to the VM's name. */
export type NewVm = Omit<VmConfig, 'createdAt' | 'share'> & { share?: string };

/** Longest QMP/guest agent/PostgreSQL address accepted, in bytes. */
export const MAX_ADDRESS_BYTES = 1024;
/** sun_path holds 108 bytes with its NUL. */
const MAX_UNIX_PATH_BYTES = 107;
/** Workflow names as workflows.yaml spells them. */
const WORKFLOW_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const FIELDS = new Set(['name', 'share', 'qmp', 'qga', 'pg', 'workflow', 'agent', 'script', 'host', 'uuid']);
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
/** Former hosts remembered per VM (a VM that moved more often than this keeps the latest). */
const MAX_FORMER_HOSTS = 64;
/** Agent names: what `vmvault agent --name` accepts (a host name's characters). */
const AGENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export class VmRegistry {
  private readonly vms = new Map<string, VmConfig>();
  /** Changes one at a time, in order (a FIFO chain: each waits for the one before, failed or not). */
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(readonly file: string) {}

  /** Reads `<dataDir>/vms.json` (none yet: no VMs). */
  static async open(dataDir: string): Promise<VmRegistry> {
    const reg = new VmRegistry(path.join(dataDir, VMS_FILE));
    for (const vm of await readFile(reg.file)) reg.vms.set(vm.name, vm);
    return reg;
  }

  /** Sorted by name. */
  list(): VmConfig[] {
    return [...this.vms.values()].sort(byName).map((v) => ({ ...v }));
  }

  /** NOT_FOUND naming the VM. */
  get(name: string): VmConfig {
    checkVmName(name);
    const vm = this.vms.get(name);
    if (vm === undefined) throw vmError('NOT_FOUND', `no VM ${JSON.stringify(name)} (vmvault vm list shows them; vmvault vm add registers one)`, { vm: name });
    return { ...vm };
  }

  /**
   * Checks every field (INVALID_ARGUMENT or NAME_TOO_LONG saying which and why), refuses a name
   * or a share already taken (CONFLICT), then writes the file; durable when it resolves.
   */
  async add(input: NewVm): Promise<VmConfig> {
    const vm = checkNewVm(input);
    return this.serial(async () => {
      if (this.vms.has(vm.name)) throw vmError('CONFLICT', `a VM named ${JSON.stringify(vm.name)} is already registered (vmvault vm remove ${vm.name} first to change it)`, { vm: vm.name });
      for (const other of this.vms.values()) {
        if (other.share === vm.share) {
          throw vmError('CONFLICT', `share ${JSON.stringify(vm.share)} already holds the backups of VM ${JSON.stringify(other.name)}; give this VM another share (--share)`, { vm: other.name });
        }
      }
      const next = new Map(this.vms).set(vm.name, vm);
      await writeFile(this.file, next);
      this.vms.set(vm.name, vm);
      return { ...vm };
    });
  }

  /**
   * Where the VM runs now (issue 13: it moved to another host): host, qmp and uuid replaced,
   * checked like add()'s; durable when it resolves. Its share and points are untouched.
   */
  relocate(name: string, to: { host?: string; qmp: string; uuid?: string }): Promise<VmConfig> {
    return this.serial(async () => {
      const old = this.get(name);
      const { createdAt, ...rest } = old;
      const { host: _h, uuid: _u, formerHosts: _f, ...keep } = rest;
      const vm = checkNewVm({ ...keep, qmp: to.qmp, ...(to.host !== undefined ? { host: to.host } : {}), ...(to.uuid !== undefined ? { uuid: to.uuid } : {}) });
      vm.createdAt = createdAt;
      // The host it leaves may hold scratch of a killed backup: remembered until a backup clears it.
      const former = new Set(old.formerHosts ?? []);
      if (old.host !== undefined && old.host !== vm.host) former.add(old.host);
      if (vm.host !== undefined) former.delete(vm.host);
      if (former.size > 0) vm.formerHosts = [...former].slice(-MAX_FORMER_HOSTS);
      const next = new Map(this.vms).set(name, vm);
      await writeFile(this.file, next);
      this.vms.set(name, vm);
      return { ...vm };
    });
  }

  /** A backup cleared the VM's scratch on this former host: it need not be visited again. */
  forgetFormerHost(name: string, host: string): Promise<void> {
    return this.serial(async () => {
      const vm = this.get(name);
      if (!vm.formerHosts?.includes(host)) return;
      const rest = vm.formerHosts.filter((h) => h !== host);
      if (rest.length > 0) vm.formerHosts = rest;
      else delete vm.formerHosts;
      const next = new Map(this.vms).set(name, vm);
      await writeFile(this.file, next);
      this.vms.set(name, vm);
    });
  }

  /** Forgets the VM (its share and restore points stay); NOT_FOUND if it is not registered. */
  remove(name: string): Promise<void> {
    return this.serial(async () => {
      this.get(name);
      const next = new Map(this.vms);
      next.delete(name);
      await writeFile(this.file, next);
      this.vms.delete(name);
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** The checks add() makes, exported for callers that want them before doing anything else. */
export function checkNewVm(input: NewVm): VmConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw vmError('INVALID_ARGUMENT', 'a VM is an object with name and qmp');
  for (const k of Object.keys(input)) {
    if (!FIELDS.has(k)) throw vmError('INVALID_ARGUMENT', `unknown VM field ${JSON.stringify(k)} (known: ${[...FIELDS].join(', ')})`);
  }
  checkVmName(input.name);
  const share = input.share ?? input.name;
  validateName('share', share);
  const vm: VmConfig = { name: input.name, share, qmp: checkSocketAddress('qmp', input.qmp), createdAt: new Date().toISOString() };
  if (input.qga !== undefined) vm.qga = checkSocketAddress('qga', input.qga);
  if (input.pg !== undefined) vm.pg = checkPostgresUrl(input.pg);
  if (input.workflow !== undefined) vm.workflow = checkWorkflowName(input.workflow);
  if (input.agent !== undefined) vm.agent = checkAgentName(input.agent);
  if (input.script !== undefined) vm.script = checkScriptPath(input.script);
  if (input.host !== undefined) {
    vm.host = checkHostName(input.host);
    if (!vm.qmp.startsWith('unix:')) throw vmError('INVALID_ARGUMENT', `VM ${vm.name} is on host ${vm.host}: its qmp must be the UNIX socket on that host (unix:/path), which the host's agent opens`);
  }
  if (input.uuid !== undefined) {
    if (typeof input.uuid !== 'string' || !UUID.test(input.uuid)) throw vmError('INVALID_ARGUMENT', `uuid ${JSON.stringify(String(input.uuid).slice(0, 80))} is not a UUID (QEMU's -uuid, as query-uuid answers it)`);
    vm.uuid = input.uuid.toLowerCase();
  }
  return vm;
}

/**
 * The script's path as written: absolute, canonical, no control characters. Whether the file
 * exists and is executable is the caller's check (it needs the file system; see
 * `checkScriptFile`), so this one stays synchronous like the others.
 */
export function checkScriptPath(p: unknown): string {
  if (typeof p !== 'string' || p.length === 0) throw vmError('INVALID_ARGUMENT', 'script path is missing; give the absolute path of an executable');
  if (Buffer.byteLength(p) > MAX_ADDRESS_BYTES) throw vmError('NAME_TOO_LONG', `script path is longer than ${MAX_ADDRESS_BYTES} bytes`);
  if (/[\u0000-\u001f\u007f]/.test(p)) throw vmError('INVALID_ARGUMENT', 'script path contains a NUL or control character');
  const shown = JSON.stringify(p.length > 80 ? `${p.slice(0, 80)}...` : p);
  if (!path.isAbsolute(p)) throw vmError('INVALID_ARGUMENT', `script path ${shown} must be absolute (the appliance runs it, from its own directory)`);
  if (p.split('/').some((c) => c === '..' || c === '.')) throw vmError('INVALID_ARGUMENT', `script path ${shown} must not contain '.' or '..' components`);
  return p;
}

/** The script is a regular file the appliance may execute: NOT_FOUND or INVALID_ARGUMENT saying what to do. */
export async function checkScriptFile(p: string): Promise<void> {
  let st: import('node:fs').Stats;
  try {
    st = await fs.stat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw vmError('INVALID_ARGUMENT', `script ${p} does not exist on the appliance host`, { script: p });
    throw vmError('INVALID_ARGUMENT', `script ${p}: ${(err as Error).message}`, { script: p });
  }
  if (!st.isFile()) throw vmError('INVALID_ARGUMENT', `script ${p} is not a regular file`, { script: p });
  try {
    await fs.access(p, fsConstants.X_OK);
  } catch {
    throw vmError('INVALID_ARGUMENT', `script ${p} is not executable; chmod +x it`, { script: p });
  }
}

/** A VM's name follows the share name rules (it is its share's default name); messages say "VM name". */
export function checkVmName(name: unknown): asserts name is string {
  try {
    validateName('share', name);
  } catch (err) {
    const e = err as VmvaultError;
    throw vmError(e.code, e.message.replace(/^share name/, 'VM name'), { ...e.details, rule: 'VM names follow the share name rules' });
  }
}

/** `unix:/abs/path` or `tcp:host:port` (host a name, an IPv4 address or [IPv6]). */
export function checkSocketAddress(what: string, address: unknown): string {
  const forms = `expected unix:/absolute/path or tcp:host:port, e.g. unix:/run/qemu/web01.${what}`;
  if (typeof address !== 'string' || address.length === 0) throw vmError('INVALID_ARGUMENT', `${what} address is missing; ${forms}`);
  if (Buffer.byteLength(address) > MAX_ADDRESS_BYTES) throw vmError('NAME_TOO_LONG', `${what} address is longer than ${MAX_ADDRESS_BYTES} bytes`);
  if (/[\u0000-\u001f\u007f]/.test(address)) throw vmError('INVALID_ARGUMENT', `${what} address contains a NUL or control character`);
  const shown = JSON.stringify(address.length > 80 ? `${address.slice(0, 80)}...` : address);
  if (address.startsWith('unix:')) {
    const p = address.slice(5);
    if (!p.startsWith('/')) throw vmError('INVALID_ARGUMENT', `${what} address ${shown}: the socket path must be absolute; ${forms}`);
    if (p.split('/').some((c) => c === '..' || c === '.')) throw vmError('INVALID_ARGUMENT', `${what} address ${shown}: the socket path must not contain '.' or '..' components`);
    if (Buffer.byteLength(p) > MAX_UNIX_PATH_BYTES) {
      throw vmError('INVALID_ARGUMENT', `${what} address ${shown}: a UNIX socket path is at most ${MAX_UNIX_PATH_BYTES} bytes (the kernel's limit)`);
    }
    return address;
  }
  if (address.startsWith('tcp:')) {
    const m = /^tcp:(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
    if (m === null) throw vmError('INVALID_ARGUMENT', `${what} address ${shown}: ${forms} (an IPv6 host goes in brackets: tcp:[::1]:4444)`);
    const host = m[1] ?? m[2];
    const port = Number(m[3]);
    if (m[2] !== undefined && !IPV4.test(host) && (!HOSTNAME.test(host) || /^[\d.]+$/.test(host))) {
      throw vmError('INVALID_ARGUMENT', `${what} address ${shown}: ${JSON.stringify(host)} is not a host name or IP address`);
    }
    if (m[1] !== undefined && !m[1].includes(':')) throw vmError('INVALID_ARGUMENT', `${what} address ${shown}: brackets are for IPv6 addresses`);
    if (port < 1 || port > 65535) throw vmError('INVALID_ARGUMENT', `${what} address ${shown}: port ${port} is not between 1 and 65535`);
    return address;
  }
  throw vmError('INVALID_ARGUMENT', `${what} address ${shown}: ${forms}`);
}

/** postgres:// or postgresql:// URLs, as libpq and the pg client read them. */
export function checkPostgresUrl(url: unknown): string {
  const forms = 'expected postgres://user@host[:port]/database, e.g. postgres://backup@127.0.0.1:5432/postgres';
  if (typeof url !== 'string' || url.length === 0) throw vmError('INVALID_ARGUMENT', `pg URL is missing; ${forms}`);
  if (Buffer.byteLength(url) > MAX_ADDRESS_BYTES) throw vmError('NAME_TOO_LONG', `pg URL is longer than ${MAX_ADDRESS_BYTES} bytes`);
  if (/[\u0000-\u001f\u007f]/.test(url)) throw vmError('INVALID_ARGUMENT', 'pg URL contains a NUL or control character');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw vmError('INVALID_ARGUMENT', `pg URL ${JSON.stringify(redactUrl(url))} does not parse as a URL; ${forms}`);
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw vmError('INVALID_ARGUMENT', `pg URL ${JSON.stringify(redactUrl(url))} has scheme ${parsed.protocol.replace(/:$/, '')}; ${forms}`);
  }
  if (parsed.hostname === '' && !parsed.searchParams.has('host')) {
    throw vmError('INVALID_ARGUMENT', `pg URL ${JSON.stringify(redactUrl(url))} names no host; ${forms}`);
  }
  return url;
}

export function checkWorkflowName(name: unknown): string {
  if (typeof name !== 'string' || !WORKFLOW_NAME.test(name)) {
    throw vmError('INVALID_ARGUMENT', `workflow name ${JSON.stringify(String(name).slice(0, 80))} is not valid: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  return name;
}

/** An agent's name (`vmvault agent --name`, `vm add --agent`): 1 to 64 of letters, digits, '.', '_', '-'. */
export function checkAgentName(name: unknown): string {
  if (typeof name !== 'string' || !AGENT_NAME.test(name)) {
    throw vmError('INVALID_ARGUMENT', `agent name ${JSON.stringify(String(name).slice(0, 80))} is not valid: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  return name;
}

/** The URL with its password replaced by "***": what any view or message may show. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password === '') return url;
    u.password = '***';
    return u.toString();
  } catch {
    // Not a URL: hide whatever sits between "://user:" and "@".
    return url.replace(/(\/\/[^/:@]*:)[^@/]*@/, '$1***@');
  }
}

async function readFile(file: string): Promise<VmConfig[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw vmError('IO', `reading the VM registry ${file}: ${(err as Error).message}`, undefined, err);
  }
  let doc: { format?: unknown; version?: unknown; vms?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch (err) {
    throw vmError('CORRUPT_RECORD', `the VM registry ${file} is not valid JSON (${(err as Error).message}); fix or restore it by hand, it is the list of protected VMs`);
  }
  if (doc === null || typeof doc !== 'object' || doc.format !== VMS_FORMAT || typeof doc.version !== 'number' || !Array.isArray(doc.vms)) {
    throw vmError('CORRUPT_RECORD', `the VM registry ${file} is not a ${VMS_FORMAT} file`);
  }
  if (doc.version > VMS_VERSION) {
    throw vmError('UNSUPPORTED_FORMAT', `the VM registry ${file} has format version ${doc.version}; this vmvault reads up to ${VMS_VERSION}`);
  }
  const out: VmConfig[] = [];
  for (const [i, raw] of (doc.vms as unknown[]).entries()) {
    try {
      const r = raw as Record<string, unknown>;
      const { createdAt, ...rest } = r;
      const known = Object.fromEntries(Object.entries(rest).filter(([k]) => FIELDS.has(k))) as unknown as NewVm;
      const vm = checkNewVm(known);
      if (r.formerHosts !== undefined) {
        if (!Array.isArray(r.formerHosts) || r.formerHosts.length > MAX_FORMER_HOSTS) throw vmError('INVALID_ARGUMENT', `formerHosts is not a list of at most ${MAX_FORMER_HOSTS} host names`);
        if (r.formerHosts.length > 0) vm.formerHosts = r.formerHosts.map((h) => checkHostName(h));
      }
      if (typeof createdAt !== 'string') throw vmError('INVALID_ARGUMENT', 'createdAt is missing');
      vm.createdAt = createdAt;
      out.push(vm);
    } catch (err) {
      throw vmError('CORRUPT_RECORD', `the VM registry ${file}: entry ${i}: ${(err as Error).message}`);
    }
  }
  return out;
}

async function writeFile(file: string, vms: Map<string, VmConfig>): Promise<void> {
  const sorted = [...vms.values()].sort(byName);
  await writeFileAtomic(file, `${JSON.stringify({ format: VMS_FORMAT, version: VMS_VERSION, vms: sorted }, null, 2)}\n`, `writing the VM registry ${file}`);
}

function byName(a: VmConfig, b: VmConfig): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
