// Copies one disk from a block-status-capable source (the NBD export of a fleecing node) into a
// share's sparse raw file through the namespace, never through the mount.
//
// What is read: a full copy reads every extent base:allocation does not report as zero, in
// order, into one stream of the file (disk-copy-full.ts); an incremental reads only the extents
// the dirty bitmap marks (and, of those, only the ones that are not zero) and writes them at
// their offsets. A dirty extent that became zero must overwrite the old bytes, so zeros are
// written (the store keeps an all-zero segment for free). An incremental's memory is bounded
// by `inFlight` x `chunkBytes` plus `maxBufferedBytes` of the file's own buffered writes (the
// copy waits for the file's commit past it); a full copy's by the reads in flight and its
// stream's batches: a disk is streamed, never held.

import { vmError } from '../errors.js';
import type { Namespace } from '../namespace/namespace.js';
import { extents, STATE_DIRTY, STATE_ZERO } from '../plugins/qemu/nbd-extents.js';
import { AllocationCursor } from './allocation-cursor.js';
import { copyFull, readExactly } from './disk-copy-full.js';

// The block-status bits and walk live with the NBD client (plugins/qemu/nbd-extents.ts), which
// the agent's NBD source reads through too.
export { BASE_ALLOCATION, STATE_DIRTY, STATE_HOLE, STATE_ZERO } from '../plugins/qemu/nbd-extents.js';

/** What the copy needs of an NBD client (src/plugins/qemu/nbd-client.ts's NbdClient has it). */
export interface ExtentSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /** Optional: the same bytes as several buffers in order, as they arrived (no copy into one). */
  readv?(offset: number, length: number): Promise<Buffer[]>;
  /** Optional: readv's buffers were copied and are not touched again (NbdClient.release). */
  release?(bufs: Buffer[]): void;
  blockStatus(offset: number, length: number, context: string): Promise<Array<{ offset: number; length: number; flags: number }>>;
}

export interface CopyOptions {
  /** `qemu:dirty-bitmap:NAME`: copy only what it marks dirty (the file must hold the previous point). */
  dirtyContext?: string;
  signal?: AbortSignal;
  /** Called with each count of bytes read from the source. */
  advance?: (n: number) => void;
  /** Reads in flight at once. Default 8 (x 256 KiB = the NBD client's own 2 MiB in-flight cap). */
  inFlight?: number;
  /**
   * Largest single read. Default 256 KiB: measured here against qemu-nbd, 256 KiB x 16 in flight
   * read 160-176 MB/s where 1 MiB x 8 read 26-37 MB/s; the NBD client's bench found 256 KiB with
   * 2 MiB in flight steady against QEMU's own server (tools/PERFORMANCE.md, NBD client).
   */
  chunkBytes?: number;
  /**
   * Most bytes the file may buffer (dirty plus being committed) before the copy waits for its
   * commit. Default 128 MiB: with several NBD connections data arrives faster than the store
   * commits it, and without this cap the namespace buffers up to its 512 MiB dirty limit
   * (613 MiB RSS measured with 4 connections); twice the namespace's 64 MiB per-file commit
   * threshold keeps one commit running while the next 64 MiB arrive.
   */
  maxBufferedBytes?: number;
}

export interface CopyResult {
  /** Bytes read from the source (what NBD carried). */
  bytesRead: number;
  /** Bytes handed to the namespace (zeros of an incremental included). */
  bytesWritten: number;
  /** Bytes of the disk the dirty bitmap marked (incremental) or the whole size (full). */
  bytesConsidered: number;
}

interface Range {
  offset: number;
  length: number;
}

const ZEROS = Buffer.alloc(1 << 20);

/** Whether `buf` is all zeros: memcmp against a zero buffer (native speed), a MiB at a time. */
function isZero(buf: Buffer): boolean {
  for (let at = 0; at < buf.length; at += ZEROS.length) {
    const n = Math.min(ZEROS.length, buf.length - at);
    if (!buf.subarray(at, at + n).equals(ZEROS.subarray(0, n))) return false;
  }
  return true;
}

/**
 * Copies `src` into the open namespace file `fh` (already sized to `src.size`; for a full copy
 * freshly emptied, for an incremental holding the previous point). Returns the byte counts. Throws CANCELLED when `signal` aborts.
 */
