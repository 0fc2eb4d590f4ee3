// Restore: every disk of a restore point, out of its snapshot through the namespace (never the
// mount), into a directory as a sparse raw file or a qcow2, plus vm.json.
//
// qcow2 is made by writing the sparse raw beside the target and `qemu-img convert`ing it: qemu-img
// needs a file it can seek in, and writing raw is what we do anyway (see tools/PERFORMANCE.md for
// the cost). Each file is written under a `.partial` name and renamed when complete, so a failed
// or cancelled restore leaves nothing that looks like a disk.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { fromSystemError, vmError } from '../errors.js';
import type { Namespace } from '../namespace/namespace.js';
import { fsyncPath, mkdirDurable } from '../files/durable.js';
import { startWriteback } from '../files/writeback.js';
import { alignedBuffer, FILE_WRITER_ALIGN, type FileWriter, openFileWriter } from '../files/file-writer.js';
import type { ReadRescue } from '../namespace/damage.js';
import { isZero } from './disk-copy.js';

const run = promisify(execFile);

export interface RestoreOptions {
  format: 'raw' | 'qcow2';
  signal?: AbortSignal;
  advance?: (n: number) => void;
  /** Bytes per read. Default 4 MiB. */
  chunkBytes?: number;
  /** Reads in flight. Default 4. */
  inFlight?: number;
  /**
   * Another copy's segments for damage met on the way (policy/best-copy.ts): a damaged
   * segment is read from there, the rest from the primary, without starting over.
   */
  rescue?: ReadRescue;
  /** Read the point from this copy instead of the primary (which does not hold it). */
  source?: PointSource;
  /**
   * Starts the disk writes of a range of the target just written (default: files/writeback.ts,
   * sync_file_range), on the pool path only (`writer: 'pool'`, or no addon): the writer thread
   * writes directly, or starts its own. Tests pass their own to see what is handed to it.
   */
  startWriteback?: (fd: number, offset: number, length: number) => Promise<void>;
  /**
   * How the target is written: 'thread' (default where the addon has it), by the addon's
   * writer thread, O_DIRECT where the file system takes it (files/file-writer.ts); 'pool',
   * buffered writes on the libuv pool with startWriteback (the restore before restore7).
   */
  writer?: 'thread' | 'pool';
  /** Whether the writer thread may write directly (default true); for comparisons. */
  direct?: boolean;
  /** Told, once a file is written, how its bytes were written (tests, benches). */
  written?: (stats: { direct: number; plain: number }) => void;
}

