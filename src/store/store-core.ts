// The shared state of an open store, and its durability: a checkpoint makes what was appended
// durable and indexes it, with the caller's operations, in one LevelDB batch. The parts it
// holds live beside their kind: container/placement.ts (which container a record goes to),
// index/lookup.ts (where a segment is), index/summary.ts (the Bloom filter), gc/hooks.ts
// (what ingest does while GC runs), keys.ts, counters.ts, checkpoint.ts, memory-trim.ts.
//
// Write ordering (FORMAT.md, "Read and write ordering"): a record is appended to the open
// container; the container is fsynced (sync or seal); only then does a LevelDB batch record
// the record's index entry, together with whatever the caller commits that references it.
// A crash can therefore leave unreferenced bytes, never a reference to missing bytes.

import path from 'node:path';
import { vmError } from '../errors.js';
import { type Db, type DbOp, writeBatch } from '../kv/db.js';
import { Mutex } from '../kv/mutex.js';
import { type Checkpoint, checkpointOp } from './checkpoint.js';
import type { CodecEngine } from './codec/engine.js';
import { ContainerFiles } from './container/files.js';
import { Codec, RECORD_HEADER_BYTES, SegmentKind } from './container/format.js';
import { type Pending, Placement } from './container/placement.js';
import { registryOp } from './container/registry.js';
import { SpaceGuard } from './container/space-guard.js';
import type { ContainerWriter } from './container/writer.js';
import { countersOp, countRecord, IngestDelta, readCounters, type StoreCounters } from './counters.js';
import { GcHooks } from './gc/hooks.js';
import { type WriteHold, WriteHolds } from './gc/write-holds.js';
import type { BloomFilter } from './index/bloom.js';
import { LocalityCache, toLocation } from './index/locality-cache.js';
import { Lookup } from './index/lookup.js';
import { type Location, SegmentIndex } from './index/segment-index.js';
import { SummaryFilter } from './index/summary.js';
import { Superseded } from './index/superseded.js';
import { MemoryTrim } from './memory-trim.js';
import type { ChunkerParams } from './segmenter/segmenter.js';


export interface CheckpointOptions {
  sync?: boolean;
  deps?: Iterable<number>;
  /**
   * Called once the batch has its place among the database's writes, before it is written:
   * every write asked for after this lands after it. A caller that lets others see `ops` from
   * then on (the namespace's group commit) is told so; if the write then fails, every later
   * write of the database fails too (kv/db.ts, failAll), since later changes may build on it.
   */
  onQueued?: () => void;
  /**
   * Index only the records already durable (made so by the caller's syncData just before),
   * leaving those appended since for a later checkpoint, so this one fsyncs nothing more.
   */
  durableOnly?: boolean;
}

export class StoreCore {
  readonly dir: string;
  readonly db: Db;
  readonly index: SegmentIndex;
  readonly files: ContainerFiles;
  readonly cache = new LocalityCache();
  readonly codec: CodecEngine;
  /** Where read errors are reported with the file they hit (OpenOptions.log). */
  readonly log: (line: string) => void;
  readonly chunker: ChunkerParams;
  counters: StoreCounters;
  /** Refuses new data before the disk is so full that LevelDB cannot write. */
  readonly space: SpaceGuard;
  /** Records replaced by a repair (index/superseded.ts); loaded at open. */
  private supersededSet = new Superseded();

  private readonly placement: Placement;
  private readonly lookup: Lookup;
  private readonly summary: SummaryFilter;
  private readonly gc = new GcHooks();
  /** Writes in progress: GC sweeps no container one of them may have appended to (gc/write-holds.ts). */
  readonly writeHolds: WriteHolds;
  /** Gives free malloc memory back once checkpoints pause (memory-trim.ts). */
  readonly trim = new MemoryTrim();
  private unindexed: Pending[] = [];
  private readonly commitLock = new Mutex();
  private readonly ingestDelta = new IngestDelta();

