// Read-ahead for small sequential reads (FUSE hands a large copy to the store as read() calls
// of 128 KiB at increasing offsets). Once a version has been read twice in a row where the
// previous read ended, the store reads the next windows (4 MiB each) in the background,
// decoded in place like a stream read, and serves the following small reads by copying out
// of them into the caller's buffer: one codec round trip per window instead of one per read,
// and no promise at all for a read whose window is already there. Versions never change, so
// a window stays valid as long as it is kept; window buffers are recycled.
//
// The reads of one stream arrive out of order: the kernel's read-ahead sends several 1 MiB
// requests at once and libfuse's threads hand them over in any order, and `qemu-img convert`
// reads 2 MiB chunks with 8 requests in flight. A read that lands in a window is served from it
// whatever came before; windows are kept 16 MiB behind the newest read (the spread of
// qemu-img's requests in flight); a read that comes later than that is read on its own without
// resetting the stream. Before, each of these reset the stream or dropped its windows, and a
// single `qemu-img convert` pass decoded about 8% of its segments twice (PERFORMANCE.md,
// recovery5).

import type { TreeView } from './reader.js';
import type { FileVersion } from './version.js';

const WINDOW = 4 * 1024 * 1024;
/** Windows read ahead of a sequential reader. */
const AHEAD = 3;
/** Sequential readers followed at once; each holds AHEAD + 1 windows ahead and up to BEHIND behind (about 36 MiB). */
const MAX_STREAMS = 4;
/**
 * How far behind the newest read a window is kept for reads that arrive late: `qemu-img
 * convert` has 8 reads of 2 MiB in flight, and a pass's reads arrived up to ~15 MiB late (1 MiB
 * here before: those reads were decoded again, and reset the stream).
 */
const BEHIND = 16 * 1024 * 1024;
/** How late a read may come behind the windows and still be late (read on its own, the stream left as it is), not a jump back. */
const MAX_LATE = 2 * BEHIND;
/**
 * Late reads in a row, each where the one before ended, that make a jump back after all (a
 * reader that started over): more than a straggling chunk of qemu-img convert (2 MiB).
 */
const LATE_RUN = 4;
/** VMVAULT_NO_READAHEAD=1 turns it off, for comparisons. */
const OFF = process.env.VMVAULT_NO_READAHEAD === '1';

/** Free window buffers: fresh memory costs a page fault per 4 KiB on first touch. */
const freeBufs: Buffer[] = [];
const KEEP_BUFS = MAX_STREAMS * (AHEAD + 1) + BEHIND / WINDOW;

interface Window {
  start: number;
  end: number;
  buf: Buffer;
  /** Runs of zeros, as (start, end) pairs relative to `start`: not written into buf. */
  zeros: number[];
  /** Set once the bytes are in buf. */
  ready: boolean;
  /** Resolves when ready; rejects when the read failed. */
  done: Promise<void>;
  /** Reads waiting to copy out of it; the buffer is recycled only when none is. */
  users: number;
  /** No longer in its stream's list. */
  dropped: boolean;
  failed: boolean;
  /** The watcher told of it (announce): told again before the buffer is reused. */
  told: WindowWatcher | undefined;
}

interface Stream {
  version: FileVersion;
  /** Where the last read ended. */
  next: number;
  /** Reads in a row that started where the one before ended (or inside the windows). */
  run: number;
  windows: Window[];
  /** Where the first window since the stream last moved its windows starts: reads late behind it are a jump. */
  low: number;
  /** The read just followed came late (follow): it is read on its own, the windows left as they are. */
  late: boolean;
  /** Where the last late read ended, and how many late reads in a row continued each other. */
  lateNext: number;
  lateRun: number;
}

/**
 * Told of windows as they become ready and before their buffers are reused or let go: the FUSE
 * layer lets its addon answer reads from them on other threads (fuse/ll-datawin.ts). Both are
 * called on this thread; `retire` must drop every reference to the buffer before it returns.
 */
export interface WindowWatcher {
  /** Whether windows of `version` are wanted (ready() is called only then: zero runs cost a fill). */
  wants(version: FileVersion): boolean;
  /**
   * Bytes [start, end) of `version` are in `buf` (verified, zero runs filled in), valid until
   * retire(buf). Only windows that hold data are told (not those all zeros).
   */
  ready(version: FileVersion, start: number, end: number, buf: Buffer): void;
  /** `buf` (a window's whole buffer) is about to be reused or let go. */
  retire(buf: Buffer): void;
}