/** One file of a point as a restore reads it: its size, where its data is, its bytes. */
export interface PointFile {
  readonly size: number;
  /** The [start, end) runs that hold data, ascending; the rest reads as zeros. */
  dataRanges(): Promise<Array<{ start: number; end: number }>>;
  /**
   * Optional: the runs within [from, to) only, clipped to it, from a walk of just that part
   * (a restore walks the next window while it copies this one, instead of all before any copy).
   */
  dataRangesIn?(from: number, to: number): Promise<Array<{ start: number; end: number }>>;
  /**
   * Bytes [pos, pos + len), all of them (within the size). `into`, if given, may be used to
   * hold them (the result is then a view of it): the restore reuses a few buffers.
   */
  read(pos: number, len: number, into?: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * A point read from another copy than the primary's snapshot (policy/best-copy.ts: a point the
 * primary no longer holds, restored from a clone or an archive that does).
 */
export interface PointSource {
  /** For the job log: "clone site-b", "archive tape". */
  readonly name: string;
  /** The point's files (vda.raw, ..., vm.json) by path in the point, with their sizes. */
  files(): Promise<Array<{ path: string; size: number }>>;
  open(path: string): Promise<PointFile>;
  close(): Promise<void>;
}

/**
 * What a restore may be given besides the primary (policy/best-copy.ts makes it): a rescue
 * that reads damaged segments from other copies of the point, and what to do once the restore
 * ended (repair the primary's damaged segments from those copies, close them). `source`: the
 * primary does not hold the point at all; every file is read from that copy.
 */
export interface CopyPlan {
  rescue: ReadRescue;
  source?: PointSource;
  finish(restored: boolean): Promise<void>;
}

/** A file of the primary, through the namespace (a rescue reads its damage from another copy). */
export async function primaryFile(ns: Namespace, from: string, rescue?: ReadRescue): Promise<PointFile> {
  const size = (await ns.fs.getattr(from)).size;
  const fh = await ns.fs.open(from, 0);
  return {
    size,
    dataRanges: () => dataRanges(ns, fh, size, rescue),
    dataRangesIn: (from, to) => dataRanges(ns, fh, size, rescue, from, to),
    // Its own reads in flight (forEachDataChunk): past the store's shared read-ahead windows.
    read: (pos, len, into) => ns.fs.readDirect(fh, pos, len, rescue, into),
    close: () => ns.fs.release(fh),
  };
}

/** The file `name` of the point: from `opts.source` when given, else the primary's snapshot. */
export function pointFile(ns: Namespace, share: string, point: string, name: string, opts: { source?: PointSource; rescue?: ReadRescue }): Promise<PointFile> {
  return opts.source ? opts.source.open(name) : primaryFile(ns, `/${share}/.snapshots/${point}/${name}`, opts.rescue);
}

/** Makes the plan for one point's restore; undefined: the primary alone. */
export type CopyPlanner = (vm: string, share: string, point: string, log: (line: string) => void) => Promise<CopyPlan | undefined>;

/** Copies the namespace file `from` into the local file `to` (sparse: zero chunks not written). */
export async function restoreFile(ns: Namespace, from: string, to: string, opts: Omit<RestoreOptions, 'format' | 'source'>): Promise<number> {
  const file = await primaryFile(ns, from, opts.rescue).catch((err) => {
    throw fromSystemError(err, `restoring ${from} to ${to}`);
  });
  return restoreFileFrom(file, from, to, opts);
}

/** Copies `file` (named `from` in errors) into the local file `to`, sparse; closes `file`. */
async function restoreFileFrom(file: PointFile, from: string, to: string, opts: Omit<RestoreOptions, 'format' | 'source' | 'rescue'>): Promise<number> {
  const chunk = opts.chunkBytes ?? 4 << 20;
  const inFlight = opts.inFlight ?? 4;
  const size = file.size;
  let out: fs.FileHandle | undefined;
  let writer: FileWriter | undefined;
  try {
    out = await fs.open(to, 'wx', 0o600);
    await out.truncate(size);
    // The restore is bound by its writes. The addon's writer thread takes each chunk as soon as
    // it is read and writes them back to back, directly (no copy into the page cache, nothing
    // left dirty for the fsync) where aligned; on the libuv pool a write waited behind the
    // reads' decode jobs, then for this thread (tools/PERFORMANCE.md, restore7).
    if (opts.writer !== 'pool') writer = await openFileWriter(to, out, { direct: opts.direct });
    // Only the data runs are read: the holes of the file's segment tree (zero runs the store
    // never stored: what a full backup skipped) stay holes in the truncated target for free,
    // where reading them meant filling and scanning zeros (1.5 of 2 GiB in the bench's disk).
    // They are found window by window, each next window walked while this one is copied: one
    // walk of the whole tree first held every read back by it (0.2-0.4 s of the bench's first
    // restore at load 17, its nodes not yet cached; tools/PERFORMANCE.md, backup5). For the
    // writer thread each run is widened to whole 4 KiB blocks (the bytes added are zeros of the
    // holes beside it), so every chunk but a last partial block is aligned for a direct write.
    const ranges = dataWindows(file, size, (holes) => opts.advance?.(holes), writer ? FILE_WRITER_ALIGN : 1);
    // The writer thread takes the chunks in the order handed and writes them one at a time.
    const copy = writer ?? copyByPool(out);
    // One buffer per read in flight, reused: fresh ones cost a page fault per 4 KiB and GC time.
    // Aligned, as direct writes need.
    const free: Buffer[] = [];
    try {
      await forEachDataChunk(ranges, chunk, inFlight, opts.signal, async (at, len) => {
        const own = free.pop() ?? (writer ? alignedBuffer(chunk) : Buffer.allocUnsafeSlow(chunk));
        const buf = await file.read(at, len, own);
        if (buf.length !== len) throw vmError('IO', `${from}: read ${buf.length} bytes at ${at}, expected ${len}`);
        await copy.write(buf, at);
        // Back to the pool only after a read and write that succeeded: a failed read may still
        // have decodes landing in it.
        free.push(own);
        opts.advance?.(len);
      });
    } finally {
      // Before the fsync and the close: the writer thread's queue drained (a worker of a failed
      // copy may have left writes in it) and its direct descriptor closed; the pool's
      // startWriteback calls done (they use the fd number, which the kernel may give to another
      // file once it is closed).
      await copy.close();
    }
    if (writer) opts.written?.(writer.written);
    // fsync is per file: it covers the direct descriptor's writes (their blocks' allocation is
    // journaled here, the device's cache flushed) as well as the ordinary ones.
    await out.sync();
    return size;
  } catch (err) {
    throw fromSystemError(err, `restoring ${from} to ${to}`);
  } finally {
    await writer?.close().catch(() => {});
    await out?.close();
    await file.close();
  }

  /**
   * Chunks written from here through the libuv pool (no addon, or `writer: 'pool'`), one at a
   * time, in turn: concurrent pwrites into one file contend for its inode lock (on this 2-core
   * machine 4 writers of 4 MiB took 1.5-3.1 s for 460 MiB where one took 0.5 s;
   * tools/PERFORMANCE.md, restore). Each chunk's disk writes start as soon as it is written
   * (sync_file_range, never waited for here), so the fsync waits for the last few chunks rather
   * than the whole file (0.3-0.7 s of a 460 MiB restore; tools/PERFORMANCE.md, backup5), one
   * call at a time (the chunks written meanwhile go in the next): the call blocks a pool thread
   * while the disk's queue is full, and the reads decode on that pool.
   */
  function copyByPool(h: fs.FileHandle): { write(buf: Buffer, at: number): Promise<void>; close(): Promise<void> } {
    let writing: Promise<void> = Promise.resolve();
    const writeback = new Writeback(h.fd, opts.startWriteback ?? startWriteback);
    return {
      write: async (buf, at) => {
        const w = writing.then(() => writeSparse(h, buf, at));
        writing = w.catch(() => {});
        await w;
        writeback.add(at, buf.length);
      },
      close: () => writeback.close(),
    };
  }
}

/**
 * Starts the disk writes of the ranges handed to it, one call at a time: what is added while a
 * call runs goes in the next one, as one range from the lowest offset to the highest end (the
 * range's clean pages cost the kernel nothing). Never fails (a hint; see files/writeback.ts).
 */
class Writeback {
  private lo = Infinity;
  private hi = 0;
  private running: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly fd: number,
    private readonly start: (fd: number, offset: number, length: number) => Promise<void>,
  ) {}

