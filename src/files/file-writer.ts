// A large file written chunk by chunk by a thread of its own, with O_DIRECT where the file
// system takes it, all-zero 64 KiB blocks left as holes: the addon's file writer
// (native/src/file_writer.c), for a writer that ends with fsync because "done" means durable
// (a restore). Why (tools/PERFORMANCE.md, restore7): a restore is bound by its writes; on the
// libuv pool each write waited behind the reads' decode jobs and then for this thread to issue
// the next, and a buffered write copies every byte into the page cache (the largest CPU cost of
// a cold 460 MiB restore) for the flusher and the final fsync to write out later.
//
// Direct writes need the memory, the file offset and the length aligned to the logical block:
// `alignedBuffer` gives memory aligned to FILE_WRITER_ALIGN (4 KiB, a multiple of the 512 and
// 4096-byte blocks in use); a chunk whose position and length are multiples of it is written
// directly, what is not (a file's last partial block) the ordinary way, followed by
// sync_file_range's start of its disk writes. A file system that refuses O_DIRECT at open or at
// a write (EINVAL) is written the ordinary way throughout.
//
// Durability is unchanged: a direct write that returned may sit in the device's volatile cache
// and the blocks it allocated are journaled only at fsync; the caller's fsync (of any
// descriptor of the file: fsync is per file) is what makes them durable, as for buffered ones.
//
// Without the addon (or VMVAULT_NO_NATIVE=1) `openFileWriter` gives undefined: the caller
// writes the ordinary way itself.

import fs from 'node:fs/promises';
import { constants } from 'node:fs';
import os from 'node:os';
import { filesAddon } from './native-addon.js';

/** What direct writes are aligned to (memory, offset, length). */
export const FILE_WRITER_ALIGN = 4096;

interface Addon {
  addressAlignment(buf: Uint8Array, align: number): number;
  fileWriterOpen(directFd: number, plainFd: number, onDone: (id: number, errno: number, direct: number, plain: number) => void): object;
  fileWriterWrite(w: object, buf: Uint8Array, position: number, id: number): void;
  fileWriterClose(w: object, onClosed: () => void): void;
}

const addon = typeof filesAddon?.fileWriterOpen === 'function' && typeof filesAddon.addressAlignment === 'function' ? (filesAddon as unknown as Addon) : undefined;

/** Whether openFileWriter gives a writer here (the addon is built with it). */
export const fileWriterAvailable = addon !== undefined;

/**
 * `size` bytes whose memory starts on a FILE_WRITER_ALIGN boundary (with the addon; else an
 * ordinary buffer, which the writer would write the ordinary way). Not from Node's pool.
 */
export function alignedBuffer(size: number): Buffer {
  if (!addon) return Buffer.allocUnsafeSlow(size);
  const raw = Buffer.allocUnsafeSlow(size + FILE_WRITER_ALIGN);
  const off = addon.addressAlignment(raw, FILE_WRITER_ALIGN);
  return raw.subarray(off, off + size);
}

export interface FileWriter {
  /**
   * Writes `buf` at `position` (its all-zero 64 KiB blocks, counted from its start, skipped:
   * the file must read as zeros there already, a truncated new file). Writes run one at a time
   * in the order asked. `buf` must stay unchanged until this settles. After a failed write,
   * every later one fails with the same error, unwritten.
   */
  write(buf: Buffer, position: number): Promise<void>;
  /** Waits for the writes asked, then stops the thread and closes the direct descriptor. */
  close(): Promise<void>;
  /** Bytes written directly and the ordinary way so far (zero blocks skipped count in neither). */
  readonly written: { direct: number; plain: number };
}

/**
 * A writer of the file `file`, already open for writing as `plain` (which stays the caller's:
 * its fsync, truncate and close). `direct: false`: ordinary writes only (comparisons).
 * undefined without the addon.
 */
export async function openFileWriter(file: string, plain: fs.FileHandle, opts: { direct?: boolean } = {}): Promise<FileWriter | undefined> {
  const a = addon;
  if (!a) return undefined;
  const wantDirect = opts.direct !== false && typeof constants.O_DIRECT === 'number' && process.env.VMVAULT_DIRECT_IO !== '0';
  // EINVAL (no O_DIRECT on this file system) or anything else: the ordinary descriptor alone.
  const direct = wantDirect ? await fs.open(file, constants.O_WRONLY | constants.O_DIRECT).catch(() => undefined) : undefined;
  const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void; position: number }>();
  const written = { direct: 0, plain: 0 };
  let next = 0;
  let w: object;
  try {
    w = a.fileWriterOpen(direct?.fd ?? -1, plain.fd, (id, errno, d, p) => {
      const job = pending.get(id);
      if (!job) return;
      pending.delete(id);
      written.direct += d;
      written.plain += p;
      if (errno === 0) job.resolve();
      else job.reject(errnoError(errno, `writing ${file} at ${job.position}`));
    });
  } catch (err) {
    await direct?.close();
    throw err;
  }
  let closed: Promise<void> | undefined;
  return {
    written,
    write(buf, position) {
      if (closed) return Promise.reject(new Error(`the writer of ${file} is closed`));
      return new Promise<void>((resolve, reject) => {
        const id = next++;
        pending.set(id, { resolve, reject, position });
        a.fileWriterWrite(w, buf, position, id);
      });
    },
    close() {
      closed ??= new Promise<void>((resolve) => a.fileWriterClose(w, resolve)).then(() => direct?.close());
      return closed;
    },
  };
}

const errnoNames = new Map(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

/** An Error as Node's fs gives them (code, errno, syscall), so fromSystemError maps it. */
function errnoError(errno: number, what: string): NodeJS.ErrnoException {
  const code = errnoNames.get(errno) ?? `errno ${errno}`;
  return Object.assign(new Error(`${code}: ${what}`), { code, errno: -errno, syscall: 'pwrite' });
}
