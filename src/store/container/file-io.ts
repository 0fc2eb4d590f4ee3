// Every file-system call of the store goes through this module. It is the fault seam: tests
// install a FaultPlan to make the Nth write, fsync or read fail (ENOSPC, EIO) or write short,
// without a special disk (kopia's FaultyStorage, restic's failing backend wrappers).
//
// Reads have two more paths that do not run here: the addon's batch reads (native/src/
// read_seam.c, vv_pread) and the codec workers' (codec/worker.ts). For those the reader asks
// readFaultOf() per container file and hands the answer down with the batch, so one plan
// drives all three paths.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { fromSystemError, vmError } from '../../errors.js';

export type FaultOp = 'write' | 'fsync' | 'read' | 'open' | 'rename' | 'truncate';

export interface FaultPlan {
  /**
   * Return an errno code to fail this call with, or undefined to let it through. For reads
   * also SHORT (every read call returns at most half of what it asked: legal, callers must
   * loop) or EOF (the file seems to end where the read starts). `offset`: where a read
   * starts, for the reads made here (the batch reads of the engines pass none).
   */
  decide(op: FaultOp, path: string, offset?: number): string | undefined;
}

/** Read faults as numbers, the same in native/src/read_seam.h and codec/worker.ts. */
export const enum ReadFault {
  None = 0,
  Eio = 1,
  Short = 2,
  Eof = 3,
}

let plan: FaultPlan | undefined;

/** Tests only: install (or with undefined, remove) a fault plan. */
export function setFaultPlan(p: FaultPlan | undefined): void {
  plan = p;
}

/** Whether a plan is installed (the read path asks per batch only then). */
export function faultPlanInstalled(): boolean {
  return plan !== undefined;
}

/** The plan's decision for one read of `path`, for the paths that read elsewhere. */
export function readFaultOf(path: string): ReadFault {
  return decideRead(path).fault;
}

function decideRead(path: string, offset?: number): { fault: ReadFault; code: string } {
  const code = plan?.decide('read', path, offset);
  if (!code) return { fault: ReadFault.None, code: '' };
  return { fault: code === 'SHORT' ? ReadFault.Short : code === 'EOF' ? ReadFault.Eof : ReadFault.Eio, code };
}

function injected(op: FaultOp, path: string, code: string): NodeJS.ErrnoException {
  const err = new Error(`${code}: injected fault on ${op} ${path}`) as NodeJS.ErrnoException;
  err.code = code;
  err.syscall = op;
  err.path = path;
  return err;
}

function check(op: FaultOp, path: string): void {
  const code = plan?.decide(op, path);
  if (code) {
    const err = new Error(`${code}: injected fault on ${op} ${path}`) as NodeJS.ErrnoException;
    err.code = code;
    err.syscall = op;
    err.path = path;
    throw err;
  }
}

export interface StoreFile {
  readonly path: string;
  readonly fd: number;
}

export function openFile(path: string, flags: string | number, mode = 0o644): Promise<StoreFile> {
  return new Promise((resolve, reject) => {
    try {
      check('open', path);
    } catch (e) {
      reject(e);
      return;
    }
    // A raw fd rather than a FileHandle: worker threads read containers through it, and a
    // FileHandle closes its fd when garbage collected.
    fs.open(path, flags, mode, (err, fd) => (err ? reject(err) : resolve({ path, fd })));
  });
}

export function closeFile(f: StoreFile): Promise<void> {
  return new Promise((resolve, reject) => fs.close(f.fd, (e) => (e ? reject(e) : resolve())));
}

export function writeAt(f: StoreFile, buf: Uint8Array, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    try {
      check('write', f.path);
    } catch (e) {
      reject(e);
      return;
    }
    let done = 0;
    const step = (): void => {
      fs.write(f.fd, buf, done, buf.length - done, position + done, (err, n) => {
        if (err) return reject(err);
        done += n;
        if (done < buf.length) step();
        else resolve();
      });
    };
    step();
  });
}

/**
 * Reads up to buf.length bytes at `position`, looping over partial reads; resolves with the
 * bytes read, fewer only at the end of the file. Fails with IO naming the file.
 */
export function readAt(f: StoreFile | number, buf: Uint8Array, position: number, path = ''): Promise<number> {
  const fd = typeof f === 'number' ? f : f.fd;
  const file = typeof f === 'number' ? path : f.path;
  return new Promise((resolve, reject) => {
    const { fault, code } = decideRead(file, position);
    if (fault === ReadFault.Eio) {
      reject(fromSystemError(injected('read', file, code), `reading ${file} at offset ${position}`));
      return;
    }
    if (fault === ReadFault.Eof) {
      resolve(0);
      return;
    }
    let done = 0;
    const step = (): void => {
      const want = buf.length - done;
      const ask = fault === ReadFault.Short && want > 1 ? want >>> 1 : want;
      fs.read(fd, buf, done, ask, position + done, (err, n) => {
        if (err) return reject(fromSystemError(err, `reading ${file} at offset ${position + done}`));
        done += n;
        if (n === 0 || done >= buf.length) resolve(done);
        else step();
      });
    };
    step();
  });
}

/**
 * readAt that must fill buf: a file that ends first is CORRUPT_CONTAINER naming the file and
 * the bytes missing, so a short read is never taken as data.
 */
export async function readFull(f: StoreFile | number, buf: Uint8Array, position: number, path = ''): Promise<void> {
  const n = await readAt(f, buf, position, path);
  if (n < buf.length) {
    const file = typeof f === 'number' ? path : f.path;
    throw vmError('CORRUPT_CONTAINER', `${file}: only ${n} of ${buf.length} bytes at offset ${position}: the file ends before its records do`, { path: file, offset: position });
  }
}

export function readAtSync(fd: number, buf: Uint8Array, position: number, path = ''): number {
  const { fault, code } = decideRead(path, position);
  if (fault === ReadFault.Eio) throw fromSystemError(injected('read', path, code), `reading ${path} at offset ${position}`);
  if (fault === ReadFault.Eof) return 0;
  let done = 0;
  while (done < buf.length) {
    const want = buf.length - done;
    const n = fs.readSync(fd, buf, done, fault === ReadFault.Short && want > 1 ? want >>> 1 : want, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

export function fsyncFile(f: StoreFile): Promise<void> {
  return new Promise((resolve, reject) => {
    try {
      check('fsync', f.path);
    } catch (e) {
      reject(e);
      return;
    }
    fs.fsync(f.fd, (err) => (err ? reject(err) : resolve()));
  });
}

export async function truncateFile(f: StoreFile, size: number): Promise<void> {
  check('truncate', f.path);
  await new Promise<void>((res, rej) => fs.ftruncate(f.fd, size, (e) => (e ? rej(e) : res())));
}

export async function fsyncDir(path: string): Promise<void> {
  check('fsync', path);
  const h = await fsp.open(path, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

export async function renameFile(from: string, to: string): Promise<void> {
  check('rename', to);
  await fsp.rename(from, to);
}

export async function fileSize(f: StoreFile): Promise<number> {
  return new Promise((res, rej) => fs.fstat(f.fd, (e, st) => (e ? rej(e) : res(st.size))));
}