  add(offset: number, length: number): void {
    if (this.closed) return;
    this.lo = Math.min(this.lo, offset);
    this.hi = Math.max(this.hi, offset + length);
    this.running ??= this.run();
  }

  private async run(): Promise<void> {
    while (!this.closed && this.hi > this.lo) {
      const lo = this.lo;
      const hi = this.hi;
      this.lo = Infinity;
      this.hi = 0;
      await this.start(this.fd, lo, hi - lo).catch(() => {});
    }
    this.running = undefined;
  }

  /** Starts no call after this one; resolves once the call running (if any) returned. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.running) await this.running;
  }
}

/**
 * Writes `<dir>/<device>.raw|qcow2` for each disk and `<dir>/vm.json` out of
 * `/<share>/.snapshots/<point>/`. Refuses to overwrite an existing file (ALREADY_EXISTS).
 * Returns the files written, in order.
 */
export async function restorePoint(
  ns: Namespace,
  share: string,
  point: string,
  devices: string[],
  dir: string,
  opts: RestoreOptions,
): Promise<string[]> {
  const base = `/${share}/.snapshots/${point}`;
  const targets = devices.map((d) => path.join(dir, `${d}.${opts.format}`));
  const vmJson = path.join(dir, 'vm.json');
  try {
    await mkdirDurable(dir);
  } catch (err) {
    throw fromSystemError(err, `creating ${dir}`);
  }
  for (const t of [...targets, vmJson]) {
    if (await exists(t)) throw vmError('ALREADY_EXISTS', `${t} exists; restore into an empty directory or remove it`);
  }
  const partials: string[] = [];
  const written: string[] = [];
  try {
    for (let i = 0; i < devices.length; i++) {
      const raw = opts.format === 'raw' ? `${targets[i]}.partial` : path.join(dir, `.${devices[i]}.raw.partial`);
      partials.push(raw);
      const file = await pointFile(ns, share, point, `${devices[i]}.raw`, opts);
      await restoreFileFrom(file, opts.source ? `${devices[i]}.raw of ${opts.source.name}` : `${base}/${devices[i]}.raw`, raw, opts);
      if (opts.format === 'qcow2') {
        const q = `${targets[i]}.partial`;
        partials.push(q);
        try {
          await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, q]);
        } catch (err) {
          throw vmError('IO', `qemu-img convert of ${devices[i]} to qcow2 failed: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`);
        }
        await fs.rm(raw, { force: true });
        await fs.rename(q, targets[i]);
      } else {
        await fs.rename(raw, targets[i]);
      }
      written.push(targets[i]);
    }
    const json = await pointFile(ns, share, point, 'vm.json', opts);
    try {
      await fs.writeFile(`${vmJson}.partial`, await json.read(0, json.size), { flag: 'wx', mode: 0o600 });
    } finally {
      await json.close();
    }
    partials.push(`${vmJson}.partial`);
    await fs.rename(`${vmJson}.partial`, vmJson);
    written.push(vmJson);
    // Done means durable: a power cut after the job said so must not take the disks back.
    // (qemu-img convert does not sync its output; vm.json was written plainly; the renames are
    // durable only once the directory is.)
    for (const f of written) await fsyncPath(f);
    await fsyncPath(dir);
    return written;
  } catch (err) {
    // Nothing half made stays: partial files and the disks already finished of this restore.
    for (const p of [...partials, ...written]) await fs.rm(p, { force: true });
    throw err;
  }
}

