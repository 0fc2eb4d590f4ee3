// Where a fleece's scratch images and its NBD socket live (issue 13): on QEMU's host, since QEMU
// opens them. The appliance's own VMs use LocalScratch (qemu-img in <data>/scratch/<vm>/); a VM on
// a host uses backup/host-scratch.ts, which asks that host's agent (host requests scratch-create
// and scratch-remove), so nothing QEMU touches needs a folder shared with the appliance.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { vmError } from '../../errors.js';

export interface FleeceScratch {
  /** For logs: where the scratch work is done. */
  readonly where: string;
  /** Makes a qcow2 scratch image of exactly sizeBytes for `device`; its path on QEMU's host. */
  create(device: string, sizeBytes: number): Promise<string>;
  /** Removes one scratch image (one create() made, or one a killed run left in QEMU). Missing: done. */
  remove(file: string): Promise<void>;
  /** Removes everything of this VM's scratch (stale files of a killed run, the socket). */
  clear(): Promise<void>;
  /** The NBD server's UNIX socket on QEMU's host (after a create(): a host's agent names its folder). */
  socketPath(): string;
}

/** A scratch image's name as Fleece.removeStale recognises it (never anything else is removed). */
export const SCRATCH_FILE = /^fleece-[0-9a-f]{6}-[A-Za-z0-9_.-]{1,64}\.qcow2$/;

/** The file name of a new scratch image for `device`. */
export function scratchFileName(device: string): string {
  return `fleece-${randomBytes(3).toString('hex')}-${device.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64)}.qcow2`;
}

/** The scratch of a VM whose QEMU runs on this machine: `dir` (<data>/scratch/<vm>). */
export class LocalScratch implements FleeceScratch {
  constructor(readonly dir: string) {}

  get where(): string {
    return `local ${this.dir}`;
  }

  async create(device: string, sizeBytes: number): Promise<string> {
    await fs.mkdir(this.dir, { recursive: true });
    const file = path.join(this.dir, scratchFileName(device));
    await qemuImgCreate(file, sizeBytes);
    return file;
  }

  async remove(file: string): Promise<void> {
    await fs.rm(file, { force: true });
  }

  async clear(): Promise<void> {
    await fs.rm(this.dir, { recursive: true, force: true });
  }

  socketPath(): string {
    return path.join(this.dir, 'nbd.sock');
  }
}

/**
 * Makes an empty qcow2 image of `sizeBytes` at `file`. qemu-img runs once per size in this
 * process; later images of that size are its bytes written again (qemu-img's empty image of a
 * size is the same bytes every time: no UUID, no time in a qcow2 header). Spawning qemu-img was
 * 30-130 ms of every backup's fixed cost on this machine (load 8-14), as much as the rest of the
 * preparation together; writing the ~200 KiB is a millisecond.
 */
export async function qemuImgCreate(file: string, sizeBytes: number): Promise<void> {
  let made = emptyImages.get(sizeBytes);
  if (!made) {
    made = emptyImageOf(file, sizeBytes);
    emptyImages.set(sizeBytes, made);
    // A failure is reported to this caller and tried again by the next one.
    made.catch(() => emptyImages.delete(sizeBytes));
    if (emptyImages.size > MAX_EMPTY_IMAGES) emptyImages.delete(emptyImages.keys().next().value!);
    // This caller's image is the one qemu-img made.
    await made;
    return;
  }
  const bytes = await made;
  if (bytes === undefined) return runQemuImgCreate(file, sizeBytes);
  await fs.writeFile(file, bytes, { flag: 'wx' });
}

/** Sizes whose empty image is kept (a VM's disks have a few sizes; an appliance backs up some VMs). */
const MAX_EMPTY_IMAGES = 64;
/** Larger empty images (the tables of disks of many TiB) are not kept: qemu-img makes each. */
const MAX_EMPTY_IMAGE_BYTES = 4 * 1024 * 1024;
const emptyImages = new Map<number, Promise<Buffer | undefined>>();

/** qemu-img's empty image of `sizeBytes`, made at `file` (and left there), and its bytes when small. */
async function emptyImageOf(file: string, sizeBytes: number): Promise<Buffer | undefined> {
  await runQemuImgCreate(file, sizeBytes);
  const st = await fs.stat(file);
  return st.size <= MAX_EMPTY_IMAGE_BYTES ? fs.readFile(file) : undefined;
}

function runQemuImgCreate(file: string, sizeBytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('qemu-img', ['create', '-q', '-f', 'qcow2', file, String(sizeBytes)], { timeout: 60_000 }, (err, _out, stderr) => {
      if (!err) return resolve();
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') reject(vmError('NOT_SUPPORTED', 'fleece: qemu-img is not installed (Debian package qemu-utils)', undefined, err));
      else reject(vmError('IO', `fleece: qemu-img create ${file} ${sizeBytes}: ${String(stderr).trim() || e.message}`, undefined, err));
    });
  });
}
