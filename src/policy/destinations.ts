// Destinations of clone (and DR) copies: another vmvault appliance, reached through its control
// plane with a replication token, or a directory (a removable disk, a tape-staging area) that
// receives a self-describing archive (ARCHIVE.md). Kept in <data>/destinations.json.
//
// Format (version 1), mode 0600 because it holds the tokens:
//   { "version": 1, "destinations": [Destination, ...] }
//   Destination: { "name", "kind": "appliance", "url", "token", "pin"? (64 hex), "createdAt" }
//              | { "name", "kind": "dir", "path" (absolute), "createdAt" }
// Written atomically (json-file.ts) under one serial queue. The token is a secret: no view,
// message or log line carries it (`view()` drops it; errors name the destination).

import fs from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, vmError } from '../errors.js';
import { normalizePin } from '../transfer/client.js';
import { Serial, readVersioned, writeAtomic } from './json-file.js';

export const DESTINATIONS_VERSION = 1;
export const DESTINATIONS_FILE = 'destinations.json';

export type Destination =
  | { name: string; kind: 'appliance'; url: string; token: string; pin?: string; createdAt: string }
  | { name: string; kind: 'dir'; path: string; createdAt: string };

/** What may be shown: everything but the token. */
export type DestinationView =
  | { name: string; kind: 'appliance'; url: string; pin?: string; createdAt: string }
  | { name: string; kind: 'dir'; path: string; createdAt: string };

/** What `destination add` asks for. */
export interface NewDestination {
  name: string;
  appliance?: string;
  token?: string;
  pin?: string;
  dir?: string;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function checkDestinationName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw vmError('INVALID_ARGUMENT', `a destination name is 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit, not ${JSON.stringify(String(name).slice(0, 80))}`);
  }
  return name;
}

export function viewOf(d: Destination): DestinationView {
  if (d.kind === 'dir') return { name: d.name, kind: 'dir', path: d.path, createdAt: d.createdAt };
  return { name: d.name, kind: 'appliance', url: d.url, ...(d.pin ? { pin: d.pin } : {}), createdAt: d.createdAt };
}

