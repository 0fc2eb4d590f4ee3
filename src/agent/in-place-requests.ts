// The agent's in-place restore requests (issue 13): `vmvault restore VM --in-place` of a VM on
// this host replaces the disk files its QEMU uses, which only this host sees. The appliance
// drives the steps (src/backup/host-in-place.ts; protocol: README.md, "Host requests"); the bytes
// travel in the requests themselves, zero runs left out.
//
//   inplace-check   { path }                    -> { kind, writable }: what the file is
//   inplace-open    { path, size }              -> null: <path>.vmvault-restore.raw made, sparse,
//                                                  of that size (an older one replaced)
//   inplace-write   { path, offset, data }      -> null: base64 bytes into it
//   inplace-finish  { path, format }            -> null: qcow2 converted by qemu-img, else the raw
//                                                  renamed; <path>.vmvault-restore, with the
//                                                  disk's owner and mode, fsynced
//   inplace-commit  { path }                    -> null: <path>.vmvault-restore renamed over path
//   inplace-discard { path }                    -> null: both partial files removed
//
// The appliance names only the disk file; the agent derives every other name from it, so no
// request can create, write or remove anything but a disk's two restore files and, at commit, the
// disk itself. And only inside the folders this agent was told to allow (`--in-place-dir`, none
// by default: then every request is FORBIDDEN, saying so): the appliance is trusted less than the
// agent's own configuration. The disk must be a regular file (a link is refused), found by real
// path inside an allowed folder.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { vmError } from '../errors.js';
import type { HostRequestTable } from './host-requests.js';

const run = promisify(execFile);
/** As src/backup/restore-in-place.ts IN_PLACE_SUFFIX. */
const SUFFIX = '.vmvault-restore';
/** The largest disk: 64 TiB; the largest write: 16 MiB of bytes. */
const MAX_SIZE = 64 * 1024 ** 4;
const MAX_WRITE = 16 * 1024 * 1024;

export class InPlaceRequests {
  readonly dirs: string[];

  constructor(dirs: string[], private readonly log?: (line: string) => void) {
    for (const d of dirs) {
      if (typeof d !== 'string' || !path.isAbsolute(d) || path.resolve(d) === '/') throw vmError('INVALID_ARGUMENT', `--in-place-dir ${JSON.stringify(d)} must be an absolute folder other than /`);
    }
    this.dirs = dirs.map((d) => path.resolve(d));
  }

  register(table: HostRequestTable): void {
    table.register('inplace-check', (a) => this.check(a));
    table.register('inplace-open', (a) => this.open(a));
    table.register('inplace-write', (a) => this.write(a));
    table.register('inplace-finish', (a) => this.finish(a));
    table.register('inplace-commit', (a) => this.commit(a));
    table.register('inplace-discard', (a) => this.discard(a));
  }

  /** The disk file named by the request, by real folder, inside an allowed folder; else FORBIDDEN. */
  private async disk(args: unknown, kind: string): Promise<string> {
    const p = (args as { path?: unknown } | null)?.path;
    if (typeof p !== 'string' || p.length > 4096 || !path.isAbsolute(p) || path.normalize(p) !== p || /[\u0000-\u001f]/.test(p) || p.endsWith('/')) {
      throw vmError('INVALID_ARGUMENT', `${kind}: path must be an absolute, normalised file path`);
    }
    const forbidden = (why: string) => vmError('FORBIDDEN', `${kind}: ${JSON.stringify(p.slice(0, 200))} ${why}: refused`, { path: p.slice(0, 200) });
    if (this.dirs.length === 0) throw forbidden('cannot be restored in place by this agent (it was started without --in-place-dir)');
    const parent = await fs.realpath(path.dirname(p)).catch(() => undefined);
    if (parent === undefined) throw forbidden('is in no folder that exists');
    const roots = await Promise.all(this.dirs.map((d) => fs.realpath(d).catch(() => undefined)));
    if (!roots.some((r) => r !== undefined && (parent === r || parent.startsWith(r.endsWith('/') ? r : `${r}/`)))) {
      throw forbidden(`is not inside this agent's --in-place-dir folders (${this.dirs.join(', ')})`);
    }
    return path.join(parent, path.basename(p));
  }

  async check(args: unknown): Promise<{ kind: 'file' | 'block' | 'link' | 'other' | 'missing'; writable: boolean }> {
    const file = await this.disk(args, 'inplace-check');
    const st = await fs.lstat(file).catch(() => null);
    if (st === null) return { kind: 'missing', writable: false };
    const kind = st.isFile() ? 'file' : st.isBlockDevice() ? 'block' : st.isSymbolicLink() ? 'link' : 'other';
    const writable = await fs.access(file, fs.constants.W_OK).then(() => fs.access(path.dirname(file), fs.constants.W_OK)).then(() => true, () => false);
    return { kind, writable };
  }

