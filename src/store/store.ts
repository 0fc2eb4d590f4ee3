// SegmentStore: the public face of the segment store. Layers above (the namespace) use this
// file only: what they need from the store's parts is re-exported at its end (the layer test
// checks it); StoreCore and the parts behind it are the store's own.
//
// Contract for callers:
// - write*/edit/truncate return a new FileVersion and the containers it depends on. The
//   version is readable at once, but durable only after commit() with those deps resolves;
//   commit() writes the caller's own LevelDB operations (e.g. the inode that now points at the
//   version) in the same atomic batch as the index entries, after the data is fsynced: one
//   batch, one sync. Either every operation of a commit is durable or none is visible.
// - appender(old) is a writer that goes on from old's content: each checkpoint() returns the
//   version of everything written so far (the tree edit/write* would build for those bytes),
//   under the same rule as write*; the writer is finished or discarded by its caller.
// - syncData() only fsyncs containers (the long part of a commit, for a caller that holds its
//   own lock around commit()); sync() makes every LevelDB write completed before it durable,
//   at no cost when they already are. Writes the caller made through writeBatch without sync
//   are durable only after one of them (or a commit) returns.
// - failure(deps) says whether a version that depends on those containers can still be
//   committed; commit() rejects with that error otherwise and the data must be written again.
// - Buffers passed in may be reused by the caller once the call resolves. Buffers returned
//   belong to the caller. readInto() never writes into the caller's buffer from another thread.
// - Every byte returned by read() has been verified against its fingerprint; a mismatch
//   throws CORRUPT_SEGMENT naming container and offset, and nothing else is returned.
// - collectGarbage() may run while ingest and commits go on (gc/gc.ts); its roots must yield
//   every version that is live or may become live before it ends (open files first).
// - One process opens a data directory at a time (STORE_LOCKED otherwise).

import { ClassicLevel } from 'classic-level';
import fsp from 'node:fs/promises';
import { type StoreSnapshot, takeSnapshot } from './copy-snapshot.js';
import { decodeGcRecord, type GcRecord } from './meta-records.js';
import path from 'node:path';
import { fromSystemError, vmError } from '../errors.js';
import { BloomFilter } from './index/bloom.js';
import { loadBloom, removeBloom, saveBloom } from './index/bloom-file.js';
import { createCodecEngine } from './codec/engine.js';
import { IngestEngine } from './ingest.js';
import { recoverContainers, type RepairReport } from './container/recovery.js';
import { rebuildIndex, type RebuildReport } from './index/rebuild.js';
import { type Progress, type VerifiedContainers, verifyContainers, verifyTrees, type VerifyOptions, type VerifyReport } from './verify/verify.js';
import { allDurable, type Db, settled, writeBatch } from '../kv/db.js';
import { tuneMalloc } from './native.js';
import { ReadAhead, type WindowWatcher, zeroView } from './tree/read-ahead.js';
import { SegmentReader } from './segment-reader.js';
import type { ChunkerParams } from './segmenter/segmenter.js';
import { segmenterImpl } from './segmenter/segmenter.js';
import { fsyncDir } from './container/file-io.js';
import { createConfig, readConfig, type StoreConfig } from './store-config.js';
import type { DbOp } from '../kv/db.js';
import { readCheckpoint } from './checkpoint.js';
import { readCounters } from './counters.js';
import { metaKey } from './keys.js';
import { StoreCore } from './store-core.js';
import { Superseded } from './index/superseded.js';
import { TreeView } from './tree/reader.js';
import { collectGarbage, type GcOptions, type GcReport } from './gc/gc.js';
import type { WriteHold } from './gc/write-holds.js';
import { registerInternals } from './internals.js';
import { type Piece, TreeWriter, type WriteResult } from './tree/writer.js';
import { acceptSegment, acceptSegments, type AcceptManyResult, type AcceptResult, locate, RecipeWriter, type SentPayload } from './remote-ingest.js';
import { EMPTY_VERSION, type FileVersion } from './tree/version.js';
import { ReadRescue } from './repair/read-rescue.js';
import { type RepairItem, repairSegment, repairSegments, type RepairResult } from './repair/segment-repair.js';

