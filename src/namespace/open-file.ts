// An open regular file: its newest version plus bounded write buffers. Reads see the newest
// bytes (dirty, then those being committed, then the version). A commit turns the dirty
// extents into a new version through the store's offset-write API (so a sequential stream
// is chunked as it arrives and a small update re-chunks only its neighbourhood) and hands it
// to the group commit, which makes it durable and records it in the inode; fsync waits for
// that, close does not.
//
// Commits of one file run one after another; writes go on into a fresh buffer meanwhile. If
// a round fails (disk full), the file falls back to its last durable version and the next
// write, flush or fsync reports the error: like a page-cache writeback error, the data
// written since that version is lost and the writer is told.

import type { ReadRescue, SegmentStore } from '../store/store.js';
import type { FileVersion } from '../store/store.js';
import { AppendStream } from './append-stream.js';
import { ExtentMap } from './extent-map.js';

/** Mean dirty extent size from which a file counts as a sequential stream (see `streaming`). */
const STREAM_EXTENT_BYTES = 16 * 1024;

export interface CommitTarget {
  /** Resolves once `version` is durable and recorded in the inode (now: do not wait for company). */
  record(f: OpenFile, version: FileVersion, deps: Set<number>, now: boolean): Promise<void>;
}

export class OpenFile {
  readonly vol: number;
  readonly ino: number;
  /** The newest version (maybe not durable yet). */
  base: FileVersion;
  /** The newest version known durable. */
  private durable: FileVersion;
  /** Rounds not yet landed, and the containers their versions rely on (a later version
   * reuses an earlier one's tree, so it relies on those too). */
  private unconfirmed = 0;
  private unconfirmedDeps = new Set<number>();
  /** Versions built but not yet durable: garbage collection must treat them as live. */
  private readonly inFlight = new Set<FileVersion>();
  /** Bytes of `base` still visible (a truncate hides the rest until the next commit). */
  private baseLimit: number;
  /** The file's size as callers see it now. */
  size: number;
  mtime: number;
  ctime: number;
  /** Descriptors open on this file (the FUSE handles). */
  handles = 0;
  private dirty = new ExtentMap();
  /** The store writer kept across commits that only append (append-stream.ts). */
  private readonly appends: AppendStream;
  private flushing: ExtentMap | undefined;
  private truncSince = Infinity;
  private chain: Promise<void> = Promise.resolve();
  /** Commits asked for and not finished (queued behind the chain or running). */
  private pendingCommits = 0;
  private failure: Error | undefined;
  private dirtySince = 0;
  /** Set when anything (data, size, times) awaits a commit. */
  private changed = false;
  /** Bumped at every change of what the file reads as (write, truncate, adopt, a revert). */
  private byteChanges = 0;
  /**
   * Told synchronously at each such change, before it is acknowledged to anyone: the FUSE
   * layer drops the holes it let the addon answer for this file (fuse/ll-holes.ts).
   */
  readonly changeListeners = new Set<() => void>();

  constructor(
    vol: number,
    ino: number,
    base: FileVersion,
    times: { mtime: number; ctime: number },
    private readonly store: SegmentStore,
    private readonly target: CommitTarget,
  ) {
    this.vol = vol;
    this.ino = ino;
    this.base = base;
    this.durable = base;
    this.baseLimit = base.size;
    this.size = base.size;
    this.mtime = times.mtime;
    this.ctime = times.ctime;
    this.appends = new AppendStream(store);
  }

  /** Bytes held in memory for this file (dirty and being committed). */
  get buffered(): number {
    return this.dirty.bytes + (this.flushing?.bytes ?? 0);
  }

  get dirtyBytes(): number {
    return this.dirty.bytes;
  }

  /** Whether a commit is building a version now (its bytes count in `buffered` until it is built). */
  get committing(): boolean {
    return this.flushing !== undefined;
  }

  /** Whether a commit is queued or running (another one asked for now would wait behind it). */
  get commitPending(): boolean {
    return this.pendingCommits > 0;
  }

  /**
   * Whether the dirty bytes are a sequential stream (a copy, a full backup, `cp` of an image):
   * large extents lying densely together, rather than scattered writes. Such a file is committed
   * in small steps back to back, so its commits overlap the writes instead of following them;
   * scattered writes (an incremental backup's dirty runs, a database) wait for the full commit
   * threshold, where rewrites of the same blocks and neighbouring writes coalesce and each
   * commit's tree rebuild covers more of them.
   */
  get streaming(): boolean {
    const d = this.dirty;
    const n = d.count;
    return n > 0 && d.bytes >= n * STREAM_EXTENT_BYTES && d.end - d.start <= 2 * d.bytes;
  }