function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a === b || (a.size === b.size && a.height === b.height && a.root.equals(b.root));
}

export class ReadAhead {
  /** Most recently used last. */
  private streams: Stream[] = [];
  /** Told of ready windows and of their buffers' reuse (setWatcher). */
  private watcher: WindowWatcher | undefined;

  /** One watcher at most (the mount's); undefined stops telling. */
  setWatcher(w: WindowWatcher | undefined): void {
    this.watcher = w;
  }

  /**
   * Copies bytes [off, off + out.length) of `view` (clipped to its size) into `out` from
   * read-ahead windows when they cover them: the byte count, synchronously when the windows
   * are ready, else a promise of it. Undefined when they do not: the caller reads itself.
   */
  readInto(view: TreeView, off: number, out: Buffer): number | Promise<number> | undefined {
    const c = this.cover(view, off, out.length);
    if (!c) return undefined;
    const { use, end } = c;
    if (c.ready) return copyOut(use, off, end, out);
    // The copy throws when out was detached meanwhile (a FUSE request that timed out).
    return this.pinned(use, () => copyOut(use, off, end, out));
  }

  /**
   * Hands `use` bytes [off, off + len) of `view` (clipped to its size) as one Buffer, without a
   * copy when a single window holds them (all zeros: a view of a shared zero buffer); else
   * copied out of the windows into a new Buffer. The Buffer is
   * valid only during the call (the window is recycled afterwards): `use` must be done with it
   * when it returns, as a FUSE reply is (it copies into the kernel). Returns true once `use` ran
   * (a promise of it when a window is still being read); undefined when the windows do not
   * cover the bytes: the caller reads them itself.
   */
  serve(view: TreeView, off: number, len: number, use: (b: Buffer) => void): true | Promise<true> | undefined {
    const c = this.cover(view, off, len);
    if (!c) return undefined;
    const { end } = c;
    const give = (): true => {
      use(viewOf(c.use, off, end) ?? spanning(c.use, off, end));
      return true;
    };
    return c.ready ? give() : this.pinned(c.use, give);
  }

  /**
   * Follows the read and opens windows ahead of it; the windows covering [off, off + len)
   * (clipped to the version) if they do without a gap. Called once per read.
   */
  private cover(view: TreeView, off: number, len: number): { use: Window[]; end: number; ready: boolean } | undefined {
    const v = view.version;
    if (OFF || v.height === 0 || len <= 0 || off >= v.size) return undefined;
    const end = Math.min(v.size, off + len);
    const s = this.follow(v, off, end);
    if (s.late) return undefined;
    // A read the windows hold is served from them, whatever came before it (reads in flight
    // arrive out of order); one that came late behind them is read on its own.
    const held = covering(s.windows, off, end);
    if (held && s.run < 2) return held;
    if (s.run < 2) return undefined;
    // Windows well behind the reader are dropped (the kernel's reads in flight may arrive a
    // little out of order); new ones keep AHEAD windows beyond the reader.
    let behind = 0;
    while (behind < s.windows.length && s.windows[behind].end <= off - BEHIND) behind++;
    if (behind > 0) for (const w of s.windows.splice(0, behind)) this.drop(w);
    if (s.windows.length > 0 && (s.windows[0].start > off || s.windows[s.windows.length - 1].end < off)) this.dropAll(s);
    const ws = s.windows;
    let last = ws[ws.length - 1];
    if (!last) {
      last = this.open(s, view, off);
      s.low = off;
    }
    let ahead = 0;
    for (const w of ws) if (w.end > off) ahead++;
    for (; ahead <= AHEAD && last.end < v.size; ahead++) last = this.open(s, view, last.end);
    return covering(ws, off, end);
  }

  /** Runs `fn` once the windows are ready, holding them (not recycled) until it returns. */
  private pinned<T>(use: Window[], fn: () => T): Promise<T> {
    for (const w of use) w.users++;
    const release = () => {
      for (const w of use) {
        w.users--;
        if (w.dropped) this.recycle(w);
      }
    };
    return Promise.all(use.map((w) => w.done)).then(fn).finally(release);
  }