  constructor(opts: {
    dir: string;
    db: Db;
    chunker: ChunkerParams;
    bloom: BloomFilter;
    counters: StoreCounters;
    nextCid: number;
    codec: CodecEngine;
    reserveBytes?: number;
    log?: (line: string) => void;
  }) {
    this.dir = opts.dir;
    this.space = new SpaceGuard(opts.dir, opts.reserveBytes);
    this.db = opts.db;
    this.index = new SegmentIndex(opts.db);
    this.files = new ContainerFiles(path.join(opts.dir, 'containers'));
    this.chunker = opts.chunker;
    this.counters = opts.counters;
    this.codec = opts.codec;
    this.placement = new Placement(this.files, opts.nextCid);
    this.writeHolds = new WriteHolds(() => this.placement.nextAppendCid());
    this.lookup = new Lookup(this.index, this.cache, this.files, this.placement.writers);
    const pending = this.lookup.pending;
    this.summary = new SummaryFilter(opts.bloom, this.index, function* () {
      for (const p of pending.values()) yield p.meta.fp;
    });
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
  }

  get superseded(): Superseded {
    return this.supersededSet;
  }

  set superseded(s: Superseded) {
    this.supersededSet = s;
    this.cache.skip = (fp, off, cid) => this.supersededSet.has(fp, cid, off);
  }

  /** The codec engine under its earlier name (test helpers close it to simulate a crash). */
  get pool(): CodecEngine {
    return this.codec;
  }

  get nextCid(): number {
    return this.placement.nextCid;
  }

  set nextCid(v: number) {
    this.placement.nextCid = v;
  }

  get bloom(): BloomFilter {
    return this.summary.bloom;
  }

  set bloom(b: BloomFilter) {
    this.summary.bloom = b;
  }

  /** Unsealed or sealing containers by id. */
  get writers(): Map<number, ContainerWriter> {
    return this.placement.writers;
  }

  /** Containers whose writes failed: a tree that used their records must not be committed. */
  get failedCids(): Set<number> {
    return this.placement.failedCids;
  }

  // ---- placement -----------------------------------------------------------------------

  /**
   * Appends a new segment to the open container, synchronously. The returned location is
   * readable at once; it becomes durable and indexed at the next checkpoint.
   */
  append(kind: SegmentKind, fp: Buffer, rawLen: number, codec: Codec, payload: Uint8Array, privileged = false): Location {
    this.space.take(payload.length + RECORD_HEADER_BYTES, privileged);
    const p = this.placement.append(kind, fp, rawLen, codec, payload);
    this.lookup.pending.set(p.meta.fp, p);
    this.unindexed.push(p);
    this.summary.add(p.meta.fp);
    return toLocation(p.cid, p.meta);
  }

  noteIngest(bytes: number, zeroBytes: number): void {
    this.ingestDelta.note(bytes, zeroBytes);
  }

  // ---- garbage collection hooks (gc/hooks.ts) ------------------------------------------------

  get gcLive(): BloomFilter | undefined {
    return this.gc.live;
  }

  set gcLive(b: BloomFilter | undefined) {
    this.gc.live = b;
  }

  get fenced(): Set<number> {
    return this.gc.fenced;
  }

  dedupHit(fp: Uint8Array, off: number, cid: number): boolean {
    return this.gc.dedupHit(fp, off, cid);
  }

  /** Keeps every container from the one appends go to now out of GC's sweep until released. */
  holdWrites(): WriteHold {
    return this.writeHolds.take();
  }

  // ---- lookup (index/lookup.ts) --------------------------------------------------------------

  lookupMem(fp: Uint8Array, off = 0): Location | undefined {
    return this.lookup.lookupMem(fp, off);
  }

  memCid(fp: Uint8Array, off = 0): number {
    return this.lookup.memCid(fp, off);
  }

  memPayload(loc: Location): Buffer | undefined {
    return this.lookup.memPayload(loc);
  }

  lookupMany(fps: Uint8Array[]): Promise<Array<Location | undefined>> {
    return this.lookup.lookupMany(fps);
  }

  // ---- durability ----------------------------------------------------------------------