/**
 * readWith's own reads (bytes the read-ahead windows do not hold) go into pooled buffers of
 * this size: a fresh one per read cost a page fault per 4 KiB (a FUSE read is up to 1 MiB).
 */
const OWN_BYTES = 1024 * 1024;
const OWN_KEEP = 8;
const ownFree: Buffer[] = [];

export interface OpenOptions {
  /** Segment sizes for a new store (ignored for an existing one: they are recorded in it). */
  chunker?: ChunkerParams;
  /** Codec worker threads when the native addon is absent (default: cores, at most 4). */
  workers?: number;
  /** Refuse to create a store that does not exist yet. */
  mustExist?: boolean;
  /**
   * Free space on the data disk below which new data is refused (NO_SPACE), so deletes and
   * GC can still run. Default: 1% of the disk, at least 64 MiB, at most 2 GiB (container/space-guard.ts).
   */
  reserveBytes?: number;
  /** Where the store reports read errors, naming the file and offset (default: stderr). */
  log?: (line: string) => void;
  /**
   * Bytes of verified data segments kept for file reads (decoded-cache.ts; default 256 MiB, or
   * VMVAULT_DECODED_CACHE_MB; 0 keeps none).
   */
  decodedCacheBytes?: number;
}

export interface StoreStats {
  /** Bytes written into the store by writers (all versions, including zero runs). */
  ingestedBytes: number;
  /** Of those, bytes that were runs of zeros (never stored). */
  zeroBytes: number;
  /** Unique segments (data and tree nodes) and their plain size. */
  segments: number;
  treeNodes: number;
  uniqueBytes: number;
  /** Bytes of container files on disk (payloads plus headers and tables). */
  storedBytes: number;
  containers: number;
  /** ingested / unique: how much deduplication saved. */
  dedupRatio: number;
  /** unique / stored payload: how much LZ4 saved. */
  compressionRatio: number;
  /** ingested / stored: both together. */
  totalRatio: number;
  segmenter: 'native' | 'ts';
  chunker: ChunkerParams;
  index: { bloomBytes: number; bloomCapacity: number; cachedContainers: number; cachedEntries: number };
}

export class SegmentStore {
  readonly dir: string;
  readonly config: StoreConfig;
  readonly recovery: RepairReport | undefined;
  private readonly core: StoreCore;
  private readonly engine: IngestEngine;
  readonly reader: SegmentReader;
  private readonly readAhead = new ReadAhead();
  private closed = false;

  private constructor(dir: string, config: StoreConfig, core: StoreCore, recovery: RepairReport | undefined, decodedCacheBytes?: number) {
    registerInternals(this, core);
    this.dir = dir;
    this.config = config;
    this.core = core;
    this.engine = new IngestEngine(core);
    this.reader = new SegmentReader(core, decodedCacheBytes);
    this.recovery = recovery;
  }

