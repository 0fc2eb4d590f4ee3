// The shared state of an open store: containers being written, where every segment lives
// (pending records, locality cache, LevelDB index), the summary filter, and checkpoints.
//
// Write ordering (FORMAT.md, "Read and write ordering"): a record is appended to the open
// container; the container is fsynced (sync or seal); only then does a LevelDB batch record
// the record's index entry, together with whatever the caller commits that references it.
// A crash can therefore leave unreferenced bytes, never a reference to missing bytes.

import { decodeCounters, encodeCheckpoint, encodeContainerRecord, encodeCounters } from './meta-records.js';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { vmError } from '../errors.js';
import { BloomFilter } from './index/bloom.js';
import type { CodecEngine } from './codec/engine.js';
import { Codec, RECORD_HEADER_BYTES, type RecordMeta, SegmentKind } from './container/format.js';
import { ContainerFiles } from './container/files.js';
import { readTableBytes } from './container/table.js';
import { ContainerWriter } from './container/writer.js';
import { fsyncDir } from './container/file-io.js';
import { FpMap } from './index/fp-map.js';
import { LocalityCache, toLocation } from './index/locality-cache.js';
import { nativeCodec } from './native.js';
import { Mutex } from '../kv/mutex.js';
import { SpaceGuard } from './container/space-guard.js';
import { type Db, type DbOp, writeBatch } from '../kv/db.js';
import { type Location, SegmentIndex } from './index/segment-index.js';
import type { ChunkerParams } from './segmenter/segmenter.js';

export const META_PREFIX = 0x6d; // 'm'

export const CONTAINER_PREFIX = 0x63; // 'c'

/** Least time between two returns of free malloc memory to the system (trimMemory). */
const TRIM_MS = 1000;

/** lookupMany's probing rounds, and index reads per round. */
const PROBE_ROUNDS = 3;
const PROBE_MAX = 16;

/** Registry entry of a sealed container: written once when it is first counted. */
export interface ContainerRecord {
  size: number;
  records: number;
}

export function containerKey(cid: number): Buffer {
  const k = Buffer.allocUnsafe(5);
  k[0] = CONTAINER_PREFIX;
  k.writeUInt32BE(cid, 1);
  return k;
}

export function metaKey(name: string): Buffer {
  return Buffer.concat([Buffer.from([META_PREFIX]), Buffer.from(name, 'utf8')]);
}

export type { DbOp };

/** Counters kept in LevelDB, updated in the same batch as the index entries they count. */
export interface StoreCounters {
  ingestedBytes: number;
  zeroBytes: number;
  segments: number;
  nodeSegments: number;
  rawBytes: number;
  payloadBytes: number;
  containers: number;
  containerBytes: number;
}

export function emptyCounters(): StoreCounters {
  return { ingestedBytes: 0, zeroBytes: 0, segments: 0, nodeSegments: 0, rawBytes: 0, payloadBytes: 0, containers: 0, containerBytes: 0 };
}

export interface Checkpoint {
  nextCid: number;
  /** Containers that were open (unsealed) at the checkpoint: recovery scans them. */
  openCids: number[];
}

interface Pending {
  cid: number;
  meta: RecordMeta;
  writer: ContainerWriter;
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
  bloom: BloomFilter;
  counters: StoreCounters;
  nextCid: number;