type Run = { start: number; end: number };

/** First window of a file's data runs walked before any read; each next one twice as large, up to the last. */
const FIRST_WINDOW = 16 * 1024 * 1024;
const LAST_WINDOW = 1024 * 1024 * 1024;

/**
 * The file's data runs as a supplier of successive batches (forEachDataChunk's form): window
 * by window when the file can walk part of its tree (dataRangesIn), the next window's walk
 * started as soon as the current one is handed out; else all at once. `holes` is told the
 * bytes of each batch's window that are not data (progress counts them as done). `align`:
 * each run widened to whole blocks of that many bytes (alignRuns).
 */
export function dataWindows(file: PointFile, size: number, holes: (n: number) => void, align = 1): () => Promise<ReadonlyArray<Run> | undefined> {
  const sum = (l: ReadonlyArray<Run>) => l.reduce((n, x) => n + x.end - x.start, 0);
  if (!file.dataRangesIn) {
    let given = false;
    return async () => {
      if (given) return undefined;
      given = true;
      const l = alignRuns(await file.dataRanges(), align, size);
      holes(size - sum(l));
      return l;
    };
  }
  const walkIn = file.dataRangesIn.bind(file);
  let width = FIRST_WINDOW;
  const walk = (from: number) => {
    const to = Math.min(size, from + width);
    width = Math.min(width * 2, LAST_WINDOW);
    const runs = walkIn(from, to);
    runs.catch(() => {}); // a walk ahead that nobody takes (the copy failed) must not go unhandled
    return { from, to, runs };
  };
  let ahead = size > 0 ? walk(0) : undefined;
  return async () => {
    const cur = ahead;
    if (!cur) return undefined;
    ahead = cur.to < size ? walk(cur.to) : undefined;
    const l = alignRuns(await cur.runs, align, size);
    holes(cur.to - cur.from - sum(l));
    return l;
  };
}