  static async open(dir: string, opts: OpenOptions = {}): Promise<SegmentStore> {
    dir = path.resolve(dir);
    tuneMalloc();
    let config = await readConfig(dir);
    const created = !config;
    if (!config) {
      if (opts.mustExist) throw vmError('NOT_FOUND', `no vmvault store in ${dir}`);
      config = await createConfig(dir, opts.chunker);
    }
    // A 4 MiB block cache (LevelDB's default is 8): index reads are few (the summary filter and
    // the locality cache answer most lookups), and the index's RAM per segment is bounded.
    const db: Db = new ClassicLevel<Buffer, Buffer>(path.join(dir, 'db'), { keyEncoding: 'buffer', valueEncoding: 'buffer', cacheSize: 4 * 1024 * 1024 });
    try {
      await db.open();
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') {
        throw vmError('STORE_LOCKED', `${dir} is in use by another vmvault process; stop it first`);
      }
      throw fromSystemError(err, `opening the index database in ${dir}`);
    }
    if (created) {
      // A new LevelDB is not durable when open() returns: its first MANIFEST is never fsynced,
      // and CURRENT is switched to the second by a rename no directory fsync follows, so a power
      // cut here leaves CURRENT naming an empty MANIFEST ("no meta-nextfile entry"). Nor does it
      // fsync db/'s own entry in the store directory. Both directories, children first.
      try {
        await fsyncDir(path.join(dir, 'db'));
        await fsyncDir(dir);
      } catch (err) {
        await db.close();
        throw fromSystemError(err, `making the new index database in ${dir} durable`);
      }
    }
    try {
      const clean = (await db.get(metaKey('clean'))) !== undefined;
      const ckpt = await readCheckpoint(db);
      const counters = await readCounters(db);
      // From here until close() the store counts as open: a crash means recovery next time.
      await writeBatch(db, [{ type: 'del', key: metaKey('clean') }], true);
      let bloom = clean ? await loadBloom(dir) : undefined;
      await removeBloom(dir);
      const codec = createCodecEngine(opts.workers);
      const core = new StoreCore({ dir, db, chunker: config.chunker, bloom: bloom ?? BloomFilter.forCapacity(1 << 20), counters, nextCid: ckpt.nextCid, codec, reserveBytes: opts.reserveBytes, log: opts.log });
      core.superseded = await Superseded.load(db);
      let report: RepairReport | undefined;
      if (!clean) {
        const r = await recoverContainers(db, core.index, core.files, ckpt, counters);
        report = r.report;
        core.nextCid = Math.max(core.nextCid, r.maxId + 1);
        await core.checkpoint(r.ops, { sync: true });
      }
      if (!bloom) {
        bloom = BloomFilter.forCapacity(Math.max(1 << 20, counters.segments * 2));
        for await (const fp of core.index.fingerprints()) bloom.add(fp);
        core.bloom = bloom;
      }
      return new SegmentStore(dir, config, core, report, opts.decodedCacheBytes);
    } catch (err) {
      await db.close().catch(() => {});
      throw err;
    }
  }

  get chunker(): ChunkerParams {
    return this.config.chunker;
  }

  /** The LevelDB database, for layers above that keep their records beside the index. */
  get db(): Db {
    return this.core.db;
  }

  private ensureOpen(): void {
    if (this.closed) throw vmError('CLOSED', 'the store is closed');
  }

  private writerContext() {
    return {
      chunker: this.config.chunker,
      engine: this.engine,
      reader: this.reader,
      noteIngest: (b: number, z: number) => this.core.noteIngest(b, z),
      holdWrites: () => this.core.holdWrites(),
    };
  }

  /**
   * Keeps every container from the one appends go to now out of garbage collection's sweep until
   * released (gc/write-holds.ts): for a caller whose new version becomes a GC root only after
   * further waits (an install that syncs first, a second write building on the first).
   */
  holdWrites(): WriteHold {
    return this.core.holdWrites();
  }

  /** Writes holding containers from GC now (writers, and callers' own holds). */
  get writesInProgress(): number {
    return this.core.writeHolds.size;
  }

  /** A writer for a new stream: write() pieces, then finish(). */
  writer(): TreeWriter {
    this.ensureOpen();
    return new TreeWriter(this.writerContext());
  }

  /**
   * A writer that goes on from `old`'s content: its bytes are taken as an edit would (whole
   * subtrees reused, only the last segment re-read and re-cut), then write() appends and
   * checkpoint() gives each new version without finishing (namespace/append-stream.ts: a file
   * written as a stream through the mount, one version per commit, one pipeline throughout).
   */
  async appender(old: FileVersion): Promise<TreeWriter> {
    this.ensureOpen();
    const w = new TreeWriter(this.writerContext());
    if (old.size > 0) {
      try {
        await w.piece(this.view(old), { kind: 'old', from: 0, to: old.size }, false);
      } catch (err) {
        await w.abort();
        throw err;
      }
    }
    return w;
  }

  async writeBuffer(buf: Uint8Array): Promise<WriteResult> {
    const w = this.writer();
    try {
      await w.write(buf);
    } catch (err) {
      await w.abort();
      throw err;
    }
    return w.finish();
  }

  /** A view of the version; with a rescue, damage met is read from another copy (repair/read-rescue.ts). */
  view(version: FileVersion, rescue?: ReadRescue): TreeView {
    return new TreeView(version, rescue ? this.reader.withRescue(rescue) : this.reader);
  }

  /** view() for file reads a client may repeat: plain reads keep what they decode (decoded-cache.ts). */
  private fileView(version: FileVersion, rescue?: ReadRescue): TreeView {
    return rescue ? this.view(version, rescue) : new TreeView(version, this.reader.filling);
  }

  /** A new version whose content is described by pieces of `old`, new bytes and zeros. */
  async edit(old: FileVersion, pieces: Piece[]): Promise<WriteResult> {
    this.ensureOpen();
    return new TreeWriter(this.writerContext()).edit(this.view(old), pieces);
  }

  // ---- segments cut and fingerprinted elsewhere (the transfer receiver; remote-ingest.ts) ----

  /** For each fingerprint, whether the store lacks it (true = missing), batched. */
  async missingSegments(fps: Buffer[]): Promise<boolean[]> {
    this.ensureOpen();
    const locs = await locate(this.core, fps);
    return locs.map((l) => l === undefined);
  }

  /**
   * The plain bytes of stored segments by fingerprint, each re-hashed against its name as
   * every read is (a damaged one throws, naming it), or null for one the store lacks. For a
   * copy elsewhere that asks for segments by name (clone copies, repair from a copy). The
   * buffers are the caller's; nothing is cached.
   */
  async readSegments(fps: Buffer[]): Promise<Array<Buffer | null>> {
    this.ensureOpen();
    const locs = await locate(this.core, fps);
    const present = fps.filter((_, i) => locs[i] !== undefined);
    const got = present.length === 0 ? [] : await this.reader.segments(present, false);
    let k = 0;
    return locs.map((l) => (l === undefined ? null : got[k++]));
  }

  /**
   * Stores a segment sent by fingerprint after decompressing and re-hashing it; refuses one
   * whose bytes do not match (SEGMENT_MISMATCH, naming the claimed fingerprint). A duplicate
   * costs no space. `deps` collects the containers a later commit must wait for.
   */
  acceptSegment(fp: Buffer, len: number, lz4: boolean, payload: Uint8Array, deps: Set<number>): Promise<AcceptResult> {
    this.ensureOpen();
    return acceptSegment(this.core, fp, len, lz4, payload, deps);
  }

  /**
   * acceptSegment for several segments in order (a transfer frame's), decoded and re-hashed as
   * a batch; the first refused ends it (the result says how many were accepted, and why not).
   * The payloads are not kept: the caller may reuse them once this resolves.
   */
  acceptSegments(segs: SentPayload[], deps: Set<number>): Promise<AcceptManyResult> {
    this.ensureOpen();
    return acceptSegments(this.core, segs, deps);
  }

  /** A writer of a new version from a recipe (old ranges of `old`, zeros, stored segments). */
  recipeWriter(old: FileVersion): RecipeWriter {
    this.ensureOpen();
    return new RecipeWriter(this.core, this.writer(), this.view(old));
  }

  /** `old` with `data` written at `offset` (growing the file, with a hole if beyond its end). */
  writeAt(old: FileVersion, offset: number, data: Uint8Array): Promise<WriteResult> {
    return this.writeExtents(old, [{ offset, data }]);
  }

  /**
   * `old` with several non-overlapping extents written (sorted or not), in one pass: the
   * commit path of a file's write buffer.
   */
  writeExtents(old: FileVersion, extents: Array<{ offset: number; data: Uint8Array }>, newSize?: number): Promise<WriteResult> {
    const sorted = [...extents].filter((e) => e.data.length > 0).sort((a, b) => a.offset - b.offset);
    const pieces: Piece[] = [];
    let pos = 0;
    const oldSize = old.size;
    for (const e of sorted) {
      if (!Number.isSafeInteger(e.offset) || e.offset < pos) {
        throw vmError('INVALID_ARGUMENT', `extent at ${e.offset} overlaps the previous one or is not a valid offset`);
      }
      if (e.offset > pos) {
        const oldEnd = Math.min(e.offset, oldSize);
        if (oldEnd > pos) pieces.push({ kind: 'old', from: pos, to: oldEnd });
        if (e.offset > Math.max(pos, oldSize)) pieces.push({ kind: 'zero', len: e.offset - Math.max(pos, oldSize) });
      }
      pieces.push({ kind: 'data', bytes: e.data });
      pos = e.offset + e.data.length;
    }
    const size = newSize ?? Math.max(oldSize, pos);
    if (size < pos) throw vmError('INVALID_ARGUMENT', `new size ${size} cuts off written data ending at ${pos}`);
    const oldEnd = Math.min(size, oldSize);
    if (oldEnd > pos) pieces.push({ kind: 'old', from: pos, to: oldEnd });
    const tail = size - Math.max(pos, oldSize);
    if (tail > 0) pieces.push({ kind: 'zero', len: tail });
    return this.edit(old, pieces);
  }

  truncate(old: FileVersion, size: number): Promise<WriteResult> {
    if (!Number.isSafeInteger(size) || size < 0) throw vmError('INVALID_ARGUMENT', `invalid size ${size}`);
    if (size === old.size) return Promise.resolve({ version: old, deps: new Set() });
    return this.writeExtents(old, [], size);
  }

  async read(version: FileVersion, offset: number, length: number, rescue?: ReadRescue): Promise<Buffer> {
    this.ensureOpen();
    const end = Math.min(version.size, offset + length);
    if (offset >= end) return Buffer.alloc(0);
    const out = Buffer.allocUnsafe(end - offset);
    const view = this.fileView(version, rescue);
    // Our own buffer: segments are decoded straight into it. A rescued read falls back to its
    // own read when a window it relied on failed (as readInto below).
    const r = this.readAhead.readInto(view, offset, out);
    if (r === undefined) await view.readInto(offset, out);
    else if (rescue && typeof r !== 'number') await r.catch(() => view.readInto(offset, out));
    else await r;
    return out;
  }

  /**
   * read() without the shared read-ahead windows: the bytes decoded straight into a Buffer of
   * the caller's. For a reader that keeps its own large reads in flight (a restore: 4 MiB, 4
   * at once): windows would add a copy of every byte, cap its reads at their depth, and take
   * the few stream slots the mount's sequential readers use.
   */
  async readDirect(version: FileVersion, offset: number, length: number, rescue?: ReadRescue, into?: Buffer): Promise<Buffer> {
    this.ensureOpen();
    const end = Math.min(version.size, offset + length);
    if (offset >= end) return Buffer.alloc(0);
    // `into`: the caller's buffer, reused read after read (fresh 4 MiB buffers cost a page
    // fault per 4 KiB and drive the GC); it must stay the caller's own until this resolves.
    const out = into && into.length >= end - offset ? into.subarray(0, end - offset) : Buffer.allocUnsafe(end - offset);
    await this.view(version, rescue).readInto(offset, out);
    return out;
  }

  /**
   * Fills `out` with bytes [offset, offset + out.length) of the version, which must lie
   * within it. Returns the byte count: at once (no promise) when read-ahead already holds the
   * bytes, else a promise of it. Only this thread writes into `out`, never a codec worker:
   * the caller may lose the memory under a read still running (libfuse frees the buffer of a
   * request that timed out), and a copy on this thread then meets a detached buffer, where a
   * worker would write into freed memory.
   */
  readInto(version: FileVersion, offset: number, out: Buffer, rescue?: ReadRescue): number | Promise<number> {
    this.ensureOpen();
    const view = this.fileView(version, rescue);
    const r = this.readAhead.readInto(view, offset, out);
    const own = () => {
      const b = Buffer.allocUnsafe(out.length);
      return view.readInto(offset, b).then(() => b.copy(out));
    };
    if (r === undefined) return own();
    // A rescued read follows the read-ahead windows too (those it opens read with its rescue);
    // a window opened by a plain read of the same version that met damage fails, and the
    // rescued read then reads those bytes itself.
    return rescue && typeof r !== 'number' ? r.catch(own) : r;
  }

  /**
   * Tells `w` of read-ahead windows as they become ready and before their buffers are reused
   * (tree/read-ahead.ts, WindowWatcher): the mount answers reads from them on its own threads.
   * One watcher at a time; undefined stops it.
   */
  watchReadAhead(w: WindowWatcher | undefined): void {
    this.readAhead.setWatcher(w);
  }

  /**
   * Hands `use` bytes [offset, offset + length) of the version (clipped to its size; the
   * offset must lie within it) as one Buffer: a view of a read-ahead window when one holds them
   * (no copy, no allocation), else a Buffer of its own. The Buffer may be shared and is valid
   * only during the call: `use` must not write into it or keep it (a FUSE reply copies it into
   * the kernel at once). Returns true when `use` ran at once, else a promise that resolves
   * once it ran. Every byte was verified against its fingerprint, as read() promises.
   */
  readWith(version: FileVersion, offset: number, length: number, use: (b: Buffer) => void): true | Promise<void> {
    this.ensureOpen();
    const end = Math.min(version.size, offset + length);
    if (offset >= end) {
      use(Buffer.alloc(0));
      return true;
    }
    const view = this.fileView(version);
    const r = this.readAhead.serve(view, offset, end - offset, use);
    if (r === true) return true;
    if (r !== undefined) return r.then(() => undefined);
    // Not in the windows (the first reads of a stream, a jump): read into a pooled buffer, zero
    // runs listed rather than written; all zeros go out as the shared zero buffer.
    const n = end - offset;
    const own = n <= OWN_BYTES ? (ownFree.pop() ?? Buffer.allocUnsafeSlow(OWN_BYTES)).subarray(0, n) : Buffer.allocUnsafe(n);
    const zeros: number[] = [];
    return view.readInto(offset, own, zeros).then(() => {
      if (zeros.length === 2 && zeros[0] === 0 && zeros[1] === n) use(zeroView(n));
      else {
        for (let k = 0; k < zeros.length; k += 2) own.fill(0, zeros[k], zeros[k + 1]);
        use(own);
      }
      // Back to the pool only once read whole: a failed read may leave a decode still writing.
      if (n <= OWN_BYTES && ownFree.length < OWN_KEEP) ownFree.push(Buffer.from(own.buffer, own.byteOffset, OWN_BYTES));
    });
  }

  // ---- damage: reading a segment by name, and repairing it from another copy ----------------

  /**
   * The plain bytes of a stored segment, verified; null when the store does not hold it.
   * Throws CORRUPT_SEGMENT or IO when it holds a damaged copy. What another appliance's
   * SegmentSource serves, and what a test builds a source from.
   */
  async segment(fp: Buffer): Promise<Buffer | null> {
    const [bytes] = await this.readSegments([fp]);
    return bytes;
  }

  /**
   * Replaces a damaged (or missing) segment with `plain`, which must hash to `fp`
   * (SEGMENT_MISMATCH otherwise; nothing changes). The fresh copy goes into the open
   * container, and the index points at it in one synced batch once it is durable; the old
   * record is marked superseded so reads, an index rebuild and GC see only the healthy copy.
   * A crash leaves the old record or the new one (FORMAT.md, "Repair"). A segment that reads
   * back healthy is left alone (`repaired: false`).
   */
  async repairSegment(fp: Buffer, plain: Buffer, kind: 'data' | 'node' = 'data'): Promise<RepairResult> {
    this.ensureOpen();
    return repairSegment(this.core, this.reader, fp, plain, kind);
  }

  /**
   * repairSegment for many segments, made durable by one synced index batch: an answer per
   * item in order, its RepairResult or the error it met (SEGMENT_MISMATCH: nothing changed for
   * it). Rejects only when the batch could not be made durable (then none was repaired).
   */
  async repairSegments(items: readonly RepairItem[]): Promise<Array<RepairResult | Error>> {
    this.ensureOpen();
    return repairSegments(this.core, this.reader, items);
  }

  /**
   * Makes the data written so far durable and then writes `ops` atomically with the index
   * entries. Rejects if a container a dep names failed to write (ENOSPC, EIO): the caller's
   * version references lost bytes and must be written again. `onQueued`: called once the
   * batch's place among the database's writes is fixed, before it is written (the caller may
   * let others see `ops` from then on; a failure of this write then fails every later one).
   */
  commit(ops: DbOp[] = [], deps?: Iterable<number>, onQueued?: () => void): Promise<void> {
    this.ensureOpen();
    return this.core.checkpoint(ops, { sync: true, deps, ...(onQueued ? { onQueued } : {}) });
  }

  /**
   * commit() after syncData(), for a caller that holds its own lock around it (the namespace's
   * group commit): indexes only the records syncData made durable and leaves those appended
   * since (other writers go on) for a later commit, so nothing is fsynced under that lock but
   * LevelDB's log. Every record `ops` may reference must have been appended before syncData.
   */
  commitSynced(ops: DbOp[], deps: Iterable<number>, onQueued?: () => void): Promise<void> {
    this.ensureOpen();
    return this.core.checkpoint(ops, { sync: true, deps, durableOnly: true, ...(onQueued ? { onQueued } : {}) });
  }

  /**
   * Makes the data appended so far durable (containers fsynced) without writing the index: a
   * caller that must hold a lock of its own around commit() calls this first, so the commit
   * under its lock has little left to sync. Reports nothing; commit() reports failures.
   */
  syncData(): Promise<void> {
    this.ensureOpen();
    return this.core.syncData();
  }

  /**
   * Makes every LevelDB write that completed before the call durable (fsync of a file whose
   * data is already committed, fsync of a directory). No I/O when they already are; else one
   * commit (one synced batch).
   */
  async sync(): Promise<void> {
    this.ensureOpen();
    if (allDurable(this.core.db)) return;
    await this.commit();
  }

  /**
   * Why a version depending on these containers can never be committed (a container's write
   * failed: ENOSPC, EIO), or undefined if it can.
   */
  failure(deps: Iterable<number>): Error | undefined {
    for (const cid of deps) {
      if (this.core.failedCids.has(cid)) return this.core.writers.get(cid)?.failed ?? vmError('IO', `container ${cid} failed to write; the data must be written again`);
    }
    return undefined;
  }

  async stats(): Promise<StoreStats> {
    const c = this.core.counters;
    let openBytes = 0;
    for (const w of this.core.writers.values()) openBytes += w.size;
    const stored = c.containerBytes + openBytes;
    const ratio = (a: number, b: number) => (b > 0 ? a / b : 0);
    return {
      ingestedBytes: c.ingestedBytes,
      zeroBytes: c.zeroBytes,
      segments: c.segments,
      treeNodes: c.nodeSegments,
      uniqueBytes: c.rawBytes,
      storedBytes: stored,
      containers: c.containers,
      dedupRatio: ratio(c.ingestedBytes, c.rawBytes),
      compressionRatio: ratio(c.rawBytes, c.payloadBytes),
      totalRatio: ratio(c.ingestedBytes, stored),
      segmenter: segmenterImpl,
      chunker: this.config.chunker,
      index: {
        bloomBytes: this.core.bloom.bytes,
        bloomCapacity: this.core.bloom.capacity,
        cachedContainers: this.core.cache.containers,
        cachedEntries: this.core.cache.entries,
      },
    };
  }

  /** Checks containers against the index; `full` also reads and re-hashes every record. */
  /**
   * Checks containers and the index against each other; `verified`, if given, collects the
   * containers found wholly intact, so a following verifyTrees need not read them again.
   */
  async verify(opts: VerifyOptions, verified?: VerifiedContainers): Promise<VerifyReport> {
    this.ensureOpen();
    return verifyContainers(this.core, opts, verified);
  }

  /**
   * Checks that every segment reachable from `roots` is present (and, if full, intact); a
   * problem is reported under its root's label. `totalBytes` (the roots' sizes) gives the
   * progress a total.
   */
  async verifyTrees(roots: Iterable<{ version: FileVersion; label: string }> | AsyncIterable<{ version: FileVersion; label: string }>, opts: VerifyOptions & { totalBytes?: number; verified?: VerifiedContainers }): Promise<VerifyReport> {
    this.ensureOpen();
    return verifyTrees(this.core, this.reader, roots, opts);
  }

  /** Reconstructs the index from the containers (see index/rebuild.ts). */
  async rebuildIndex(onProgress?: (p: Progress) => void, signal?: AbortSignal): Promise<RebuildReport> {
    this.ensureOpen();
    await this.core.sealOpen();
    await this.core.checkpoint([], { sync: true });
    const r = await rebuildIndex(this.core, onProgress, signal);
    this.reader.clearCaches();
    return r;
  }

  /**
   * Garbage collection: marks from `roots`, then sweeps (gc/gc.ts). The report's summary is
   * kept in the store (FORMAT.md, `mgc`) and read back by lastGc().
   */
  collectGarbage(opts: GcOptions): Promise<GcReport> {
    this.ensureOpen();
    return collectGarbage(this.core, this.reader, opts);
  }

  /** What the last garbage collection (or dry run) found, if any ran. */
  async lastGc(): Promise<LastGc | undefined> {
    this.ensureOpen();
    const v = await this.core.db.get(metaKey('gc'));
    if (!v) return undefined;
    return decodeGcRecord(v);
  }

  /**
   * A consistent view of the whole store as of one checkpoint, for a copy made while the store
   * keeps serving (copy-snapshot.ts has the contract). The caller must release() it.
   */
  async snapshotForCopy(): Promise<StoreSnapshot> {
    this.ensureOpen();
    const config = await fsp.readFile(path.join(this.dir, 'store.json')).catch((err) => {
      throw fromSystemError(err, `reading ${path.join(this.dir, 'store.json')}`);
    });
    return takeSnapshot(this.core, this.dir, config, this.config.id);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const core = this.core;
    // Metadata changes queued by the namespace (kv/db.ts, writeLater) land before the close;
    // a failed one was reported to the namespace's callers already.
    await settled(core.db).catch(() => {});
    await core.sealOpen();
    await core.checkpoint([], { sync: true });
    await saveBloom(this.dir, core.bloom).catch(() => {});
    // Clean means no container is left open; one that failed is repaired by recovery next time.
    if (core.writers.size === 0) await writeBatch(core.db, [{ type: 'put', key: metaKey('clean'), value: Buffer.from([1]) }], true);
    await core.codec.close();
    await core.files.closeAll();
    await core.db.close();
    core.trim.stop();
  }
}