  /** The disk itself, a regular file (not a link): what the later steps may touch. */
  private async regular(args: unknown, kind: string): Promise<string> {
    const file = await this.disk(args, kind);
    const st = await fs.lstat(file).catch(() => null);
    if (st === null || !st.isFile()) throw vmError('FORBIDDEN', `${kind}: ${file} is not a regular file: refused`, { path: file });
    return file;
  }

  async open(args: unknown): Promise<null> {
    const file = await this.regular(args, 'inplace-open');
    const size = (args as { size?: unknown }).size;
    if (!Number.isSafeInteger(size) || (size as number) < 0 || (size as number) > MAX_SIZE) throw vmError('INVALID_ARGUMENT', `inplace-open: size must be an integer from 0 to ${MAX_SIZE}`);
    await this.removePartial(file);
    const fh = await fs.open(`${file}${SUFFIX}.raw`, 'wx', 0o600);
    try {
      await fh.truncate(size as number);
    } finally {
      await fh.close();
    }
    this.log?.(`in place: ${file}${SUFFIX}.raw made (${size} bytes)`);
    return null;
  }

  async write(args: unknown): Promise<null> {
    const file = await this.regular(args, 'inplace-write');
    const a = args as { offset?: unknown; data?: unknown };
    if (!Number.isSafeInteger(a.offset) || (a.offset as number) < 0) throw vmError('INVALID_ARGUMENT', 'inplace-write: offset must be a non-negative integer');
    if (typeof a.data !== 'string' || a.data.length > Math.ceil(MAX_WRITE / 3) * 4) throw vmError('INVALID_ARGUMENT', `inplace-write: data must be base64 of at most ${MAX_WRITE} bytes`);
    const bytes = Buffer.from(a.data, 'base64');
    const raw = `${file}${SUFFIX}.raw`;
    // Only into a file open() made, never past the size it was given.
    const st = await fs.lstat(raw).catch(() => null);
    if (st === null || !st.isFile()) throw vmError('NOT_FOUND', `inplace-write: ${raw} was not opened (inplace-open first)`);
    if ((a.offset as number) + bytes.length > st.size) throw vmError('INVALID_ARGUMENT', `inplace-write: ${bytes.length} bytes at ${a.offset} end past the disk's ${st.size} bytes`);
    const fh = await fs.open(raw, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW);
    try {
      await fh.write(bytes, 0, bytes.length, a.offset as number);
    } finally {
      await fh.close();
    }
    return null;
  }

  async finish(args: unknown): Promise<null> {
    const file = await this.regular(args, 'inplace-finish');
    const format = (args as { format?: unknown }).format;
    if (format !== 'raw' && format !== 'qcow2') throw vmError('INVALID_ARGUMENT', 'inplace-finish: format must be raw or qcow2');
    const raw = `${file}${SUFFIX}.raw`;
    const final = `${file}${SUFFIX}`;
    if ((await fs.lstat(raw).catch(() => null))?.isFile() !== true) throw vmError('NOT_FOUND', `inplace-finish: ${raw} was not opened (inplace-open first)`);
    await fs.rm(final, { force: true });
    if (format === 'qcow2') {
      try {
        await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, final]);
      } catch (err) {
        throw vmError('IO', `qemu-img convert of ${raw} to qcow2 failed: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`);
      }
      await fs.rm(raw, { force: true });
    } else {
      await fs.rename(raw, final);
    }
    const st = await fs.stat(file);
    await fs.chmod(final, st.mode & 0o7777);
    await fs.chown(final, st.uid, st.gid).catch(() => {});
    const fh = await fs.open(final, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    this.log?.(`in place: ${final} written (${format})`);
    return null;
  }

  async commit(args: unknown): Promise<null> {
    const file = await this.regular(args, 'inplace-commit');
    const final = `${file}${SUFFIX}`;
    if ((await fs.lstat(final).catch(() => null))?.isFile() !== true) throw vmError('NOT_FOUND', `inplace-commit: ${final} is not there (inplace-finish first)`);
    await fs.rename(final, file);
    const dir = await fs.open(path.dirname(file), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    this.log?.(`in place: ${file} replaced`);
    return null;
  }

  async discard(args: unknown): Promise<null> {
    const file = await this.disk(args, 'inplace-discard');
    await this.removePartial(file);
    return null;
  }

  private async removePartial(file: string): Promise<void> {
    for (const f of [`${file}${SUFFIX}.raw`, `${file}${SUFFIX}`]) {
      const st = await fs.lstat(f).catch(() => null);
      // A link is removed as a link, never followed.
      if (st !== null) await fs.rm(f, { force: true });
    }
  }
}
