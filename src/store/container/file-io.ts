// Every file-system call of the store goes through this module. It is the fault seam: tests
// install a FaultPlan to make the Nth write, fsync or read fail (ENOSPC, EIO) or write short,
// without a special disk (kopia's FaultyStorage, restic's failing backend wrappers).

import fs from 'node:fs';
import fsp from 'node:fs/promises';

export type FaultOp = 'write' | 'fsync' | 'read' | 'open' | 'rename' | 'truncate';

export interface FaultPlan {
  /** Return an errno code to fail this call with, or undefined to let it through. */
  decide(op: FaultOp, path: string): string | undefined;
}

let plan: FaultPlan | undefined;

/** Tests only: install (or with undefined, remove) a fault plan. */
export function setFaultPlan(p: FaultPlan | undefined): void {
  plan = p;
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

export function readAt(f: StoreFile | number, buf: Uint8Array, position: number, path = ''): Promise<number> {
  const fd = typeof f === 'number' ? f : f.fd;
  return new Promise((resolve, reject) => {
    try {
      check('read', typeof f === 'number' ? path : f.path);
    } catch (e) {
      reject(e);
      return;
    }
    let done = 0;
    const step = (): void => {
      fs.read(fd, buf, done, buf.length - done, position + done, (err, n) => {
        if (err) return reject(err);
        done += n;
        if (n === 0 || done >= buf.length) resolve(done);
        else step();
      });
    };
    step();
  });
}

export function readAtSync(fd: number, buf: Uint8Array, position: number, path = ''): number {
  check('read', path);
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, position + done);
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
