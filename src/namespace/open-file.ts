// An open regular file: its committed version plus bounded write buffers. Reads see the
// newest bytes (dirty, then those being committed, then the committed version). A commit
// turns the dirty extents into a new version through the store's offset-write API (so a
// sequential stream is chunked as it arrives and a small update re-chunks only its
// neighbourhood), makes the data durable, and then records the new version in the inode.
//
// Commits of one file run one after another; writes go on into a fresh buffer meanwhile.

import { vmError } from '../errors.js';
import type { SegmentStore } from '../store/store.js';
import type { FileVersion } from '../store/version.js';
import { ExtentMap } from './extent-map.js';

export interface CommitTarget {
  /** Records the committed version and times in the inode (one durable batch). */
  record(f: OpenFile, version: FileVersion, sync: boolean): Promise<void>;
}

export class OpenFile {
  readonly vol: number;
  readonly ino: number;
  /** The last committed version. */
  base: FileVersion;
  /** Bytes of `base` still visible (a truncate hides the rest until the next commit). */
  private baseLimit: number;
  /** The file's size as callers see it now. */
  size: number;
  mtime: number;
  ctime: number;
  /** Descriptors open on this file (the FUSE handles). */
  handles = 0;
  private dirty = new ExtentMap();
  private flushing: ExtentMap | undefined;
  private truncSince = Infinity;
  private chain: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private dirtySince = 0;
  /** Set when anything (data, size, times) awaits a commit. */
  private changed = false;

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
    this.baseLimit = base.size;
    this.size = base.size;
    this.mtime = times.mtime;
    this.ctime = times.ctime;
  }

  /** Bytes held in memory for this file (dirty and being committed). */
  get buffered(): number {
    return this.dirty.bytes + (this.flushing?.bytes ?? 0);
  }

  get dirtyBytes(): number {
    return this.dirty.bytes;
  }

  get dirtyAgeMs(): number {
    return this.changed ? Date.now() - this.dirtySince : 0;
  }

  get hasChanges(): boolean {
    return this.changed;
  }

  /** A commit that failed (disk full) is reported to the next caller that can return an error. */
  takeFailure(): Error | undefined {
    const f = this.failure;
    this.failure = undefined;
    return f;
  }

  private touch(): void {
    if (!this.changed) this.dirtySince = Date.now();
    this.changed = true;
  }

  write(pos: number, buf: Uint8Array): void {
    if (this.failure) throw this.takeFailure();
    this.dirty.write(pos, buf);
    if (pos + buf.length > this.size) this.size = pos + buf.length;
    this.mtime = this.ctime = Date.now();
    this.touch();
  }

  truncate(size: number): void {
    if (this.failure) throw this.takeFailure();
    this.dirty.truncate(size);
    this.flushing?.truncate(size);
    if (size < this.baseLimit) this.baseLimit = size;
    if (size < this.truncSince) this.truncSince = size;
    this.size = size;
    this.mtime = this.ctime = Date.now();
    this.touch();
  }

  setTimes(mtime: number | null, ctime: number): void {
    if (mtime !== null) this.mtime = mtime;
    this.ctime = ctime;
    this.touch();
  }

  async read(pos: number, len: number): Promise<Buffer> {
    const end = Math.min(this.size, pos + len);
    if (pos >= end) return Buffer.alloc(0);
    const out = Buffer.alloc(end - pos);
    const baseEnd = Math.min(end, this.baseLimit);
    // Skip the store when dirty bytes cover the whole range (reading back what was just written).
    if (baseEnd > pos && !this.dirty.covers(pos, end)) {
      const base = this.base;
      const bytes = await this.store.read(base, pos, baseEnd - pos);
      bytes.copy(out, 0);
    }
    this.flushing?.overlay(out, pos);
    this.dirty.overlay(out, pos);
    return out;
  }

  /**
   * Commits what is buffered. With `sync`, resolves only once the data and the inode are
   * durable (fsync); errors reach the caller. Without, errors are kept for the next write,
   * flush or fsync of the file.
   */
  commit(sync: boolean): Promise<void> {
    const run = this.chain.then(() => this.commitNow(sync));
    this.chain = run.catch((err) => {
      if (!sync) this.failure ??= err as Error;
    });
    return run;
  }

  private async commitNow(sync: boolean): Promise<void> {
    if (!this.changed) return;
    const ext = this.dirty;
    this.dirty = new ExtentMap();
    this.flushing = ext;
    const extents = ext.list();
    const limit = this.baseLimit;
    const size = this.size;
    this.truncSince = Infinity;
    this.changed = false;
    try {
      let v = this.base;
      const deps = new Set<number>();
      if (limit < v.size) {
        const r = await this.store.truncate(v, limit);
        v = r.version;
        for (const d of r.deps) deps.add(d);
      }
      if (extents.length > 0 || size !== v.size) {
        const r = await this.store.writeExtents(v, extents, size);
        v = r.version;
        for (const d of r.deps) deps.add(d);
      }
      await this.store.commit([], deps);
      await this.target.record(this, v, sync);
      this.base = v;
      this.baseLimit = Math.min(v.size, this.truncSince);
    } catch (err) {
      // Put the bytes back so nothing acknowledged to a writer is silently dropped; the
      // failure is reported and a later commit retries them.
      const mine = this.dirty;
      this.dirty = ext;
      for (const e of mine.list()) this.dirty.write(e.offset, e.data);
      this.changed = true;
      throw err;
    } finally {
      this.flushing = undefined;
    }
  }

  /** Waits for commits in flight. */
  settle(): Promise<void> {
    return this.chain;
  }
}

export function assertWritable(readOnly: boolean, what: string): void {
  if (readOnly) throw vmError('READ_ONLY', `${what} is in a snapshot, which is read-only`);
}