/** Checks a new destination; the token is checked for shape only (the appliance judges it). */
export function validateDestination(req: NewDestination, now: Date): Destination {
  if (typeof req !== 'object' || req === null) throw vmError('INVALID_ARGUMENT', 'a destination needs a name and --appliance URL --token T, or --dir PATH');
  const name = checkDestinationName(req.name);
  const createdAt = now.toISOString();
  if ((req.appliance === undefined) === (req.dir === undefined)) {
    throw vmError('INVALID_ARGUMENT', `destination ${name}: give either --appliance https://HOST:7443 --token T or --dir PATH`);
  }
  if (req.dir !== undefined) {
    if (req.token !== undefined || req.pin !== undefined) throw vmError('INVALID_ARGUMENT', `destination ${name}: --token and --pin are for --appliance destinations`);
    if (typeof req.dir !== 'string' || !path.isAbsolute(req.dir) || req.dir.includes('\0') || req.dir.length > 4096) {
      throw vmError('INVALID_ARGUMENT', `destination ${name}: --dir must be an absolute path, not ${JSON.stringify(String(req.dir).slice(0, 200))}`);
    }
    return { name, kind: 'dir', path: path.resolve(req.dir), createdAt };
  }
  let url: URL;
  try {
    url = new URL(String(req.appliance));
  } catch {
    throw vmError('INVALID_ARGUMENT', `destination ${name}: --appliance ${JSON.stringify(String(req.appliance).slice(0, 200))} is not a URL (https://HOST:7443)`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw vmError('INVALID_ARGUMENT', `destination ${name}: --appliance must be https:// (or http:// on loopback), not ${url.protocol}`);
  if (url.pathname !== '/' || url.search !== '' || url.username !== '' || url.password !== '') {
    throw vmError('INVALID_ARGUMENT', `destination ${name}: --appliance is the appliance's address only (https://HOST:PORT), without a path, query or user`);
  }
  if (typeof req.token !== 'string' || !/^[\x21-\x7e]{16,4096}$/.test(req.token)) {
    throw vmError('INVALID_ARGUMENT', `destination ${name}: --token must be the destination's replication token (vmvault agent token create NAME --replication, there)`);
  }
  const pin = req.pin === undefined ? undefined : normalizePin(req.pin);
  return { name, kind: 'appliance', url: url.origin, token: req.token, ...(pin ? { pin } : {}), createdAt };
}

export class DestinationRegistry {
  private destinations: Destination[] = [];
  private readonly serial = new Serial();
  private constructor(readonly file: string) {}

  static async open(dataDir: string): Promise<DestinationRegistry> {
    const r = new DestinationRegistry(path.join(dataDir, DESTINATIONS_FILE));
    const v = await readVersioned(r.file, DESTINATIONS_VERSION, 'destinations');
    if (v !== undefined) {
      if (!Array.isArray(v.destinations)) throw vmError('CORRUPT_RECORD', `${r.file}: destinations is not a list`);
      r.destinations = (v.destinations as unknown[]).map((d, i) => checkStored(d, `${r.file} destination ${i}`));
    }
    return r;
  }

  list(): DestinationView[] {
    return this.destinations.map(viewOf);
  }

  /** The destination with its token: for the copy code only, never for an answer. */
  get(name: string): Destination {
    checkDestinationName(name);
    const d = this.destinations.find((x) => x.name === name);
    if (!d) {
      throw vmError('NOT_FOUND', `no destination named ${name}${this.destinations.length ? ` (destinations: ${this.destinations.map((x) => x.name).join(', ')})` : ' (none yet: vmvault destination add)'}`, { destination: name });
    }
    return { ...d };
  }

  has(name: string): boolean {
    return this.destinations.some((x) => x.name === name);
  }

  async add(req: NewDestination, now: Date = new Date()): Promise<DestinationView> {
    const d = validateDestination(req, now);
    if (d.kind === 'dir') {
      try {
        await fs.mkdir(d.path, { recursive: true });
        await fs.access(d.path, fs.constants.W_OK);
      } catch (err) {
        throw fromSystemError(err, `destination ${d.name}: directory ${d.path}`);
      }
    }
    return this.serial.run(async () => {
      if (this.has(d.name)) throw vmError('ALREADY_EXISTS', `destination ${d.name} already exists`, { destination: d.name });
      const next = [...this.destinations, d];
      await this.write(next);
      return viewOf(d);
    });
  }

  /** Removes a destination; refused while a policy copies to it (`usedBy` names them). */
  async remove(name: string, usedBy: (name: string) => string[]): Promise<void> {
    checkDestinationName(name);
    return this.serial.run(async () => {
      this.get(name);
      const users = usedBy(name);
      if (users.length > 0) throw vmError('CONFLICT', `destination ${name} is named by ${users.length === 1 ? 'policy' : 'policies'} ${users.join(', ')}; change or remove ${users.length === 1 ? 'it' : 'them'} first`, { destination: name, policies: users });
      await this.write(this.destinations.filter((d) => d.name !== name));
    });
  }

  private async write(next: Destination[]): Promise<void> {
    await writeAtomic(this.file, { version: DESTINATIONS_VERSION, destinations: next });
    this.destinations = next;
  }
}

function checkStored(v: unknown, where: string): Destination {
  const d = v as Record<string, unknown>;
  if (typeof d !== 'object' || d === null || typeof d.name !== 'string' || typeof d.createdAt !== 'string') throw vmError('CORRUPT_RECORD', `${where} is malformed`);
  if (d.kind === 'dir' && typeof d.path === 'string') return { name: d.name, kind: 'dir', path: d.path, createdAt: d.createdAt };
  if (d.kind === 'appliance' && typeof d.url === 'string' && typeof d.token === 'string') {
    return { name: d.name, kind: 'appliance', url: d.url, token: d.token, ...(typeof d.pin === 'string' ? { pin: d.pin } : {}), createdAt: d.createdAt };
  }
  throw vmError('CORRUPT_RECORD', `${where}: unknown kind ${JSON.stringify(d.kind)}`);
}