  /** Whether a store writer is kept for a stream of appends (append-stream.ts). */
  get streamWriterLive(): boolean {
    return this.appends.live;
  }

  /**
   * Lets a kept stream writer go once no commit has used it for `ms` (the stream paused with
   * the file still open). Queued behind the commits asked for so far, so it never runs beside
   * one (AppendStream.drop's rule); a commit asked for meanwhile keeps the writer.
   */
  releaseIdleStream(ms: number): void {
    if (this.pendingCommits > 0 || !this.appends.idleFor(ms)) return;
    this.chain = this.chain.then(() => {
      if (this.pendingCommits === 0 && this.appends.idleFor(ms)) this.appends.drop();
    });
  }

  /** Resolves once every commit queued so far has finished (failed ones too: see takeFailure). */
  settled(): Promise<void> {
    return this.chain;
  }

  /** Whether a commit failed and its error is waiting for the next caller. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  get dirtyAgeMs(): number {
    return this.changed ? Date.now() - this.dirtySince : 0;
  }

  get hasChanges(): boolean {
    return this.changed;
  }

  /** Nothing buffered and nothing waiting to become durable: the file may be forgotten. */
  get idle(): boolean {
    return !this.changed && this.unconfirmed === 0;
  }

  /** Every version this file may still point at: for garbage collection's mark. */
  versions(): FileVersion[] {
    return [this.base, this.durable, ...this.inFlight];
  }

  /** A commit that failed (disk full) is reported to the next caller that can return an error. */
  takeFailure(): Error | undefined {
    const f = this.failure;
    this.failure = undefined;
    return f;
  }

  /** How many times the file's bytes or size changed while open (see byteChanges). */
  get changes(): number {
    return this.byteChanges;
  }

  /** Whether the file reads exactly as its base version: nothing buffered, committing or cut off. */
  get clean(): boolean {
    return this.dirty.empty && this.flushing === undefined && this.size === this.base.size && this.baseLimit >= this.base.size;
  }

  private bytesChanged(): void {
    this.byteChanges++;
    for (const fn of this.changeListeners) fn();
  }

  private touch(): void {
    if (!this.changed) this.dirtySince = Date.now();
    this.changed = true;
  }

  /**
   * `owned`: the caller hands `buf` over and never changes it (ExtentMap.write). `release`: called
   * once nothing here reads `buf` any more: at once when it was copied, else when the map that
   * holds it is retired (its commit built) and no read holds that map. Not called if this throws.
   */
  write(pos: number, buf: Uint8Array, owned = false, release?: () => void): void {
    if (this.failure) throw this.takeFailure();
    this.bytesChanged();
    this.dirty.write(pos, buf, owned, owned ? release : undefined);
    if (!owned) release?.();
    if (pos + buf.length > this.size) this.size = pos + buf.length;
    this.mtime = this.ctime = Date.now();
    this.touch();
  }

  truncate(size: number): void {
    if (this.failure) throw this.takeFailure();
    this.bytesChanged();
    this.dirty.truncate(size);
    this.flushing?.truncate(size);
    if (size < this.baseLimit) this.baseLimit = size;
    if (size < this.truncSince) this.truncSince = size;
    this.size = size;
    this.mtime = this.ctime = Date.now();
    this.touch();
  }

  /**
   * Takes `v` (a durable version, another file's) as this file's whole content: a fastcopy into
   * this open, empty file, committed like a write. False (nothing done) unless the file is
   * empty with nothing pending, so no buffered byte or round in flight can be lost.
   */
  adopt(v: FileVersion): boolean {
    if (this.failure) throw this.takeFailure();
    if (this.size !== 0 || !this.idle || this.flushing) return false;
    this.bytesChanged();
    this.base = v;
    this.baseLimit = v.size;
    this.size = v.size;
    this.truncSince = Infinity;
    this.mtime = this.ctime = Date.now();
    this.touch();
    return true;
  }

  /**
   * Takes `v`, a version of this file's whole new content built by a stream (Namespace.stream,
   * a full backup's disk) and not yet durable, as its content; `deps` are the containers it
   * relies on, recorded with it by the next commit. False (nothing done) while bytes are
   * buffered or a commit is building a version: they would be lost or land over it.
   */
  replaceWith(v: FileVersion, deps: Iterable<number>): boolean {
    if (this.failure) throw this.takeFailure();
    if (!this.dirty.empty || this.flushing) return false;
    this.bytesChanged();
    this.base = v;
    this.baseLimit = v.size;
    this.size = v.size;
    this.truncSince = Infinity;
    for (const d of deps) this.unconfirmedDeps.add(d);
    this.mtime = this.ctime = Date.now();
    this.touch();
    return true;
  }

