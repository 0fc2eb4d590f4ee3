// The namespace: shares, directories, files, and (later layers) snapshots, clones and fastcopy,
// all in LevelDB beside the segment store's index. FUSE and the control plane enter through
// this class.
//
// Memory for unwritten data is bounded: each open file commits once it holds
// FILE_COMMIT_BYTES, or once its oldest change is COMMIT_AGE_MS old, and writers wait while
// all files together hold more than DIRTY_LIMIT_BYTES. A file written as a stream of large
// extents (a copy, a backup) commits every STREAM_COMMIT_BYTES instead, one commit right after
// the other, so committing overlaps writing from the first MiBs on and little is left to commit
// at the end (a full backup's last 64 MiB took 0.5 s after its copy had finished).

import fs from 'node:fs/promises';
import { vmError } from '../errors.js';
import type { FileVersion, LastGc, SegmentStore, StoreStats, WindowWatcher } from '../store/store.js';
import { NsContext } from './context.js';
import { INODE } from './keys.js';
import { decodeInode, NodeType } from './records.js';
import { FsOps } from './fs-ops.js';
import { NodeOps } from './node-ops.js';
import { Shares } from './shares.js';
import { Fastcopy } from './fastcopy.js';
import { Snapshots } from './snapshots.js';
import { Installer } from './install.js';
import { FileStream } from './file-stream.js';
import type { OpenFile } from './open-file.js';

export interface NamespaceOptions {
  /** Commit an open file once it buffers this much. Default 64 MiB. */
  fileCommitBytes?: number;
  /**
   * Commit an open file written as a stream of large extents (OpenFile.streaming) once it
   * buffers this much and no commit of it is pending. Default 8 MiB.
   */
  streamCommitBytes?: number;
  /** All open files together may buffer this much before writers wait. Default 512 MiB. */
  dirtyLimitBytes?: number;
  /**
   * A file written as a stream (OpenFile.streaming, or with a kept stream writer) may hold this
   * much not yet taken by a commit before its next write waits for the commit in flight.
   * Default 30 MiB: see Namespace.streamAhead.
   */
  streamAheadBytes?: number;
  /** Commit changes older than this. Default 5 s. */
  commitAgeMs?: number;
  /**
   * Let a stream's kept store writer go when no commit used it for this long while its file
   * stays open (namespace/append-stream.ts). Default 30 s: a stream still being written commits
   * at least every `commitAgeMs`.
   */
  streamIdleMs?: number;
  /** Where errors nobody else would see go (commits after the last close). */
  log?: (line: string) => void;
  /** The clock retention locks are judged by (ms since the epoch). Default Date.now. */
  now?: () => number;
}

function inodeSpace(): { gte: Buffer; lt: Buffer } {
  return { gte: Buffer.from([INODE]), lt: Buffer.from([INODE + 1]) };
}

export interface NamespaceStats {
  /** Sum of the sizes of the files in all shares (snapshots not counted). */
  logicalBytes: number;
  /** Sum of the sizes of the files in all snapshots. */
  snapshotBytes: number;
  shares: number;
  snapshots: number;
  files: number;
  store: StoreStats;
  /** What the last garbage collection (or dry run) found, if any ran. */
  lastGc: LastGc | undefined;
}

export class Namespace {
  readonly ctx: NsContext;
  readonly shares: Shares;
  readonly fs: FsOps;
  /** The same operations addressed by node id (FUSE low-level, NFS handles). */
  readonly nodes: NodeOps;
  readonly snapshots: Snapshots;
  /** Files and directory trees copied by reference, also out of snapshots and across shares. */
  readonly fastcopy: Fastcopy;
  /** Whole new file versions built elsewhere (the transfer receiver), installed atomically. */
  readonly installer: Installer;
  private readonly opts: Required<Omit<NamespaceOptions, 'log' | 'now'>>;
  private readonly log: (line: string) => void;
  private timer: NodeJS.Timeout | undefined;
  private waiters: Array<() => void> = [];
  private closed = false;