  /** The stream this read continues (or a new one), updated and moved to the end. */
  private follow(v: FileVersion, off: number, end: number): Stream {
    const list = this.streams;
    let i = list.length - 1;
    while (i >= 0 && !sameVersion(list[i].version, v)) i--;
    let s: Stream;
    if (i < 0) {
      s = { version: v, next: end, run: 0, windows: [], low: 0, late: false, lateNext: -1, lateRun: 0 };
      list.push(s);
      if (list.length > MAX_STREAMS) this.dropAll(list.shift()!);
      return s;
    }
    s = list[i];
    if (i !== list.length - 1) {
      list.splice(i, 1);
      list.push(s);
    }
    const ws = s.windows;
    if (s.run >= 2 && ws.length > 0 && off < ws[0].start && off >= s.low && off >= s.next - MAX_LATE) {
      // Late: behind the windows kept, but where the windows this stream follows were. The
      // stream goes on as it was, unless late reads keep following each other: a reader that
      // started over. (A stream that lost its reader, run < 2, has no front to be late behind.)
      s.lateRun = off === s.lateNext ? s.lateRun + 1 : 1;
      s.lateNext = end;
      if (s.lateRun < LATE_RUN) {
        s.late = true;
        return s;
      }
      s.late = false;
      s.lateRun = 0;
      s.run = LATE_RUN;
      s.next = end;
      return s;
    }
    s.late = false;
    const last = ws.length > 0 ? ws[ws.length - 1].end : -1;
    if (off === s.next || (ws.length > 0 && off >= ws[0].start && off < last)) s.run++;
    else s.run = 0;
    if (end > s.next || s.run === 0) s.next = end;
    return s;
  }

  private open(s: Stream, view: TreeView, from: number): Window {
    const end = Math.min(view.version.size, from + WINDOW);
    const buf = freeBufs.pop() ?? Buffer.allocUnsafeSlow(WINDOW);
    const w: Window = { start: from, end, buf, zeros: [], ready: false, done: Promise.resolve(), users: 0, dropped: false, failed: false, told: undefined };
    w.done = view.readInto(from, buf.subarray(0, end - from), w.zeros).then(
      () => {
        w.ready = true;
        if (w.dropped) this.recycle(w);
        else if (this.watcher) this.announce(w, view.version);
      },
      (err) => {
        // A failed window is dropped; the read that needs those bytes then meets the error itself.
        w.failed = true;
        const k = s.windows.indexOf(w);
        if (k >= 0) s.windows.splice(k, 1);
        w.dropped = true;
        throw err;
      },
    );
    w.done.catch(() => {});
    s.windows.push(w);
    return w;
  }

  /**
   * Tells the watcher of a ready window that holds data: its zero runs are filled in first (they
   * stay listed; copyOut and viewOf write the same zeros), so its buffer reads as the bytes.
   */
  private announce(w: Window, version: FileVersion): void {
    if (!this.watcher!.wants(version)) return;
    const n = w.end - w.start;
    let zero = 0;
    for (let k = 0; k < w.zeros.length; k += 2) zero += w.zeros[k + 1] - w.zeros[k];
    if (zero >= n) return;
    for (let k = 0; k < w.zeros.length; k += 2) w.buf.fill(0, w.zeros[k], w.zeros[k + 1]);
    w.told = this.watcher;
    this.watcher!.ready(version, w.start, w.end, w.buf.subarray(0, n));
  }

  private dropAll(s: Stream): void {
    for (const w of s.windows) this.drop(w);
    s.windows = [];
  }

  private drop(w: Window): void {
    w.dropped = true;
    this.recycle(w);
  }

  /** Returns a dropped window's buffer to the pool once nobody reads or fills it. */
  private recycle(w: Window): void {
    if (!w.dropped || !w.ready || w.failed || w.users > 0) return;
    w.ready = false; // recycled once only
    w.failed = true;
    // Nobody else may read the buffer once it is reused (or freed).
    w.told?.retire(w.buf);
    w.told = undefined;
    if (freeBufs.length < KEEP_BUFS) freeBufs.push(w.buf);
  }
}

/** The windows covering [off, end) if they do without a gap. */
function covering(ws: Window[], off: number, end: number): { use: Window[]; end: number; ready: boolean } | undefined {
  let at = off;
  let first = -1;
  let count = 0;
  let ready = true;
  for (let k = 0; k < ws.length && at < end; k++) {
    const w = ws[k];
    if (w.start <= at && w.end > at) {
      if (first < 0) first = k;
      count++;
      if (!w.ready) ready = false;
      at = w.end;
    }
  }
  if (at < end) return undefined;
  return { use: ws.slice(first, first + count), end, ready };
}

