// A full copy of one disk: every byte of the export, in order, into one stream of the share's
// file (Namespace.stream), the path the store's own ingest of a raw image takes. Reads are
// several in flight and may complete out of order; each waits until the bytes before it are in
// the stream, so what is held is bounded by the reads in flight, and the stream's writer holds
// its few batches. Zero extents (base:allocation) are never read: a long run goes in as a zero
// run (nothing materialised), a short one (< SHORT_ZEROS) as zero bytes, as an ingest of the
// raw file feeds it, because a zero run first waits for every cut in flight.

import { vmError } from '../errors.js';
import type { Namespace } from '../namespace/namespace.js';
import { STATE_ZERO } from '../plugins/qemu/nbd-extents.js';
import { AllocationCursor } from './allocation-cursor.js';
import type { CopyOptions, CopyResult, ExtentSource } from './disk-copy.js';

/** Zero extents shorter than this are written as zero bytes (see the header). */
const SHORT_ZEROS = 1024 * 1024;
const ZEROS = Buffer.alloc(SHORT_ZEROS);

interface Pending {
  length: number;
  /** The bytes read, or null for a zero extent. */
  bufs: Buffer[] | null;
  /** bufs came from src.readv (and go back with src.release once written). */
  fromReadv: boolean;
  done: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Copies all of `src` into the open namespace file `fh` (sized to `src.size`), replacing its
 * content at the end; on failure the file keeps what it held. Throws CANCELLED when the
 * signal aborts.
 */
export async function copyFull(ns: Namespace, fh: number, src: ExtentSource, opts: CopyOptions): Promise<CopyResult> {
  const inFlight = opts.inFlight ?? 8;
  const chunk = opts.chunkBytes ?? 256 * 1024;
  const result: CopyResult = { bytesRead: 0, bytesWritten: 0, bytesConsidered: src.size };
  const stream = ns.stream(fh);
  const running = new Set<Promise<void>>();
  const ready = new Map<number, Pending>();
  let failure: unknown;

  /** The first failure stops the copy: every read waiting for its turn is let go with it. */
  const fail = (err: unknown) => {
    failure ??= err;
    for (const p of ready.values()) p.reject(failure);
    ready.clear();
  };
  const checkAbort = () => {
    if (failure !== undefined) throw failure;
    if (opts.signal?.aborted) throw vmError('CANCELLED', 'the backup was cancelled while copying');
  };

  /** Feeds the stream whatever is ready at its end, in order. Never rejects (see fail). */
  const feedReady = async () => {
    for (let p = ready.get(stream.offset); p && failure === undefined; p = ready.get(stream.offset)) {
      ready.delete(stream.offset);
      try {
        if (p.bufs === null) {
          if (p.length < SHORT_ZEROS) await stream.write(ZEROS.subarray(0, p.length));
          else await stream.writeZeros(p.length);
        } else {
          for (const b of p.bufs) await stream.write(b);
          // The stream copied them (TreeWriter.write: reusable once resolved): the NBD client
          // may reuse their receive slab instead of allocating a fresh one.
          if (p.fromReadv) src.release?.(p.bufs);
          result.bytesWritten += p.length;
        }
        p.resolve();
      } catch (err) {
        p.reject(err);
        fail(err);
      }
    }
  };
  let pumping: Promise<void> = Promise.resolve();
  const pump = () => (pumping = pumping.then(feedReady));

  /** Queues [offset, offset + length) for the stream; the promise settles once it is in. */
  const queue = (offset: number, length: number, bufs: Buffer[] | null, fromReadv = false): Promise<void> => {
    if (failure !== undefined) return Promise.reject(failure);
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    ready.set(offset, { length, bufs, fromReadv, done, resolve, reject });
    void pump();
    return done;
  };

  const launch = async (task: () => Promise<void>) => {
    while (running.size >= inFlight) await Promise.race(running);
    checkAbort();
    const p: Promise<void> = task()
      .catch(fail)
      .finally(() => running.delete(p));
    running.add(p);
  };

  const copyData = async (offset: number, length: number) => {
    for (let at = offset; at < offset + length; at += chunk) {
      const len = Math.min(chunk, offset + length - at);
      await launch(async () => {
        const bufs = await readExactly(src, at, len);
        result.bytesRead += len;
        opts.advance?.(len);
        // The read's buffers are copied into the stream's slabs once it is their turn.
        await queue(at, len, bufs, src.readv !== undefined);
      });
    }
  };

  const allocation = new AllocationCursor(src);
  let ok = false;
  try {
    try {
      for await (const e of allocation.over({ offset: 0, length: src.size })) {
        checkAbort();
        if (e.flags & STATE_ZERO) queue(e.offset, e.length, null).catch(() => {});
        else await copyData(e.offset, e.length);
      }
      await Promise.all(running);
      await pump();
      checkAbort();
      if (stream.offset !== src.size) throw vmError('IO', `the copy of a ${src.size}-byte disk ended at ${stream.offset}`);
      await stream.finish();
      ok = true;
    } catch (err) {
      fail(err);
      throw err;
    }
  } finally {
    // Never leave reads or writes running past the return (their bytes would land after a release).
    await Promise.allSettled(running);
    await pumping;
    await allocation.close();
    if (!ok) await stream.abort();
  }
  return result;
}

/** The source's bytes [at, at+len) as its read gives them (views where it has readv), or IO if it gave fewer. */
export async function readExactly(src: ExtentSource, at: number, len: number): Promise<Buffer[]> {
  const bufs = src.readv ? await src.readv(at, len) : [await src.read(at, len)];
  let got = 0;
  for (const b of bufs) got += b.length;
  if (got !== len) throw vmError('IO', `NBD read at ${at} returned ${got} bytes, not ${len}`);
  return bufs;
}
