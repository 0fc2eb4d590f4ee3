// The hypervisor hosts the appliance reaches through their agents (issue 13): a host is a name
// and the agent that runs on it (`vmvault agent --name AGENT --qmp-dir ...`); the cluster map
// asks every host's agent for its VMs, and a VM on a host has its QMP relayed by that agent.
//
// Format (version 1), `<data>/hosts.json`, written whole on every change (src/files/atomic-file.ts:
// a crash leaves the old file or the new one):
//   { "format": "vmvault-hosts", "version": 1,
//     "hosts": [ { "name": "node1", "agent": "node1", "createdAt": "2026-12-05T12:00:00.000Z" } ] }
//   sorted by name. A reader refuses a newer version (UNSUPPORTED_FORMAT) and a file it cannot
// parse (CORRUPT_RECORD, naming the file): it is the operator's configuration, never dropped.
// Adding a field is not a format change (readers ignore fields they do not know).

import fs from 'node:fs/promises';
import path from 'node:path';
import { vmError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic-file.js';

export const HOSTS_FORMAT = 'vmvault-hosts';
export const HOSTS_VERSION = 1;
export const HOSTS_FILE = 'hosts.json';

export interface HostConfig {
  name: string;
  /** The agent running on it (its --name). */
  agent: string;
  createdAt: string;
}

/** Host and agent names: a host name's characters, as agent names are. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function checkHostName(name: unknown, what = 'host name'): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw vmError('INVALID_ARGUMENT', `${what} ${JSON.stringify(String(name).slice(0, 80))} is not valid: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  return name;
}

export class HostRegistry {
  private readonly hosts = new Map<string, HostConfig>();
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(readonly file: string) {}

  static async open(dataDir: string): Promise<HostRegistry> {
    const reg = new HostRegistry(path.join(dataDir, HOSTS_FILE));
    for (const h of await readFile(reg.file)) reg.hosts.set(h.name, h);
    return reg;
  }

  list(): HostConfig[] {
    return [...this.hosts.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((h) => ({ ...h }));
  }

  /** NOT_FOUND naming the host. */
  get(name: string): HostConfig {
    checkHostName(name);
    const h = this.hosts.get(name);
    if (!h) throw vmError('NOT_FOUND', `no host ${JSON.stringify(name)} (vmvault host list shows them; vmvault host add ${name} --agent AGENT adds it)`, { host: name });
    return { ...h };
  }

  /** CONFLICT for a name or an agent already taken (one agent speaks for one host). */
  add(input: { name: unknown; agent: unknown }): Promise<HostConfig> {
    if (input === null || typeof input !== 'object') return Promise.reject(vmError('INVALID_ARGUMENT', 'a host is { name, agent }'));
    let h: HostConfig;
    try {
      h = { name: checkHostName(input.name), agent: checkHostName(input.agent, 'agent name'), createdAt: new Date().toISOString() };
    } catch (err) {
      return Promise.reject(err);
    }
    return this.serial(async () => {
      if (this.hosts.has(h.name)) throw vmError('CONFLICT', `host ${h.name} is already added (vmvault host remove ${h.name} first to change it)`, { host: h.name });
      const other = [...this.hosts.values()].find((x) => x.agent === h.agent);
      if (other) throw vmError('CONFLICT', `agent ${h.agent} already speaks for host ${other.name}; an agent runs on one host`, { host: other.name });
      const next = new Map(this.hosts).set(h.name, h);
      await writeFile(this.file, next);
      this.hosts.set(h.name, h);
      return { ...h };
    });
  }

  remove(name: string): Promise<void> {
    return this.serial(async () => {
      this.get(name);
      const next = new Map(this.hosts);
      next.delete(name);
      await writeFile(this.file, next);
      this.hosts.delete(name);
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

async function readFile(file: string): Promise<HostConfig[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw vmError('IO', `reading the host list ${file}: ${(err as Error).message}`, undefined, err);
  }
  let doc: { format?: unknown; version?: unknown; hosts?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch (err) {
    throw vmError('CORRUPT_RECORD', `the host list ${file} is not valid JSON (${(err as Error).message}); fix or restore it by hand`);
  }
  if (doc === null || typeof doc !== 'object' || doc.format !== HOSTS_FORMAT || typeof doc.version !== 'number' || !Array.isArray(doc.hosts)) {
    throw vmError('CORRUPT_RECORD', `the host list ${file} is not a ${HOSTS_FORMAT} file`);
  }
  if (doc.version > HOSTS_VERSION) throw vmError('UNSUPPORTED_FORMAT', `the host list ${file} has format version ${doc.version}; this vmvault reads up to ${HOSTS_VERSION}`);
  return (doc.hosts as unknown[]).map((raw, i) => {
    const r = raw as Record<string, unknown>;
    try {
      if (typeof r?.createdAt !== 'string') throw vmError('INVALID_ARGUMENT', 'createdAt is missing');
      return { name: checkHostName(r.name), agent: checkHostName(r.agent, 'agent name'), createdAt: r.createdAt };
    } catch (err) {
      throw vmError('CORRUPT_RECORD', `the host list ${file}: entry ${i}: ${(err as Error).message}`);
    }
  });
}

async function writeFile(file: string, hosts: Map<string, HostConfig>): Promise<void> {
  const sorted = [...hosts.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  await writeFileAtomic(file, `${JSON.stringify({ format: HOSTS_FORMAT, version: HOSTS_VERSION, hosts: sorted }, null, 2)}\n`, `writing the host list ${file}`);
}