  /** Container tables being read into the locality cache. */
  private readonly loading = new Map<number, Promise<void>>();
  /** Records appended but not yet in the LevelDB index, findable here until they are. */
  private readonly pending = new FpMap<Pending>();
  private unindexed: Pending[] = [];
  private writer: ContainerWriter | undefined;
  /** Unsealed or sealing containers by id. */
  readonly writers = new Map<number, ContainerWriter>();
  private readonly seals = new Map<number, Promise<void>>();
  private readonly newDirs = new Set<string>();
  private readonly commitLock = new Mutex();
  /** Containers whose writes failed: a tree that used their records must not be committed. */
  readonly failedCids = new Set<number>();
  /** Bytes counted at ingest, moved into counters at the next checkpoint. */
  private ingestDelta = { bytes: 0, zero: 0 };
  private bloomGrowing: BloomFilter | undefined;
  private lastTrim = 0;

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
    this.bloom = opts.bloom;
    this.counters = opts.counters;
    this.nextCid = opts.nextCid;
    this.codec = opts.codec;
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
  }

  /** The codec engine under its earlier name (test helpers close it to simulate a crash). */
  get pool(): CodecEngine {
    return this.codec;
  }

  // ---- placement -----------------------------------------------------------------------

  private openWriter(): ContainerWriter {
    const id = this.nextCid++;
    const file = this.files.pathOf(id);
    const ready = this.files.prepare(id).then((dirs) => {
      for (const d of dirs) this.newDirs.add(d);
    });
    const w = new ContainerWriter(id, file, ready);
    this.writers.set(id, w);
    return w;
  }

  private sealWriter(w: ContainerWriter): void {
    const p = w.seal().then(
      () => w.release(),
      (err) => {
        this.failedCids.add(w.id);
        throw err;
      },
    );
    p.catch(() => {});
    this.seals.set(w.id, p);
  }

  /**
   * Appends a new segment to the open container, synchronously. The returned location is
   * readable at once; it becomes durable and indexed at the next checkpoint.
   */
  append(kind: SegmentKind, fp: Buffer, rawLen: number, codec: Codec, payload: Uint8Array, privileged = false): Location {
    this.space.take(payload.length + RECORD_HEADER_BYTES, privileged);
    let w = this.writer;
    if (w && (w.failed || w.full(payload.length))) {
      if (!w.failed) this.sealWriter(w);
      else this.failedCids.add(w.id);
      w = undefined;
    }
    if (!w) w = this.writer = this.openWriter();
    const meta = w.append(kind, fp, rawLen, codec, payload);
    const p: Pending = { cid: w.id, meta, writer: w };
    this.pending.set(meta.fp, p);
    this.unindexed.push(p);
    this.addToBloom(meta.fp);
    return toLocation(w.id, meta);
  }

  noteIngest(bytes: number, zeroBytes: number): void {
    this.ingestDelta.bytes += bytes;
    this.ingestDelta.zero += zeroBytes;
  }

  // ---- garbage collection hooks -----------------------------------------------------------

  /** Refuses new data before the disk is so full that LevelDB cannot write. */
  readonly space: SpaceGuard;

  /** Set while garbage collection runs: every dedup hit marks its segment live (gc/gc.ts). */
  gcLive: BloomFilter | undefined;
  /** Containers being swept: dedup must not take a new reference to their records. */
  readonly fenced = new Set<number>();

  /**
   * Whether a write may reference an existing segment found in container `cid` instead of
   * storing it again: not if the container is being swept; and a running GC learns that the
   * segment is live.
   */
  dedupHit(fp: Uint8Array, off: number, cid: number): boolean {
    if (this.fenced.has(cid)) return false;
    this.gcLive?.add(fp, off);
    return true;
  }

  // ---- lookup --------------------------------------------------------------------------

  /** Where a segment is, from memory only (pending records, locality cache). */
  lookupMem(fp: Uint8Array, off = 0): Location | undefined {
    const p = this.pending.get(fp, off);
    if (p) return toLocation(p.cid, p.meta);
    return this.cache.get(fp, off);
  }

  /** The container of a segment known in memory, or -1: lookupMem without making a Location. */
  memCid(fp: Uint8Array, off = 0): number {
    const p = this.pending.get(fp, off);
    if (p) return p.cid;
    return this.cache.cidOf(fp, off);
  }

  /** Bytes of a record still only in memory (not yet written out), or undefined. */
  memPayload(loc: Location): Buffer | undefined {
    const w = this.writers.get(loc.cid);
    if (!w || w.failed) return undefined;
    return w.payload({ offset: loc.offset, storedLen: loc.storedLen } as RecordMeta);
  }

  /**
   * Locates many segments: memory first, then the index, loading the record table of every
   * container hit (locality) so neighbours resolve from memory. A stream's segments sit
   * together in few containers, so the index is first asked only for the start of each run
   * of misses, a few rounds, each round's tables answering most of the rest; whatever is
   * still missing then goes to the index in one batch.
   */
  async lookupMany(fps: Uint8Array[]): Promise<Array<Location | undefined>> {
    const out: Array<Location | undefined> = new Array(fps.length);
    let miss: number[] = [];
    for (let i = 0; i < fps.length; i++) {
      out[i] = this.lookupMem(fps[i]);
      if (!out[i]) miss.push(i);
    }
    for (let round = 0; round < PROBE_ROUNDS && miss.length > PROBE_MAX; round++) {
      const starts: number[] = [];
      for (let k = 0; k < miss.length && starts.length < PROBE_MAX; k++) {
        if (k === 0 || miss[k - 1] !== miss[k] - 1) starts.push(miss[k]);
      }
      await this.lookupIndex(fps, starts, out);
      miss = miss.filter((i) => !out[i] && !(out[i] = this.lookupMem(fps[i])));
    }
    if (miss.length > 0) await this.lookupIndex(fps, miss, out);
    return out;
  }

  private async lookupIndex(fps: Uint8Array[], which: number[], out: Array<Location | undefined>): Promise<void> {
    const found = await this.index.getMany(which.map((i) => fps[i]));
    const load = new Set<number>();
    for (let j = 0; j < which.length; j++) {
      const loc = found[j];
      // A record indexed while we waited is in memory now; prefer that answer.
      out[which[j]] = this.lookupMem(fps[which[j]]) ?? loc;
      if (loc && !this.cache.has(loc.cid) && !this.writers.has(loc.cid)) load.add(loc.cid);
    }
    await Promise.all([...load].map((cid) => this.loadTable(cid)));
  }

  private loadTable(cid: number): Promise<void> {
    let p = this.loading.get(cid);
    if (!p) {
      p = readTableBytes(this.files, cid).then(
        (table) => this.cache.insert(cid, table),
        () => {
          // The index answer stands; a damaged table only costs locality (verify reports it).
        },
      );
      this.loading.set(cid, p);
      void p.then(() => this.loading.delete(cid));
    }
    return p;
  }

  // ---- summary filter ------------------------------------------------------------------

  private addToBloom(fp: Uint8Array): void {
    this.bloom.add(fp);
    this.bloomGrowing?.add(fp);
    if (this.bloom.count > this.bloom.capacity && !this.bloomGrowing) void this.growBloom();
  }

  /** Doubles the filter, refilled from the index in the background; adds go to both meanwhile. */
  private async growBloom(): Promise<void> {
    const next = BloomFilter.forCapacity(this.bloom.capacity * 2);
    this.bloomGrowing = next;
    try {
      for (const p of this.pending.values()) next.add(p.meta.fp);
      for await (const fp of this.index.fingerprints()) next.add(fp);
      this.bloom = next;
    } finally {
      this.bloomGrowing = undefined;
    }
  }

  // ---- durability ----------------------------------------------------------------------

  /**
   * Makes every record appended so far durable and indexed, then writes `ops` in the same
   * LevelDB batch. Throws if a container that `deps` (or any record to index) lives in has
   * failed: nothing referencing lost bytes is ever committed.
   */
  checkpoint(ops: DbOp[] = [], opts: { sync?: boolean; deps?: Iterable<number> } = {}): Promise<void> {
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
      const batch = this.unindexed;
      this.unindexed = [];
      try {
        const writers = new Set<ContainerWriter>();
        for (const p of batch) writers.add(p.writer);
        await Promise.all(
          [...writers].map((w) => {
            const seal = this.seals.get(w.id);
            return seal ?? w.sync();
          }),
        );
        if (this.newDirs.size > 0) {
          const dirs = [...this.newDirs];
          this.newDirs.clear();
          // Children first: a shard's entry in containers/ after the files' entries in the shard.
          for (const d of dirs.sort((a, b) => b.length - a.length)) await fsyncDir(d);
        }
      } catch (err) {
        this.dropFailed(batch);
        throw err;
      }
      const all: DbOp[] = [];
      const c = this.counters;
      for (const p of batch) {
        all.push(this.index.putOp(p.meta.fp, toLocation(p.cid, p.meta)));
        c.segments++;
        if (p.meta.kind === SegmentKind.Node) c.nodeSegments++;
        c.rawBytes += p.meta.rawLen;
        c.payloadBytes += p.meta.storedLen;
      }
      const registered: ContainerWriter[] = [];
      for (const [id, w] of this.writers) {
        if (w.sealed && w.durable === w.size && this.seals.has(id) && !this.unindexed.some((p) => p.cid === id)) {
          all.push({ type: 'put', key: containerKey(id), value: encodeContainerRecord({ size: w.size, records: w.records.length }) });
          c.containers++;
          c.containerBytes += w.size;
          registered.push(w);
        }
      }
      c.ingestedBytes += this.ingestDelta.bytes;
      c.zeroBytes += this.ingestDelta.zero;
      this.ingestDelta = { bytes: 0, zero: 0 };
      all.push({ type: 'put', key: metaKey('counters'), value: encodeCounters(c) });
      all.push({ type: 'put', key: metaKey('checkpoint'), value: encodeCheckpoint(this.checkpointState()) });
      for (const op of ops) all.push(op);
      await writeBatch(this.db, all, opts.sync ?? true);
      this.trimMemory();
      for (const p of batch) this.pending.delete(p.meta.fp, (v) => v === p);
      // Sealed, registered containers need no writer any more; their tables join the cache.
      for (const w of registered) {
        this.writers.delete(w.id);
        this.seals.delete(w.id);
        this.cache.insert(w.id, w.table!); // not a view of the image: release() recycles that
        w.release();
      }
    });
  }

  /**
   * After a checkpoint, at most every TRIM_MS: malloc's heaps hold freed medium blocks (table
   * encodes, batch arrays, LevelDB's memtable) between live ones, resident for good unless
   * given back (measured: ~60 MiB of an ingest to 1 M segments).
   */
  private trimMemory(): void {
    const t = Date.now();
    if (t - this.lastTrim < TRIM_MS) return;
    this.lastTrim = t;
    nativeCodec?.mallocTrim();
  }

  private checkpointState(): Checkpoint {
    return { nextCid: this.nextCid, openCids: [...this.writers.keys()] };
  }

  private dropFailed(batch: Pending[]): void {
    const keep: Pending[] = [];
    for (const p of batch) {
      if (p.writer.failed) {
        this.failedCids.add(p.cid);
        this.pending.delete(p.meta.fp, (v) => v === p);
      } else {
        keep.push(p);
      }
    }
    // Records of healthy containers go back in line for the next checkpoint.
    this.unindexed = keep.concat(this.unindexed);
    if (this.writer?.failed) {
      void this.writer.abandon();
      this.writer = undefined;
    }
  }

  /**
   * Seals the open container and waits for every seal under way (at close, before a rebuild),
   * so the next checkpoint registers them all: afterwards no healthy container is open. A
   * container that failed keeps its file and stays listed as open: records committed before
   * the failure are in it, and recovery repairs it.
   */
  async sealOpen(): Promise<void> {
    const w = this.writer;
    this.writer = undefined;
    if (w && !w.failed && w.records.length > 0) this.sealWriter(w);
    else if (w && w.records.length === 0) {
      await w.abandon();
      this.writers.delete(w.id);
      await fsp.rm(w.path, { force: true });
    } else if (w) {
      await w.abandon();
    }
    await Promise.all([...this.seals.values()].map((p) => p.catch(() => {})));
  }

  async readCounters(): Promise<StoreCounters> {
    const v = await this.db.get(metaKey('counters'));
    return v ? decodeCounters(v) : emptyCounters();
  }
}
