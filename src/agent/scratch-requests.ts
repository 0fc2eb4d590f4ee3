// The agent's scratch host requests (issue 13): the fleecing scratch images of a backup of a VM on
// this host, and the folder of QEMU's NBD socket, are made here, since QEMU opens them here
// (src/backup/host-scratch.ts asks; protocol: README.md, "Host requests").
//
// Everything lives in this agent's own scratch folder (`--scratch-dir`, default
// /var/tmp/vmvault-agent), one folder per VM: <dir>/<vm>/fleece-<hex>-<device>.qcow2 and
// <dir>/<vm>/nbd.sock. The appliance is trusted less than the agent's own configuration: a
// path outside that folder, or a name that could climb out of it, is refused (FORBIDDEN), never
// made or removed.

import fs from 'node:fs/promises';
import path from 'node:path';
import { vmError } from '../errors.js';
import { qemuImgCreate, SCRATCH_FILE, scratchFileName } from '../plugins/qemu/fleece-scratch.js';
import type { HostRequestTable } from './host-requests.js';

export const DEFAULT_SCRATCH_DIR = '/var/tmp/vmvault-agent';
/** As a VM's name (vm-registry.ts), so it is one path component and never '.' or '..'. */
const VM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const DEVICE = /^[A-Za-z0-9_./-]{1,128}$/;
/** The largest scratch image (a disk's virtual size): 64 TiB. */
const MAX_SIZE = 64 * 1024 ** 4;

export interface ScratchCreated {
  /** The scratch image, on this host. */
  path: string;
  /** The VM's scratch folder (the NBD socket goes in it). */
  dir: string;
}

export class ScratchRequests {
  readonly root: string;

  constructor(root: string, private readonly log?: (line: string) => void) {
    if (typeof root !== 'string' || root === '' || !path.isAbsolute(root)) throw vmError('INVALID_ARGUMENT', `--scratch-dir ${JSON.stringify(root)} is not an absolute path`);
    this.root = path.resolve(root);
    if (this.root === '/') throw vmError('INVALID_ARGUMENT', '--scratch-dir / would let the appliance remove anything: name a folder of its own');
  }

  register(table: HostRequestTable): void {
    table.register('scratch-create', (args) => this.create(args));
    table.register('scratch-remove', (args) => this.remove(args));
  }

  /** The root, made when missing (only the agent's user may enter it), by its real path. */
  private async realRoot(): Promise<string> {
    await fs.mkdir(this.root, { recursive: true, mode: 0o700 });
    return fs.realpath(this.root);
  }

  /** The VM's folder, made when missing; refused when something else (a link) is there. */
  private async vmDir(vm: string): Promise<string> {
    const root = await this.realRoot();
    const dir = path.join(root, vm);
    await fs.mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    const st = await fs.lstat(dir);
    if (!st.isDirectory()) throw vmError('FORBIDDEN', `scratch: ${dir} is not a folder (a link?): refused`);
    return dir;
  }

  async create(args: unknown): Promise<ScratchCreated> {
    const a = (args ?? {}) as { vm?: unknown; device?: unknown; size?: unknown };
    if (typeof a.vm !== 'string' || !VM_NAME.test(a.vm)) throw vmError('INVALID_ARGUMENT', 'scratch-create: vm must be a VM name (1 to 64 letters, digits, ._-, not starting with . or -)');
    if (typeof a.device !== 'string' || !DEVICE.test(a.device)) throw vmError('INVALID_ARGUMENT', 'scratch-create: device must be 1 to 128 letters, digits, ._/-');
    if (!Number.isSafeInteger(a.size) || (a.size as number) < 1 || (a.size as number) > MAX_SIZE) throw vmError('INVALID_ARGUMENT', `scratch-create: size must be an integer from 1 to ${MAX_SIZE} bytes`);
    const dir = await this.vmDir(a.vm);
    const file = path.join(dir, scratchFileName(a.device));
    await qemuImgCreate(file, a.size as number);
    this.log?.(`scratch: made ${file} (${a.size} bytes) for VM ${a.vm} ${a.device}`);
    return { path: file, dir };
  }

  /**
   * `{ path }`: one scratch image (fleece-*.qcow2) in a VM's folder; `{ vm }`: that VM's whole
   * folder (stale images of a killed run, the socket). Missing: done.
   */
  async remove(args: unknown): Promise<null> {
    const a = (args ?? {}) as { path?: unknown; vm?: unknown };
    const root = await this.realRoot();
    if (a.vm !== undefined) {
      if (typeof a.vm !== 'string' || !VM_NAME.test(a.vm)) throw vmError('INVALID_ARGUMENT', 'scratch-remove: vm must be a VM name');
      const dir = path.join(root, a.vm);
      const st = await fs.lstat(dir).catch(() => null);
      if (st === null) return null;
      // A link is removed as a link, never followed.
      await fs.rm(dir, { recursive: st.isDirectory(), force: true });
      this.log?.(`scratch: removed ${dir}`);
      return null;
    }
    if (typeof a.path !== 'string' || a.path.length > 4096) throw vmError('INVALID_ARGUMENT', 'scratch-remove: path or vm required');
    const p = a.path;
    const forbidden = () =>
      vmError('FORBIDDEN', `scratch-remove: ${JSON.stringify(p.slice(0, 200))} is not a scratch image in this agent's scratch folder ${this.root}: refused`, { path: p.slice(0, 200) });
    if (!path.isAbsolute(p) || path.normalize(p) !== p || !SCRATCH_FILE.test(path.basename(p))) throw forbidden();
    // The file's folder must be a VM folder right under the root, by real paths (no link out).
    const parent = await fs.realpath(path.dirname(p)).catch(() => undefined);
    if (parent === undefined) {
      // Its folder is gone: so is the file, if it ever was ours; outside the root is still refused.
      const rel = path.relative(this.root, path.dirname(p));
      if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel) || rel.includes(path.sep)) throw forbidden();
      return null;
    }
    if (path.dirname(parent) !== root || !VM_NAME.test(path.basename(parent))) throw forbidden();
    const file = path.join(parent, path.basename(p));
    const st = await fs.lstat(file).catch(() => null);
    if (st === null) return null;
    if (!st.isFile()) throw forbidden();
    await fs.rm(file, { force: true });
    this.log?.(`scratch: removed ${file}`);
    return null;
  }
}
