// Restore to an NBD target (issue 11): each disk of a point is written over NBD into an export a
// hypervisor or storage system serves (qemu-nbd, qemu-storage-daemon, QEMU's own NBD server
// with a writable export, nbdkit), instead of into files in a directory. The target is an NBD
// URI; a VM with several disks names `{device}` in it (e.g. `nbd+unix:///{device}?socket=
// /run/restore.sock`) and each disk goes to its own export.
//
// Every byte of the export up to the disk's size is written: the point's data as data, the
// rest (the file's holes, and zero runs inside data) as NBD_CMD_WRITE_ZEROES, since the export
// may hold anything before. The export must be at least the disk's size; bytes past it are left
// as they are (and the job log says so). A flush ends each disk. Unlike a directory restore,
// nothing can be taken back on failure: the job fails naming the disk and how far it got.

import type { Namespace } from '../namespace/namespace.js';
import type { ReadRescue } from '../namespace/damage.js';
import { isVmvaultError, vmError } from '../errors.js';
import { NbdClient } from '../plugins/qemu/nbd-client.js';
import { describeNbdTarget, looksLikeNbdUri, type NbdTarget, parseNbdUri } from '../plugins/qemu/nbd-uri.js';
import { isZero } from './disk-copy.js';
import { forEachDataChunk, type PointFile, pointFile, type PointSource, primaryFile } from './restore.js';

export { looksLikeNbdUri };

/**
 * Checks an NBD target URI as far as it can be without the point: it parses (with `{device}`
 * standing for a device name). Returns the sockets it names, for the caller's own checks.
 */
export function checkNbdUri(uri: string): { sockets: string[] } {
  const t = parseNbdUri(uri.split('{device}').join('vda'));
  return { sockets: t.socket ? [t.socket] : [] };
}

/** Zeros are recognised (and sent as write-zeroes) at this granularity. */
const ZERO_BLOCK = 64 * 1024;

/** The NBD target of each device, from a URI (with `{device}` when there is more than one disk). */
export function nbdTargets(uri: string, devices: string[]): Map<string, NbdTarget> {
  if (devices.length > 1 && !uri.includes('{device}')) {
    throw vmError(
      'INVALID_ARGUMENT',
      `this point has ${devices.length} disks (${devices.join(', ')}): name {device} in the NBD URI so each disk goes to its own export, e.g. nbd+unix:///{device}?socket=/run/restore.sock`,
    );
  }
  const out = new Map<string, NbdTarget>();
  for (const d of devices) out.set(d, parseNbdUri(uri.split('{device}').join(encodeURIComponent(d))));
  return out;
}

export interface NbdRestoreOptions {
  signal?: AbortSignal;
  advance?: (n: number) => void;
  log?: (line: string) => void;
  /** Bytes per namespace read. Default 4 MiB. */
  chunkBytes?: number;
  /** Reads in flight. Default 4. */
  inFlight?: number;
  timeoutMs?: number;
  /** Another copy's segments for damage met on the way, as the restore to files takes it (restore.ts). */
  rescue?: ReadRescue;
  /** Read the point from this copy instead of the primary (which does not hold it). */
  source?: PointSource;
}

/** Writes the namespace file `from` over the whole of [0, size) of the export `target`. */
export async function restoreFileToNbd(ns: Namespace, from: string, target: NbdTarget, opts: NbdRestoreOptions = {}): Promise<number> {
  return writeToNbd(await primaryFile(ns, from, opts.rescue), from, target, opts);
}

/** Writes `file` (named `from` in errors) over the whole of [0, size) of the export; closes `file`. */
async function writeToNbd(file: PointFile, from: string, target: NbdTarget, opts: NbdRestoreOptions): Promise<number> {
  const chunk = opts.chunkBytes ?? 4 << 20;
  const inFlight = opts.inFlight ?? 4;
  const where = describeNbdTarget(target);
  const size = file.size;
  let nbd: NbdClient | undefined;
  try {
    nbd = await NbdClient.connect({ ...target, timeoutMs: opts.timeoutMs });
    if (!nbd.writable) throw vmError('READ_ONLY', 'the export is read-only; export it writable');
    if (nbd.size < size) {
      throw vmError('INVALID_ARGUMENT', `the export holds ${nbd.size} bytes, the disk ${size}: make the export at least the disk's size`);
    }
    if (nbd.size > size) opts.log?.(`${where} is ${nbd.size - size} bytes larger than the disk; those bytes are left as they are`);
    // The file's holes (never stored) become zeros on the target in one request each.
    const ranges = await file.dataRanges();
    let at = 0;
    for (const r of ranges) {
      if (r.start > at) await nbd.writeZeroes(at, r.start - at);
      opts.advance?.(r.start - at);
      at = r.end;
    }
    if (size > at) await nbd.writeZeroes(at, size - at);
    opts.advance?.(size - at);
    // The data runs, in chunks, several in flight.
    const n = nbd;
    // One read buffer per read in flight, reused (as restore.ts does): fresh 4 MiB buffers cost
    // page faults and GC time. A write's promise resolves on the server's reply: done with it.
    const free: Buffer[] = [];
    await forEachDataChunk(ranges, chunk, inFlight, opts.signal, async (pos, len) => {
      const own = free.pop() ?? Buffer.allocUnsafeSlow(chunk);
      const buf = await file.read(pos, len, own);
      if (buf.length !== len) throw vmError('IO', `${from}: read ${buf.length} bytes at ${pos}, expected ${len}`);
      await writeRuns(n, buf, pos);
      free.push(own);
      opts.advance?.(len);
    });
    await nbd.flush();
    return size;
  } catch (err) {
    if (isVmvaultError(err)) throw vmError(err.code, `restoring ${from} to NBD ${where}: ${err.message}`, err.details);
    throw vmError('IO', `restoring ${from} to NBD ${where}: ${(err as Error).message}`);
  } finally {
    await file.close();
    await nbd?.close().catch(() => undefined);
  }
}

/** Writes `buf` at `at`: its non-zero runs as data, its zero runs (ZERO_BLOCK steps) as write-zeroes. */
async function writeRuns(nbd: NbdClient, buf: Buffer, at: number): Promise<void> {
  const block = (i: number) => buf.subarray(i, Math.min(i + ZERO_BLOCK, buf.length));
  const parts: Promise<void>[] = [];
  let i = 0;
  while (i < buf.length) {
    const zero = isZero(block(i));
    let j = i + ZERO_BLOCK;
    while (j < buf.length && isZero(block(j)) === zero) j += ZERO_BLOCK;
    const end = Math.min(j, buf.length);
    parts.push(zero ? nbd.writeZeroes(at + i, end - i) : nbd.write(at + i, buf.subarray(i, end)));
    i = end;
  }
  await Promise.all(parts);
}

/** Writes every disk of `/<share>/.snapshots/<point>/` to its NBD target. Returns the targets, in order. */
export async function restorePointToNbd(
  ns: Namespace,
  share: string,
  point: string,
  devices: string[],
  uri: string,
  opts: NbdRestoreOptions,
): Promise<string[]> {
  const targets = nbdTargets(uri, devices);
  const out: string[] = [];
  for (const d of devices) {
    const t = targets.get(d)!;
    const file = await pointFile(ns, share, point, `${d}.raw`, opts);
    await writeToNbd(file, opts.source ? `${d}.raw of ${opts.source.name}` : `/${share}/.snapshots/${point}/${d}.raw`, t, opts);
    out.push(`${d} -> nbd ${describeNbdTarget(t)}`);
    opts.log?.(`${d}: written to ${describeNbdTarget(t)}`);
  }
  return out;
}
