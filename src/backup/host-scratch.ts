// The fleecing scratch of a VM on a host (issue 13): QEMU runs there, so its scratch images and
// its NBD server's UNIX socket are made there, by that host's agent (host requests
// scratch-create and scratch-remove, src/agent/scratch-requests.ts, README.md "Host requests"),
// in the agent's own scratch folder. The copy task the same agent runs reads the socket there.
//
// The agent is untrusted: an answer must name a scratch image (fleece-<hex>-<device>.qcow2)
// right inside the VM's folder the agent named first, an absolute normalised path short enough
// for a UNIX socket beside it; anything else fails the backup (IO, bad-answer) before QEMU is
// told about it.

import path from 'node:path';
import { vmError } from '../errors.js';
import { type FleeceScratch, SCRATCH_FILE } from '../plugins/qemu/fleece-scratch.js';
import type { AgentPool } from './agent-pool.js';

const TIMEOUT_MS = 90_000;
/** sun_path holds 108 bytes with its terminating NUL. */
const MAX_SOCKET_PATH = 107;

export class HostScratch implements FleeceScratch {
  private dir: string | undefined;

  constructor(
    private readonly pool: Pick<AgentPool, 'request'>,
    private readonly host: string,
    private readonly agent: string,
    private readonly vm: string,
  ) {}

  get where(): string {
    return `on host ${this.host} by agent ${this.agent}`;
  }

  async create(device: string, sizeBytes: number): Promise<string> {
    const r = await this.pool.request(this.agent, 'scratch-create', { vm: this.vm, device, size: sizeBytes }, TIMEOUT_MS, (x) => {
      const v = x as { path?: unknown; dir?: unknown };
      if (v === null || typeof v !== 'object') throw new Error('not an object');
      const dir = checkAbsolute(v.dir, 'dir');
      const file = checkAbsolute(v.path, 'path');
      if (path.basename(dir) !== this.vm) throw new Error(`dir ${dir} is not a folder of VM ${this.vm}`);
      if (this.dir !== undefined && dir !== this.dir) throw new Error(`dir ${dir} is not ${this.dir}, named before`);
      if (path.dirname(file) !== dir || !SCRATCH_FILE.test(path.basename(file))) throw new Error(`path ${file} is not a scratch image in ${dir}`);
      if (Buffer.byteLength(path.join(dir, 'nbd.sock')) > MAX_SOCKET_PATH) throw new Error(`dir ${dir} is too long for a UNIX socket in it`);
      return { dir, file };
    });
    this.dir = r.dir;
    return r.file;
  }

  async remove(file: string): Promise<void> {
    await this.pool.request(this.agent, 'scratch-remove', { path: file }, TIMEOUT_MS, () => null);
  }

  /** The VM's whole scratch folder on the host (what a killed run left); `timeoutMs` default 90 s. */
  async clear(timeoutMs = TIMEOUT_MS): Promise<void> {
    await this.pool.request(this.agent, 'scratch-remove', { vm: this.vm }, timeoutMs, () => null);
  }

  socketPath(): string {
    if (this.dir === undefined) throw vmError('INVALID_ARGUMENT', `the scratch of VM ${this.vm} on host ${this.host} has no folder yet (no scratch image made)`);
    return path.join(this.dir, 'nbd.sock');
  }
}

function checkAbsolute(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length > 4096 || !path.isAbsolute(v) || path.normalize(v) !== v || /[\u0000-\u001f]/.test(v)) {
    throw new Error(`${what} is not an absolute, normalised path`);
  }
  return v;
}
