// Data reads the addon answers by itself (native/src/fuse3/datawin.c): a sequential read of
// stored data is answered on libfuse's thread from the store's read-ahead windows, decoded and
// verified bytes this thread already holds, with no hop to this thread and the copy into the
// kernel done there, in parallel, instead of here one reply after another.
//
// The store tells this table of each window as it becomes ready and before its buffer is reused
// (WindowWatcher): a ready window is registered for every open that reads as that version and
// whose reads reached this thread; a retired one is dropped everywhere first (the addon waits
// for any reply still copying out of it). Any change of a file's bytes or size (OpenFile's
// change listeners, called before the change is acknowledged) drops the windows of every open
// of it at once, so no read begun after the change gets old bytes; release drops them before
// the fh can be reused. The addon answers a read only while a later window of the same open is
// registered, or once a read in the same window came here: the first read in the last one comes
// here, so the read-ahead follows the reader.
//
// A file of a read-only view (the catalog's `<image>.files/`, ll-virtual.ts) whose bytes are
// ranges of a stored file's committed version is mapped here too (map): the parts of each window
// of that version that fall in its ranges are registered in the view file's own offsets, so its
// sequential reads are answered in C as the stored file's are. Such a version never changes (a
// snapshot's file), so a mapping has no change listener; it goes when the view's last handle on
// the node is released (unmap).

import type { FileVersion, Namespace, WindowWatcher } from '../namespace/namespace.js';
import type { OpenFile } from '../namespace/open-file.js';
import type { LlSession } from './ll/session.js';

/** VMVAULT_NO_DATAWIN=1 keeps every data read on this thread, for comparisons. */
const OFF = process.env.VMVAULT_NO_DATAWIN === '1';

interface Open {
  ino: bigint;
  fh: number;
  file: OpenFile;
  listener: () => void;
}

/** File offsets [at, at + length) of a view's file read as bytes [from, from + length) of a version. */
export interface MappedPiece {
  at: number;
  from: number;
  length: number;
}

/** Where a view file's bytes lie in a stored file (VirtualTree.mapping). */
export interface StoredMapping {
  version: FileVersion;
  /** Sorted by `from`, not overlapping. */
  pieces: MappedPiece[];
}

interface Mapped extends StoredMapping {
  ino: bigint;
  fh: number;
}

/**
 * Pieces shorter than this are not registered: a read must lie inside one registered range to be
 * answered in C, and every range costs a slot of the addon's table (128) for each window.
 */
const MIN_PIECE = 128 * 1024;
/** Ranges registered per window and mapped file at most (a fragmented file's small extents go to JS). */
const MAX_PIECES_PER_WINDOW = 4;

function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a === b || (a.size === b.size && a.height === b.height && a.root.equals(b.root));
}

export class DataWindows implements WindowWatcher {
  private readonly opens = new Map<number, Open>();
  /** View files mapped onto stored versions, by node id. */
  private readonly mapped = new Map<bigint, Mapped>();
  /** Window buffers the addon may hold (registered for some open): retire must drop them. */
  private readonly held = new Set<ArrayBufferLike>();
  private session: LlSession | undefined;

  constructor(private readonly ns: Namespace) {}

  /** Stops taking windows and forgets every one the addon holds (at unmount). */
  stop(): void {
    if (!this.session) return;
    this.ns.watchReadAhead(undefined);
    for (const o of this.opens.values()) this.forget(o);
    this.opens.clear();
    for (const m of this.mapped.values()) this.session.clearDataWindows(m.ino, m.fh);
    this.mapped.clear();
    this.session = undefined;
  }

  /** A read of (ino, fh) reached this thread: windows read for its version from now on are offered. */
  onRead(s: LlSession, ino: bigint, fh: number): void {
    if (OFF || this.opens.has(fh) || ino > BigInt(Number.MAX_SAFE_INTEGER)) return;
    this.follow(s);
    let file: OpenFile;
    try {
      file = this.ns.fs.handle(fh).file;
    } catch {
      return;
    }
    const o: Open = { ino, fh, file, listener: () => this.session?.clearDataWindows(o.ino, o.fh) };
    file.changeListeners.add(o.listener);
    this.opens.set(fh, o);
  }

  /** The first read of this mount: the store tells this table of its windows from now on. */
  private follow(s: LlSession): void {
    if (this.session === s) return;
    this.stop();
    this.session = s;
    this.ns.watchReadAhead(this);
  }

  /** Whether view file `ino` is mapped (map was called and unmap not yet). */
  isMapped(ino: bigint): boolean {
    return this.mapped.has(ino);
  }

  /**
   * Reads of view file (ino, fh) are answered in C from the windows of `m.version` read from now
   * on, where they fall in its pieces. The caller vouches that the version never changes.
   */
  map(s: LlSession, ino: bigint, fh: number, m: StoredMapping): void {
    if (OFF || this.mapped.has(ino) || ino > BigInt(Number.MAX_SAFE_INTEGER)) return;
    const pieces = m.pieces.filter((p) => p.length >= MIN_PIECE);
    if (pieces.length === 0) return;
    this.follow(s);
    this.mapped.set(ino, { ino, fh, version: m.version, pieces });
  }

  /** The view's last handle on `ino` went: no read of it is answered from the windows any more. */
  unmap(ino: bigint): void {
    const m = this.mapped.get(ino);
    if (!m) return;
    this.mapped.delete(ino);
    this.session?.clearDataWindows(m.ino, m.fh);
  }

  /** Called before the handle goes: its windows must not outlive its fh. */
  release(ino: bigint, fh: number): void {
    const o = this.opens.get(fh);
    if (!o || o.ino !== ino) return;
    this.opens.delete(fh);
    this.forget(o);
  }

  wants(version: FileVersion): boolean {
    for (const o of this.opens.values()) if (o.file.clean && sameVersion(o.file.base, version)) return true;
    for (const m of this.mapped.values()) if (sameVersion(m.version, version)) return true;
    return false;
  }

  ready(version: FileVersion, start: number, end: number, buf: Buffer): void {
    const s = this.session;
    if (!s) return;
    for (const o of this.opens.values()) {
      // The window's bytes are this open's only while the file reads exactly as that version;
      // a later change clears them (listener) before it is acknowledged.
      if (!o.file.clean || !sameVersion(o.file.base, version)) continue;
      if (s.setDataWindow(o.ino, o.fh, start, buf)) this.held.add(buf.buffer);
    }
    for (const m of this.mapped.values()) {
      if (!sameVersion(m.version, version)) continue;
      let n = 0;
      for (const p of m.pieces) {
        if (p.from >= end) break;
        const lo = Math.max(start, p.from);
        const hi = Math.min(end, p.from + p.length);
        // A part too small to hold a read worth answering here (a piece's edge) is left to JavaScript.
        if (hi - lo < MIN_PIECE) continue;
        if (s.setDataWindow(m.ino, m.fh, p.at + (lo - p.from), buf.subarray(lo - start, hi - start))) this.held.add(buf.buffer);
        if (++n >= MAX_PIECES_PER_WINDOW) break;
      }
    }
  }

  retire(buf: Buffer): void {
    if (!this.held.delete(buf.buffer)) return;
    this.session?.dropDataWindow(buf);
  }

  private forget(o: Open): void {
    o.file.changeListeners.delete(o.listener);
    this.session?.clearDataWindows(o.ino, o.fh);
  }
}