/** The summary of the last garbage collection (FORMAT.md, `mgc`). */
export type LastGc = GcRecord;

// What the layers above need of the store's parts: the file version they record in inodes
// (and its encoding, FORMAT.md "File versions"), and the types of GC and verify reports.
export { EMPTY_VERSION, decodeVersion, encodeVersion } from './tree/version.js';
export type { FileVersion, WriteResult, Piece, DbOp, GcOptions, GcReport, AcceptResult, RecipeWriter, TreeWriter };
export type { TreeView } from './tree/reader.js';
export type { WindowWatcher } from './tree/read-ahead.js';
export type { WriteHold } from './gc/write-holds.js';
export type { Problem, Progress, VerifiedContainers, VerifyOptions, VerifyReport } from './verify/verify.js';

// The DR copy (src/policy/DR-FORMAT.md): a consistent view to copy from, and the database of a
// data directory rebuilt from one.
export type { SnapshotContainer, StoreSnapshot } from './copy-snapshot.js';
export { writeDatabase } from './database-restore.js';
// Reading past damage with another copy, and repair (repair/).
export { ReadRescue };
export { forEachSegment } from './tree/segments-of.js';
export type { Damage, ReadRescueOptions, SegmentFetcher } from './repair/read-rescue.js';
export type { RepairItem, RepairResult };