  private constructor(store: SegmentStore, opts: NamespaceOptions) {
    this.ctx = new NsContext(store, opts.now);
    this.shares = new Shares(this.ctx);
    this.fs = new FsOps(this.ctx, {
      create: (n) => this.shares.create(n),
      remove: (n, o) => this.shares.remove(n, o),
      list: () => this.shares.list(),
      snapshotNames: (v) => this.shares.snapshotNames(v),
    });
    this.nodes = new NodeOps(this.ctx, this.fs, {
      create: (n) => this.shares.create(n),
      remove: (n, o) => this.shares.remove(n, o),
    });
    this.snapshots = new Snapshots(this.ctx, this.shares, (vol) => this.flushAll((v) => v === vol));
    this.fastcopy = new Fastcopy(this.ctx, (vol) => this.flushAll((v) => v === vol));
    this.installer = new Installer(this.ctx, (vol) => this.flushAll((v) => v === vol));
    this.opts = {
      fileCommitBytes: opts.fileCommitBytes ?? 64 * 1024 * 1024,
      streamCommitBytes: opts.streamCommitBytes ?? 8 * 1024 * 1024,
      dirtyLimitBytes: opts.dirtyLimitBytes ?? 512 * 1024 * 1024,
      streamAheadBytes: opts.streamAheadBytes ?? 30 * 1024 * 1024,
      commitAgeMs: opts.commitAgeMs ?? 5000,
      streamIdleMs: opts.streamIdleMs ?? 30_000,
    };
    this.log = opts.log ?? ((l) => process.stderr.write(l + '\n'));
  }

  static async open(store: SegmentStore, opts: NamespaceOptions = {}): Promise<Namespace> {
    const ns = new Namespace(store, opts);
    await ns.ctx.startEpoch();
    const swept = await ns.shares.sweepOrphans();
    if (swept > 0) ns.log(`namespace: finished removing ${swept} ${swept === 1 ? 'share or snapshot' : 'shares or snapshots'} an earlier run left half-deleted`);
    ns.timer = setInterval(() => ns.tick(), 1000);
    ns.timer.unref();
    return ns;
  }

  get store(): SegmentStore {
    return this.ctx.store;
  }

  /** The store's read-ahead windows, as they become ready and before reuse (SegmentStore.watchReadAhead). */
  watchReadAhead(w: WindowWatcher | undefined): void {
    this.ctx.store.watchReadAhead(w);
  }

  // ---- write path with bounded memory ------------------------------------------------------

  private buffered(): number {
    let n = 0;
    for (const f of this.ctx.openFiles.values()) n += f.buffered;
    return n;
  }

  /**
   * Writes into an open file, committing and waiting as the memory bounds require. With
   * `owned` the caller hands `buf` over and never changes it again: it is kept without a copy.
   * With `once` the caller copies an image and writes each byte of it once (a backup's dirty
   * runs: scattered over the disk, never rewritten), so holding its writes coalesces nothing:
   * the file commits in stream steps (streamCommitBytes, one commit right after the other) as a
   * sequential stream does, overlapping the copy, instead of at fileCommitBytes, which left an
   * incremental backup most of a 64 MiB commit to wait for after its last read.
   * `release` (with or without `owned`) is called once, when nothing here reads `buf` any more:
   * at once when it was copied or the write failed, else when the commit that took it is built
   * and no read still lays it over (ExtentMap.retire): the FUSE write ring's blocks come back so.
   */
  async write(fh: number, pos: number, buf: Uint8Array, opts?: { owned?: boolean; once?: boolean; release?: () => void }): Promise<number> {
    let kept = false;
    try {
      if (this.closed) throw vmError('CLOSED', 'the appliance is shutting down');
      while (this.buffered() > this.opts.dirtyLimitBytes) {
        this.commitLargest();
        await new Promise<void>((resolve) => this.waiters.push(resolve));
      }
      // A `once` writer (a backup's copy) bounds itself with drain() (disk-copy.ts). The test
      // is made here, not in an async call: every small write (rsync's) would pay its await.
      if (!opts?.once && this.aheadOf(this.fs.handle(fh).file)) await this.streamAhead(this.fs.handle(fh).file);
      this.fs.write(fh, pos, buf, opts?.owned ?? false, opts?.release);
      kept = true;
    } finally {
      // Not taken (an error): nothing here reads buf any more.
      if (!kept) opts?.release?.();
    }
    const f = this.fs.handle(fh).file;
    if (f.dirtyBytes >= this.opts.fileCommitBytes) this.background(f);
    else this.streamOn(f, opts?.once ?? false);
    return buf.length;
  }