/** Zeros served without a copy: bytes of an all-zero range are a view of this (never written). */
let zeroBuf = Buffer.alloc(0);

/** `n` zero bytes, a view of the shared zero buffer: never to be written. */
export function zeroView(n: number): Buffer {
  // Filled, not Buffer.alloc's calloc: untouched anonymous memory maps the kernel's zero page,
  // which the FUSE reply's get_user_pages takes only on its slow path (the mmap lock, page by
  // page), for every reply of zeros.
  if (zeroBuf.length < n) zeroBuf = Buffer.allocUnsafeSlow(Math.max(n, WINDOW)).fill(0);
  return zeroBuf.subarray(0, n);
}

/**
 * Where a read across windows is copied for a `use` that is done with it when it returns
 * (serve's contract): one buffer, reused, as only one `use` runs at a time on this thread. A
 * fresh Buffer per read cost a page fault per 4 KiB on first touch (the zero fill of a hole
 * read faulted in 256 pages per MiB) and work for the GC.
 */
let scratch = Buffer.alloc(0);
const SCRATCH_MAX = 4 * 1024 * 1024;

/** The index of the first zero run of `z` ending after `a` (runs are sorted and merged). */
function firstRunAfter(z: number[], a: number): number {
  let lo = 0;
  let hi = z.length >>> 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (z[2 * mid + 1] <= a) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Whether [a, b) of window `w` (relative to its start) lies in one of its zero runs. */
function allZero(w: Window, a: number, b: number): boolean {
  const z = w.zeros;
  const k = 2 * firstRunAfter(z, a);
  return k < z.length && z[k] <= a && z[k + 1] >= b;
}

/** [off, end) across several windows: the shared zeros when it is all zeros, else a copy into scratch. */
function spanning(use: Window[], off: number, end: number): Buffer {
  if (use.every((w) => allZero(w, Math.max(off, w.start) - w.start, Math.min(end, w.end) - w.start))) return zeroView(end - off);
  const n = end - off;
  if (n > SCRATCH_MAX) return copyOut(use, off, end, Buffer.allocUnsafe(n), true);
  if (scratch.length < n) scratch = Buffer.allocUnsafeSlow(Math.max(n, 1024 * 1024));
  return copyOut(use, off, end, scratch.subarray(0, n), true);
}

/**
 * [off, end) as a view without a copy when one window holds it: of the shared zero buffer when
 * it is all zeros, else of the window's buffer, whose zero runs inside the range are filled in
 * place first (a read of data and zeros: a fill of the zeros instead of a copy of it all).
 * Undefined when the range spans windows.
 */
function viewOf(use: Window[], off: number, end: number): Buffer | undefined {
  if (use.length !== 1) return undefined;
  const w = use[0];
  const a = off - w.start;
  const b = end - w.start;
  const z = w.zeros;
  const lo = firstRunAfter(z, a);
  if (2 * lo < z.length && z[2 * lo] <= a && z[2 * lo + 1] >= b) return zeroView(b - a);
  // Filled runs stay listed: copyOut writes the same zeros for them.
  for (let k = 2 * lo; k < z.length && z[k] < b; k += 2) w.buf.fill(0, Math.max(z[k], a), Math.min(z[k + 1], b));
  return w.buf.subarray(a, b);
}

function copyOut(use: Window[], off: number, end: number, out: Buffer): number;
function copyOut(use: Window[], off: number, end: number, out: Buffer, give: true): Buffer;
function copyOut(use: Window[], off: number, end: number, out: Buffer, give?: true): number | Buffer {
  let pos = off;
  for (const w of use) {
    const to = Math.min(end, w.end) - w.start;
    let at = pos - w.start;
    // Zero runs are filled, the rest copied: one pass over out, none over the window.
    const z = w.zeros;
    let k = 0;
    let lo = 0;
    let hi = z.length >>> 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (z[2 * mid + 1] <= at) lo = mid + 1;
      else hi = mid;
    }
    for (k = 2 * lo; at < to; k += 2) {
      const zs = k < z.length ? Math.min(Math.max(z[k], at), to) : to;
      if (zs > at) w.buf.copy(out, at + w.start - off, at, zs);
      if (zs >= to) break;
      const ze = Math.min(z[k + 1], to);
      out.fill(0, zs + w.start - off, ze + w.start - off);
      at = ze;
    }
    pos = to + w.start;
  }
  return give ? out : end - off;
}