  /**
   * Makes every record appended so far durable and indexed, then writes `ops` in the same
   * LevelDB batch. Throws if a container that `deps` (or any record to index) lives in has
   * failed: nothing referencing lost bytes is ever committed.
   */
  checkpoint(ops: DbOp[] = [], opts: CheckpointOptions = {}): Promise<void> {
    return this.commitLock.run(async () => {
      // Records of containers that failed since (a background write) can never be indexed: set
      // them aside first, so they fail the commits that depend on them, not every later one.
      const queued = this.unindexed;
      this.unindexed = [];
      this.dropFailed(queued);
      for (const cid of opts.deps ?? []) {
        if (this.failedCids.has(cid)) {
          const w = this.writers.get(cid);
          throw w?.failed ?? vmError('IO', `container ${cid} failed to write; the data must be written again`);
        }
      }
      let batch = this.unindexed;
      this.unindexed = [];
      if (opts.durableOnly) {
        // Records appended since the caller's syncData (other files' writes go on meanwhile)
        // wait for a later checkpoint: fsyncing them here would hold the caller's lock (the
        // namespace's) through a container fsync. They cannot be the caller's: its versions
        // were built, and their records appended, before its syncData started. A record of a
        // failed container is never left behind (its writer's failure fails the deps above).
        const now: Pending[] = [];
        const later: Pending[] = [];
        for (const p of batch) (p.writer.failed || p.writer.durable >= p.meta.offset + RECORD_HEADER_BYTES + p.meta.storedLen ? now : later).push(p);
        batch = now;
        this.unindexed = later;
      }
      try {
        const writers = new Set<ContainerWriter>();
        for (const p of batch) writers.add(p.writer);
        // durableOnly: every record in the batch is durable already (a writer's sync would
        // fsync its later records too).
        if (!opts.durableOnly) await this.placement.makeDurable(writers);
        await this.placement.syncNewDirs();
      } catch (err) {
        this.dropFailed(batch);
        throw err;
      }
      const all: DbOp[] = [];
      const c = this.counters;
      for (const p of batch) {
        all.push(this.index.putOp(p.meta.fp, toLocation(p.cid, p.meta)));
        countRecord(c, p.meta);
      }
      const registered = this.placement.registrable(this.unindexed);
      for (const w of registered) {
        all.push(registryOp(w.id, { size: w.size, records: w.records.length }));
        c.containers++;
        c.containerBytes += w.size;
      }
      this.ingestDelta.moveInto(c);
      all.push(countersOp(c));
      all.push(checkpointOp(this.checkpointState()));
      for (const op of ops) all.push(op);
      const written = writeBatch(this.db, all, opts.sync ?? true, { failAll: opts.onQueued !== undefined });
      // Its place among the database's writes is fixed now (kv/db.ts, chain).
      opts.onQueued?.();
      await written;
      this.trim.maybeTrim();
      for (const p of batch) this.lookup.pending.delete(p.meta.fp, (v) => v === p);
      // Sealed, registered containers need no writer any more; their tables join the cache.
      for (const w of registered) {
        this.cache.insert(w.id, w.table!); // not a view of the image: release() recycles that
        this.placement.retire(w);
      }
    });
  }

  /**
   * Makes every record appended so far durable (container fsync, seals, new directories)
   * without indexing it: the long part of a commit, done before a caller takes its own lock
   * around checkpoint(), which then finds little left to sync. Failures are left for that
   * checkpoint to report (dropFailed, deps).
   */
  syncData(): Promise<void> {
    return this.commitLock.run(async () => {
      const writers = new Set<ContainerWriter>();
      for (const p of this.unindexed) if (!p.writer.failed) writers.add(p.writer);
      await this.placement.makeDurable(writers).catch(() => {});
      const dirs = [...this.placement.newDirs];
      await this.placement.syncNewDirs().catch(() => {
        for (const d of dirs) this.placement.newDirs.add(d); // the checkpoint tries again and reports
      });
    });
  }

  private checkpointState(): Checkpoint {
    return { nextCid: this.nextCid, openCids: this.placement.openIds() };
  }

  private dropFailed(batch: Pending[]): void {
    const keep: Pending[] = [];
    for (const p of batch) {
      if (p.writer.failed) {
        this.failedCids.add(p.cid);
        this.lookup.pending.delete(p.meta.fp, (v) => v === p);
      } else {
        keep.push(p);
      }
    }
    // Records of healthy containers go back in line for the next checkpoint.
    this.unindexed = keep.concat(this.unindexed);
    this.placement.abandonFailed();
  }

  /**
   * Runs `fn` while no checkpoint or syncData runs: what the database says and what the
   * container files hold agree for its duration (store/copy-snapshot.ts, the DR copy).
   */
  underCommitLock<T>(fn: () => Promise<T>): Promise<T> {
    return this.commitLock.run(fn);
  }

  /** See Placement.sealOpen. */
  sealOpen(): Promise<void> {
    return this.placement.sealOpen();
  }

  readCounters(): Promise<StoreCounters> {
    return readCounters(this.db);
  }
}