  /**
   * A stream's writer waits while its file holds more than streamAheadBytes not yet taken by a
   * commit, until the commit in flight is built and the next one has taken them. Why: a writer
   * faster than the store (dd or cp into the mount on a busy machine, a duplicate pass) ran up
   * to the dirty limit (512 MiB) ahead of its commits, and every payload the namespace holds
   * keeps its block of the FUSE write ring (128 x 1 MiB) until the commit that took it is
   * built: past 128 MiB the writes fell back to external Buffers (the GC work the ring
   * removed), and the final fsync waited for everything still dirty. The store is the bound
   * either way. Counted without the commit in flight, so the next commit always finds up to
   * streamAheadBytes waiting and the store never idles for the writer. One stream holds at most
   * 2 x (30 + 1) blocks (waiting, and taken by the commit in flight; + 1: the write that crossed
   * the bound), two streams 124 of the ring's 128. Scattered writers (not streaming) keep the
   * 64 MiB commit threshold, where rewrites coalesce.
   */
  private aheadOf(f: OpenFile): boolean {
    return f.dirtyBytes > this.opts.streamAheadBytes && (f.streaming || f.streamWriterLive);
  }

  private async streamAhead(f: OpenFile): Promise<void> {
    while (this.aheadOf(f)) {
      if (f.failed) throw f.takeFailure();
      if (!f.commitPending) this.background(f);
      await f.settled();
      // The commit that streamOn queued as that one ended takes the dirty bytes in a microtask
      // of its own: look again once it has, not at the bytes it is about to take.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Waits until the open file `fh` buffers at most `maxBytes` (dirty plus being committed),
   * committing it as needed. A writer that produces faster than the store commits (a backup
   * reading several NBD connections) calls this to bound its own memory well below the
   * namespace-wide dirty limit, while the commit in progress still overlaps its next writes.
   */
  async drain(fh: number, maxBytes: number): Promise<void> {
    const f = this.fs.handle(fh).file;
    while (f.buffered > maxBytes) {
      if (f.failed) throw f.takeFailure();
      if (!f.committing && f.dirtyBytes > 0) this.background(f);
      await f.settled();
    }
    if (f.failed) throw f.takeFailure();
  }

  /**
   * Starts writing the whole new content of the open file `fh` as one sequential stream
   * (file-stream.ts): from offset 0 to the file's size, then `finish()`. For a writer that has
   * every byte in order (a full backup's disk): one store writer instead of a commit every few
   * MiB. Refused while the file buffers writes.
   */
  stream(fh: number): FileStream {
    if (this.closed) throw vmError('CLOSED', 'the appliance is shutting down');
    const f = this.fs.handle(fh).file;
    if (f.dirtyBytes > 0) throw vmError('CONFLICT', 'the file has buffered writes; a stream replaces its whole content');
    // Taken first: the file's earlier commit may still be appending when the stream begins.
    const hold = this.store.holdWrites();
    return new FileStream(f, this.store.writer(), hold);
  }

  private background(f: import('./open-file.js').OpenFile): void {
    void f
      .commit(false)
      .catch(() => {
        // kept by the file; reported at its next write, flush or fsync
      })
      .finally(() => {
        this.wake();
        if (!f.failed) this.streamOn(f);
      });
  }

  /**
   * A stream's next commit starts as soon as the last one is done and enough has arrived.
   * `once`: the writer says it writes each byte once (see write), stream or not.
   */
  private streamOn(f: import('./open-file.js').OpenFile, once = false): void {
    if (!this.closed && f.dirtyBytes >= this.opts.streamCommitBytes && !f.commitPending && (once || f.streaming)) this.background(f);
  }

  private commitLargest(): void {
    let big: import('./open-file.js').OpenFile | undefined;
    for (const f of this.ctx.openFiles.values()) if (!big || f.dirtyBytes > big.dirtyBytes) big = f;
    if (big && big.dirtyBytes > 0) this.background(big);
    else setTimeout(() => this.wake(), 50);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }

  private tick(): void {
    for (const [key, f] of this.ctx.openFiles) {
      if (f.handles === 0 && f.idle) {
        this.ctx.openFiles.delete(key);
      } else if (f.hasChanges && f.dirtyAgeMs >= this.opts.commitAgeMs) {
        void f.commit(false).catch((err) => {
          if (f.handles === 0) this.log(`namespace: committing a closed file failed, will retry: ${(err as Error).message}`);
        });
      } else if (!f.hasChanges) {
        f.releaseIdleStream(this.opts.streamIdleMs);
      }
    }
  }

  /** Commits every open file (for snapshots and shutdown). */
  async flushAll(filter?: (vol: number) => boolean): Promise<void> {
    const files = [...this.ctx.openFiles.values()].filter((f) => !filter || filter(f.vol));
    await Promise.all(files.map((f) => f.commit(true)));
  }

  // ---- garbage collection roots ------------------------------------------------------------

  /**
   * Every file version that is live: open files' versions (including those still on their way
   * to an inode), then every inode of every share and snapshot as LevelDB holds it. In that
   * order, a version that moves from an open file into an inode meanwhile is seen at least
   * once. Writes still building a version hold their containers from the sweep instead
   * (store/gc/write-holds.ts).
   */
  async *gcRoots(): AsyncGenerator<FileVersion> {
    const open: Array<FileVersion> = [];
    for (const f of this.ctx.openFiles.values()) {
      // A closed file whose inode is gone (unlinked) holds nothing anyone can read.
      if (f.handles > 0 || (await this.ctx.meta.getInode(f.vol, f.ino))) open.push(...f.versions());
    }
    for (const v of open) yield v;
    const db = this.store.db;
    // Queued metadata changes first (kv/db.ts, writeLater): the snapshot must hold them.
    await this.ctx.meta.settled();
    const snap = db.snapshot();
    try {
      for await (const v of db.values({ ...inodeSpace(), snapshot: snap })) {
        const n = decodeInode(v);
        if (n.type === NodeType.File) yield n.version;
      }
    } finally {
      await snap.close();
    }
  }

  // ---- statistics ---------------------------------------------------------------------------

  async stats(): Promise<NamespaceStats> {
    let logical = 0;
    let snapBytes = 0;
    let snaps = 0;
    let files = 0;
    const names = await this.ctx.meta.shareNames();
    for (const s of names) {
      const v = await this.ctx.volume(s.vol);
      logical += v.bytes;
      files += v.files;
      for (const p of await this.ctx.meta.snapshotNames(s.vol)) {
        snaps++;
        snapBytes += (await this.ctx.volume(p.vol)).bytes;
      }
    }
    const lastGc = await this.store.lastGc();
    return { logicalBytes: logical, snapshotBytes: snapBytes, shares: names.length, snapshots: snaps, files, store: await this.store.stats(), lastGc };
  }

  /** Capacity of the data disk, for statfs. */
  async capacity(): Promise<{ totalBytes: number; freeBytes: number; availableBytes: number; files: number }> {
    const st = await fs.statfs(this.store.dir);
    const stats = await this.stats();
    return { totalBytes: st.blocks * st.bsize, freeBytes: st.bfree * st.bsize, availableBytes: st.bavail * st.bsize, files: stats.files };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    const failures: string[] = [];
    for (const f of this.ctx.openFiles.values()) {
      await f.commit(true).catch((err) => failures.push((err as Error).message));
    }
    this.wake();
    if (failures.length) this.log(`namespace: ${failures.length} ${failures.length === 1 ? 'file' : 'files'} could not be committed at shutdown: ${failures[0]}`);
  }
}

export type { FileVersion, WindowWatcher };