export async function copyDisk(ns: Namespace, fh: number, src: ExtentSource, opts: CopyOptions = {}): Promise<CopyResult> {
  // A full copy has every byte in order: one stream into the file (disk-copy-full.ts).
  if (opts.dirtyContext === undefined) return copyFull(ns, fh, src, opts);
  const inFlight = opts.inFlight ?? 8;
  const chunk = opts.chunkBytes ?? 256 * 1024;
  const maxBuffered = opts.maxBufferedBytes ?? 128 * 1024 * 1024;
  const result: CopyResult = { bytesRead: 0, bytesWritten: 0, bytesConsidered: 0 };
  const running = new Set<Promise<void>>();
  let failure: unknown;

  const checkAbort = () => {
    if (failure !== undefined) throw failure;
    if (opts.signal?.aborted) throw vmError('CANCELLED', 'the backup was cancelled while copying');
  };

  const launch = async (task: () => Promise<void>) => {
    while (running.size >= inFlight) await Promise.race(running);
    checkAbort();
    const p: Promise<void> = task()
      .catch((err) => {
        if (failure === undefined) failure = err;
      })
      .finally(() => running.delete(p));
    running.add(p);
  };

  const copyData = async (r: Range) => {
    for (let at = r.offset; at < r.offset + r.length; at += chunk) {
      const len = Math.min(chunk, r.offset + r.length - at);
      await launch(async () => {
        const bufs = await readExactly(src, at, len);
        result.bytesRead += len;
        opts.advance?.(len);
        // The read's buffers are fresh and never touched again: handed over, not copied. Each
        // byte is written once, so the file commits in stream steps behind the copy (`once`).
        let pos = at;
        for (const b of bufs) {
          await ns.write(fh, pos, b, { owned: true, once: true });
          pos += b.length;
        }
        result.bytesWritten += len;
        await ns.drain(fh, maxBuffered);
      });
    }
  };

  const writeZeros = async (r: Range) => {
    for (let at = r.offset; at < r.offset + r.length; at += ZEROS.length) {
      checkAbort();
      const len = Math.min(ZEROS.length, r.offset + r.length - at);
      await ns.write(fh, at, ZEROS.subarray(0, len), { once: true });
      result.bytesWritten += len;
      await ns.drain(fh, maxBuffered);
    }
  };

  /** Copies [r): zero extents written as zeros, data read. */
  const allocation = new AllocationCursor(src);
  const copyRange = async (r: Range) => {
    for await (const e of allocation.over(r)) {
      checkAbort();
      if (e.flags & STATE_ZERO) {
        await writeZeros(e);
      } else {
        await copyData(e);
      }
    }
  };

  try {
    for await (const e of extents(src, opts.dirtyContext, 0, src.size)) {
      checkAbort();
      if (!(e.flags & STATE_DIRTY)) continue;
      result.bytesConsidered += e.length;
      await copyRange(e);
    }
    await Promise.all(running);
    checkAbort();
  } finally {
    // Never leave reads running past the return (their writes would land after a release).
    await Promise.allSettled(running);
    await allocation.close();
  }
  return result;
}

export { isZero };

/**
 * Several connections to one NBD export read as one source: reads go round-robin, block status
 * to the first. QEMU's NBD server advertises multi-conn for a read-only export, so the
 * connections see the same bytes; nbdcopy reads with 4 and was measured well ahead of one
 * connection (tools/PERFORMANCE.md, NBD client).
 */
export class SourcePool implements ExtentSource {
  private next = 0;

  constructor(private readonly sources: ExtentSource[]) {
    if (sources.length === 0) throw vmError('INVALID_ARGUMENT', 'a source pool needs at least one source');
    this.readv = sources.every((s) => s.readv)
      ? (offset, length) => {
          const s = this.sources[this.next];
          this.next = (this.next + 1) % this.sources.length;
          return s.readv!(offset, length);
        }
      : undefined;
  }

  get size(): number {
    return this.sources[0].size;
  }

  read(offset: number, length: number): Promise<Buffer> {
    const s = this.sources[this.next];
    this.next = (this.next + 1) % this.sources.length;
    return s.read(offset, length);
  }

  blockStatus(offset: number, length: number, context: string): Promise<Array<{ offset: number; length: number; flags: number }>> {
    return this.sources[0].blockStatus(offset, length, context);
  }

  /** Each connection takes back only views of its own receive slabs and ignores the rest. */
  release(bufs: Buffer[]): void {
    for (const s of this.sources) s.release?.(bufs);
  }

  /** Defined only when every source has readv (see ExtentSource). */
  readonly readv: ((offset: number, length: number) => Promise<Buffer[]>) | undefined;
}