/**
 * `runs` (ascending, disjoint) widened to whole `align`-byte blocks, the last ending at `size`
 * at most, and merged where they then meet. A window's runs stay inside it: windows start and
 * end on multiples of FIRST_WINDOW (or at `size`), which any power-of-two `align` up to it
 * divides. The bytes added lie in holes (zeros), read as such.
 */
export function alignRuns(runs: ReadonlyArray<Run>, align: number, size: number): Run[] {
  if (align <= 1) return [...runs];
  const out: Run[] = [];
  for (const r of runs) {
    const start = r.start - (r.start % align);
    const end = Math.min(size, Math.ceil(r.end / align) * align);
    const last = out[out.length - 1];
    if (last && start <= last.end) last.end = Math.max(last.end, end);
    else out.push({ start, end });
  }
  return out;
}

/**
 * Calls `fn(offset, length)` for every chunk (at most `chunk` bytes) of the data `ranges`, in
 * order of offset, with `inFlight` calls running at once; stops with CANCELLED once `signal` is
 * aborted. The restore to files and the restore to NBD targets read the same way. `ranges` may
 * be a supplier of ascending batches (undefined when none is left, dataWindows): the workers
 * go on into the next batch without waiting for the current one's last calls.
 */
export async function forEachDataChunk(
  ranges: ReadonlyArray<Run> | (() => Promise<ReadonlyArray<Run> | undefined>),
  chunk: number,
  inFlight: number,
  signal: AbortSignal | undefined,
  fn: (offset: number, length: number) => Promise<void>,
): Promise<void> {
  const more = typeof ranges === 'function' ? ranges : undefined;
  let list: ReadonlyArray<Run> = typeof ranges === 'function' ? [] : ranges;
  let done = more === undefined;
  let r = 0;
  let next = list[0]?.start ?? 0;
  let pulling: Promise<void> | undefined;
  /** The next batch, asked once however many workers ran out at the same time. */
  const pull = (): Promise<void> =>
    (pulling ??= more!()
      .then((l) => {
        if (l === undefined) {
          done = true;
          return;
        }
        list = l;
        r = 0;
        next = l[0]?.start ?? 0;
      })
      .finally(() => (pulling = undefined)));
  const worker = async () => {
    for (;;) {
      if (signal?.aborted) throw vmError('CANCELLED', 'the restore was cancelled');
      while (r < list.length && next >= list[r].end) {
        r++;
        if (r < list.length) next = list[r].start;
      }
      if (r >= list.length) {
        if (done) return;
        await pull();
        continue;
      }
      const at = next;
      const len = Math.min(chunk, list[r].end - at);
      next += len;
      await fn(at, len);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

/**
 * The [start, end) runs of `fh` that hold data, from the store's holes (its segment tree's zero
 * runs), in one walk of the tree (of the part over [from, to) when given, the runs clipped
 * to it). With a rescue, a damaged tree node met on the way is read from another copy.
 */
export async function dataRanges(ns: Namespace, fh: number, size: number, rescue?: ReadRescue, from = 0, to = size): Promise<Array<{ start: number; end: number }>> {
  const runs = await ns.nodes.dataRuns(fh, rescue, from, to);
  const out: Array<{ start: number; end: number }> = [];
  for (const r of runs) if (r.start < size) out.push({ start: r.start, end: Math.min(r.end, size) });
  return out;
}

/** Holes are kept at this granularity (qcow2's default cluster, the dirty bitmaps' too). */
const SPARSE_BLOCK = 64 * 1024;

/** Writes the non-zero runs of `buf` (in SPARSE_BLOCK steps) at `at`; zero runs stay holes. */
async function writeSparse(out: fs.FileHandle, buf: Buffer, at: number): Promise<void> {
  let run = -1;
  for (let i = 0; i < buf.length; i += SPARSE_BLOCK) {
    const zero = isZero(buf.subarray(i, Math.min(i + SPARSE_BLOCK, buf.length)));
    if (!zero && run < 0) run = i;
    if (zero && run >= 0) {
      await out.write(buf, run, i - run, at + run);
      run = -1;
    }
  }
  if (run >= 0) await out.write(buf, run, buf.length - run, at + run);
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch {
    return false;
  }
}