  setTimes(mtime: number | null, ctime: number): void {
    if (mtime !== null) this.mtime = mtime;
    this.ctime = ctime;
    this.touch();
  }

  /** `rescue`: damage met in the store is read from another copy (store/repair/read-rescue.ts). */
  async read(pos: number, len: number, rescue?: ReadRescue): Promise<Buffer> {
    const end = Math.min(this.size, pos + len);
    if (pos >= end) return Buffer.alloc(0);
    const out = Buffer.allocUnsafe(end - pos);
    await this.readInto(pos, out, rescue);
    return out;
  }

  /**
   * read() for a large reader with its own reads in flight (a restore): bytes only the
   * store holds are decoded straight into the result, past the shared read-ahead windows
   * (SegmentStore.readDirect); a range with bytes not yet committed is read as read() does.
   * `into`: a buffer of the caller's to read into when it is large enough (the result is then
   * a view of it).
   */
  async readDirect(pos: number, len: number, rescue?: ReadRescue, into?: Buffer): Promise<Buffer> {
    const end = Math.min(this.size, pos + len);
    if (pos >= end) return Buffer.alloc(0);
    if (end > this.baseLimit || overlaps(this.dirty, pos, end) || (this.flushing !== undefined && overlaps(this.flushing, pos, end))) return this.read(pos, len, rescue);
    // A commit that lands meanwhile changes no byte of the range: none of it was dirty.
    return this.store.readDirect(this.base, pos, end - pos, rescue, into);
  }

  /**
   * Fills `out` from offset `pos` with the newest bytes: dirty extents over those being
   * committed over the version (zeros past its visible end). Returns the byte count (less than
   * out.length only at the end of the file): at once when no store read must be awaited.
   */
  readInto(pos: number, out: Buffer, rescue?: ReadRescue): number | Promise<number> {
    const end = Math.min(this.size, pos + out.length);
    if (pos >= end) return 0;
    const n = end - pos;
    const baseEnd = Math.min(end, this.baseLimit);
    // Skip the store when dirty bytes cover the whole range (reading back what was just written).
    if (baseEnd <= pos || this.dirty.covers(pos, end)) {
      out.fill(0, 0, n);
      this.overlay(out, pos, n, undefined, undefined);
      return n;
    }
    if (baseEnd < end) out.fill(0, baseEnd - pos, n);
    const flushing = this.flushing;
    const dirty = this.dirty;
    const r = this.store.readInto(this.base, pos, out.subarray(0, baseEnd - pos), rescue);
    if (typeof r === 'number') {
      this.overlay(out, pos, n, undefined, undefined);
      return n;
    }
    // Commits may land meanwhile (more than one: the one in progress, then one of the bytes
    // dirty now): what was read is the version from before them, so every extent map that
    // was newer than it is laid over, oldest first. Held meanwhile: a map retired before
    // then keeps its buffers (ExtentMap.retire) until this overlay has read them.
    flushing?.hold();
    dirty.hold();
    const done = () => {
      flushing?.unhold();
      dirty.unhold();
    };
    return r.then(
      () => {
        try {
          this.overlay(out, pos, n, flushing, dirty);
        } finally {
          done();
        }
        return n;
      },
      (err) => {
        done();
        throw err;
      },
    );
  }

  /**
   * Hands `use` the bytes from `pos` (at most `len`, fewer at the end of the file) as one
   * Buffer, valid only during the call and not to be written (SegmentStore.readWith): without a
   * copy when they come from the store's read-ahead. False, without calling `use`, when bytes
   * not yet committed (or a truncation) lie in the range: readInto() then lays them over.
   * Returns true when `use` ran at once, else a promise that resolves once it ran.
   */
  readWith(pos: number, len: number, use: (b: Buffer) => void): boolean | Promise<void> {
    const end = Math.min(this.size, pos + len);
    if (pos >= end) {
      use(Buffer.alloc(0));
      return true;
    }
    if (end > this.baseLimit || overlaps(this.dirty, pos, end) || (this.flushing !== undefined && overlaps(this.flushing, pos, end))) return false;
    // A commit that lands meanwhile changes no byte of the range: none of it was dirty.
    return this.store.readWith(this.base, pos, end - pos, use);
  }

  private overlay(out: Buffer, pos: number, n: number, wasFlushing: ExtentMap | undefined, wasDirty: ExtentMap | undefined): void {
    const view = n === out.length ? out : out.subarray(0, n);
    const gone = (m: ExtentMap | undefined): m is ExtentMap => m !== undefined && m !== this.flushing && m !== this.dirty && !m.empty;
    if (gone(wasFlushing)) wasFlushing.overlay(view, pos);
    if (gone(wasDirty)) wasDirty.overlay(view, pos);
    if (this.flushing && !this.flushing.empty) this.flushing.overlay(view, pos);
    if (!this.dirty.empty) this.dirty.overlay(view, pos);
  }

  /**
   * Commits what is buffered. With `sync` (fsync), resolves once the data and the inode are
   * durable. Without (close), resolves once the new version is built; it becomes durable in
   * the next group round. Errors reach the caller either way.
   */
  commit(sync: boolean): Promise<void> {
    this.pendingCommits++;
    const run = this.chain.then(() => this.commitNow(sync)).finally(() => this.pendingCommits--);
    this.chain = run.catch(() => {});
    return run;
  }

  private async commitNow(sync: boolean): Promise<void> {
    if (!this.changed) {
      if (sync || this.handles === 0) this.appends.drop();
      if (sync && this.unconfirmed > 0) await this.target.record(this, this.base, new Set(this.unconfirmedDeps), true);
      return;
    }
    const ext = this.dirty;
    this.dirty = new ExtentMap();
    this.flushing = ext;
    const extents = ext.list();
    const limit = this.baseLimit;
    const size = this.size;
    this.truncSince = Infinity;
    this.changed = false;
    // Counted from here, not once built: a file being committed is not idle, and must stay
    // registered (the only place its bytes are) while its version is built.
    this.unconfirmed++;
    let v = this.base;
    const deps = new Set<number>();
    // A truncation's version is in no root while the edit after it runs: hold both writes'
    // containers from GC until the new version is in `inFlight` (store/gc/write-holds.ts).
    const hold = this.store.holdWrites();
    try {
      if (limit < v.size) {
        const r = await this.store.truncate(v, limit);
        v = r.version;
        for (const d of r.deps) deps.add(d);
      }
      if (extents.length > 0 || size !== v.size) {
        const r = (await this.appends.commit(v, extents, size)) ?? (await this.store.writeExtents(v, extents, size));
        v = r.version;
        for (const d of r.deps) deps.add(d);
      }
    } catch (err) {
      // Nothing acknowledged to a writer is dropped: the bytes go back and a later commit
      // retries them; the error is reported now.
      const mine = this.dirty;
      this.dirty = ext;
      for (const e of mine.list()) this.dirty.write(e.offset, e.data);
      // Copied: the newer map's handed-over buffers are no longer read here.
      mine.retire();
      this.changed = true;
      this.flushing = undefined;
      this.unconfirmed--;
      hold.release();
      throw err;
    }
    this.base = v;
    this.baseLimit = Math.min(v.size, this.truncSince);
    this.flushing = undefined;
    // An fsync or the last close ends a stream: its writer (and the slab it holds) goes.
    if (sync || this.handles === 0) this.appends.drop();
    // Its bytes are in v now (the store copied them into its slabs): reads go to the store.
    ext.retire();
    for (const d of deps) this.unconfirmedDeps.add(d);
    this.inFlight.add(v);
    hold.release();
    const durable = this.target.record(this, v, new Set(this.unconfirmedDeps), sync).then(
      () => {
        this.inFlight.delete(v);
        this.unconfirmed--;
        this.durable = v;
        if (this.base === v) this.unconfirmedDeps.clear();
      },
      (err: Error) => {
        this.inFlight.delete(v);
        this.unconfirmed--;
        this.revert(v, err);
        throw err;
      },
    );
    if (sync) await durable;
    else durable.catch(() => {});
  }

  /** A round failed: fall back to the last durable version and report the loss later. */
  private revert(v: FileVersion, err: Error): void {
    this.failure ??= err;
    if (this.base !== v) return; // a newer version is pending; its round fails the same way
    this.bytesChanged();
    this.base = this.durable;
    this.baseLimit = this.durable.size;
    this.size = Math.max(this.durable.size, this.dirty.end);
    this.unconfirmedDeps.clear();
  }
}

/** Whether dirty extents of `m` may lie in [pos, end) (by their overall span). */
function overlaps(m: ExtentMap, pos: number, end: number): boolean {
  return !m.empty && m.start < end && m.end > pos;
}
