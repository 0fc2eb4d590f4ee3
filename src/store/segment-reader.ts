// Reading segments by fingerprint: locate (memory, then batched index reads with locality),
// read from containers and decode and verify in the codec engine, and keep small caches of
// decoded tree nodes and data segments. Every byte returned has been re-hashed.
//
// A read decodes straight into the caller's buffer where a segment is wanted whole; only the
// segments a read covers in part (its ends) go through a scratch buffer, and those are the
// ones kept in the data cache, because the next small read (a FUSE read, a 4 KiB random read)
// is the one that wants the rest of them.

import { isVmvaultError, vmError } from '../errors.js';
import { containerName, corrupt, decodePayload } from './codec/codec.js';
import { DECODE_ITEM } from './codec/engine.js';
import { RECORD_HEADER_BYTES, SegmentKind } from './container/format.js';
import { faultPlanInstalled, readFaultOf } from './container/file-io.js';
import { fpHex, fpShort } from './codec/fingerprint.js';
import { FpMap } from './index/fp-map.js';
import type { Location } from './index/segment-index.js';
import type { StoreCore } from './store-core.js';
import { decodeNode, type Node } from './tree/node.js';
import { type ReadRescue, rescuable } from './repair/read-rescue.js';
import { DecodedCache, type DecodedCacheStats } from './decoded-cache.js';

const NODE_CACHE_ENTRIES = 8192;
const DATA_CACHE_BYTES = 64 * 1024 * 1024;
/**
 * Verified data segments kept for file reads (decoded-cache.ts): the test guest's 139 MiB of data
 * fit, so a recovered VM's disk read a third time is not decoded and re-hashed again (a segment
 * is kept on its second read).
 * VMVAULT_DECODED_CACHE_MB overrides it (0: off, for comparisons).
 */
const DECODED_CACHE_BYTES = (() => {
  const mb = Number(process.env.VMVAULT_DECODED_CACHE_MB ?? 256);
  return Number.isFinite(mb) && mb >= 0 ? mb * 1024 * 1024 : 256 * 1024 * 1024;
})();
/** Decode requests are split so every thread of the codec engine shares a large read. */
const DECODE_SPLIT_BYTES = 512 * 1024;

/** Bounded LRU keyed by fingerprint: a use appends to a log; stale log entries are skipped. */
class FpLru<V> {
  private readonly map = new FpMap<{ v: V; cost: number; tick: number }>();
  private log: Array<{ fp: Uint8Array; tick: number }> = [];
  private head = 0;
  private tick = 0;
  private used = 0;
  constructor(private readonly budget: number) {}

  get(fp: Uint8Array): V | undefined {
    const e = this.map.get(fp);
    if (!e) return undefined;
    e.tick = ++this.tick;
    this.log.push({ fp, tick: e.tick });
    if (this.log.length - this.head > 4 * this.map.size + 1024) this.compact();
    return e.v;
  }

  set(fp: Uint8Array, v: V, cost: number): void {
    if (this.map.get(fp)) return;
    const tick = ++this.tick;
    this.map.set(fp, { v, cost, tick });
    this.log.push({ fp, tick });
    this.used += cost;
    while (this.used > this.budget && this.head < this.log.length) {
      const o = this.log[this.head++];
      const e = this.map.get(o.fp);
      if (e && e.tick === o.tick) {
        this.map.delete(o.fp);
        this.used -= e.cost;
      }
    }
    if (this.head > 4096 && this.head > this.log.length >> 1) this.compact();
  }

  clear(): void {
    this.map.clear();
    this.log = [];
    this.head = 0;
    this.used = 0;
  }

  private compact(): void {
    const live: Array<{ fp: Uint8Array; tick: number }> = [];
    for (let i = this.head; i < this.log.length; i++) {
      const o = this.log[i];
      if (this.map.get(o.fp)?.tick === o.tick) live.push(o);
    }
    this.log = live;
    this.head = 0;
  }
}

/** Bytes [skip, skip + take) of segment `fp` go to the read's buffer at `dst`. */
export interface ReadPiece {
  fp: Buffer;
  dst: number;
  skip: number;
  take: number;
}

/** A rescued read's state within one decode. */
interface RescueContext {
  rescue: ReadRescue;
  /** What the caller reads: tree nodes or data (a record's own kind wins where known). */
  kind: 'data' | 'node';
}

interface DiskItem {
  /** Index into the unique segments of the request. */
  j: number;
  loc: Location;
  /** 0: the caller's buffer, 1: the scratch buffer. */
  target: number;
  at: number;
}

/** What a TreeView reads through: the store's reader, or the same with a rescue (withRescue). */
export interface SegmentReads {
  node(fp: Buffer): Promise<Node>;
  /** Tree nodes, in order: those not cached fetched together (one lookup, one decode round). */
  nodesOf(fps: Buffer[]): Promise<Node[]>;
  segments(fps: Buffer[], cache?: boolean): Promise<Buffer[]>;
  readInto(out: Buffer, pieces: ReadPiece[]): Promise<void>;
}

export class SegmentReader implements SegmentReads {
  private readonly nodes = new FpLru<Node>(NODE_CACHE_ENTRIES);
  private readonly data = new FpLru<Buffer>(DATA_CACHE_BYTES);
  /** Verified segments of file reads (readInto), whole ones included; see decoded-cache.ts. */
  private readonly decoded: DecodedCache;
  /**
   * Segments being decoded into scratch for a read that covers them in part, by fingerprint: a
   * read that wants part of one of them meanwhile takes its bytes from that decode instead of
   * decoding it again. The case: two read-ahead windows read at once (tree/read-ahead.ts) both
   * want the segment across their edge, and neither finds it in the data cache yet.
   */
  private readonly partials = new FpMap<Promise<Buffer>>();

  constructor(
    private readonly core: StoreCore,
    decodedCacheBytes?: number,
  ) {
    this.decoded = new DecodedCache(decodedCacheBytes ?? DECODED_CACHE_BYTES);
  }

  clearCaches(): void {
    this.nodes.clear();
    this.data.clear();
    this.decoded.clear();
  }

  decodedCacheStats(): DecodedCacheStats {
    return this.decoded.stats();
  }

  /**
   * The same reads, but data segments decoded for readInto are kept in the decoded cache: the
   * file reads a client repeats (the mount's and the namespace's, through the store's
   * read-ahead). A restore's direct reads do not fill it (one pass, and a copy of every byte).
   */
  readonly filling: SegmentReads = {
    node: (fp) => this.node(fp),
    nodesOf: (fps) => this.nodesOf(fps),
    segments: (fps, cache = true) => this.segments(fps, cache),
    readInto: (out, pieces) => this.readInto(out, pieces, undefined, true),
  };

  /**
   * The same reads, but a segment the primary cannot give back is asked of the rescue's
   * fetchers (repair/read-rescue.ts) instead of failing the read.
   */
  withRescue(rescue: ReadRescue): SegmentReads {
    return {
      node: (fp) => this.node(fp, rescue),
      nodesOf: (fps) => this.nodesOf(fps, rescue),
      segments: (fps, cache = true) => this.segments(fps, cache, rescue),
      readInto: (out, pieces) => this.readInto(out, pieces, rescue),
    };
  }

  async node(fp: Buffer, rescue?: ReadRescue): Promise<Node> {
    const hit = this.nodes.get(fp);
    if (hit) return hit;
    const [raw] = await this.segments([fp], false, rescue, 'node');
    const n = decodeNode(raw, `tree node ${fpShort(fp)}`);
    this.nodes.set(Buffer.from(fp), n, 1);
    return n;
  }

  /**
   * node() for many: the nodes not in the cache are read in one batch (one index lookup, one
   * round of decodes through the codec's pool) instead of one round trip each. A walk over a
   * cold tree (a restore's data runs: ~730 level-1 nodes for 460 MiB) waited on each in turn.
   */
  async nodesOf(fps: Buffer[], rescue?: ReadRescue): Promise<Node[]> {
    const out: Node[] = new Array(fps.length);
    const miss: Buffer[] = [];
    const at: number[] = [];
    for (let i = 0; i < fps.length; i++) {
      const hit = this.nodes.get(fps[i]);
      if (hit) out[i] = hit;
      else {
        miss.push(fps[i]);
        at.push(i);
      }
    }
    if (miss.length === 0) return out;
    const raws = await this.segments(miss, false, rescue, 'node');
    for (let k = 0; k < miss.length; k++) {
      const n = decodeNode(raws[k], `tree node ${fpShort(miss[k])}`);
      this.nodes.set(Buffer.from(miss[k]), n, 1);
      out[at[k]] = n;
    }
    return out;
  }

  /** The plain bytes of whole segments, in order (kept in the data cache if `cache`). */
  async segments(fps: Buffer[], cache = true, rescue?: ReadRescue, kind: 'data' | 'node' = 'data'): Promise<Buffer[]> {
    const out: Buffer[] = new Array(fps.length);
    const pieces: ReadPiece[] = [];
    const which: number[] = [];
    for (let i = 0; i < fps.length; i++) {
      const hit = cache ? this.data.get(fps[i]) : undefined;
      if (hit) out[i] = hit;
      else {
        pieces.push({ fp: fps[i], dst: 0, skip: 0, take: -1 });
        which.push(i);
      }
    }
    if (pieces.length === 0) return out;
    const got = rescue ? await this.decodeRescued(undefined, pieces, cache, rescue, kind) : await this.decode(undefined, pieces, cache);
    for (let k = 0; k < which.length; k++) out[which[k]] = got[k];
    return out;
  }

  /**
   * Reads data segments into `out`: for each piece, bytes [skip, skip + take) of its segment
   * land at out[dst]. Segments wanted whole are decoded in place.
   */
  async readInto(out: Buffer, pieces: ReadPiece[], rescue?: ReadRescue, fill = false): Promise<void> {
    const todo: ReadPiece[] = [];
    const hot = this.decoded.enabled;
    for (const p of pieces) {
      if (hot && this.decoded.copyTo(p.fp, out, p.dst, p.skip, p.take)) continue;
      const hit = this.data.get(p.fp);
      if (hit) hit.copy(out, p.dst, p.skip, p.skip + p.take);
      else todo.push(p);
    }
    if (todo.length === 0) return;
    // A rescued read's bytes may come from another copy: only the primary's verified bytes
    // are kept (decoded-cache.ts).
    if (rescue) await this.decodeRescued(out, todo, true, rescue, 'data');
    else await this.decode(out, todo, true, hot && fill);
  }

  /**
   * decode() with a rescue: segments it already served are taken from it; records that fail
   * to decode or verify are collected in one pass and asked of it (the common case, bit rot in
   * a few records); anything else that fails the batch (a container file gone, an index entry
   * missing) sends the batch piece by piece, each failing piece to the rescue. Rescued bytes
   * are not kept in the data cache: a later plain read must meet the primary as it is.
   */
  private async decodeRescued(out: Buffer | undefined, pieces: ReadPiece[], cache: boolean, rescue: ReadRescue, kind: 'data' | 'node'): Promise<Buffer[]> {
    const got: Buffer[] = new Array(pieces.length);
    const rest: ReadPiece[] = [];
    const restAt: number[] = [];
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i];
      const known = rescue.known(p.fp);
      if (known) {
        got[i] = known;
        if (out) known.copy(out, p.dst, p.skip, p.take < 0 ? known.length : p.skip + p.take);
      } else {
        rest.push(p);
        restAt.push(i);
      }
    }
    if (rest.length === 0) return got;
    let part: Buffer[];
    try {
      part = await this.decodeRetry(out, rest, cache, { rescue, kind });
    } catch (err) {
      if (!rescuable(err) || rescue.isFinal(err)) throw err;
      part = new Array(rest.length);
      // The pieces the primary cannot give are asked of the rescue together (one batch).
      const asked: Array<Promise<void>> = [];
      for (let k = 0; k < rest.length; k++) {
        const p = rest[k];
        try {
          [part[k]] = await this.decodeRetry(out, [p], cache, { rescue, kind });
        } catch (e) {
          if (!rescuable(e) || rescue.isFinal(e)) throw e;
          asked.push(
            rescue.rescue(p.fp, kind, e).then((b) => {
              part[k] = b;
              if (out) b.copy(out, p.dst, p.skip, p.take < 0 ? b.length : p.skip + p.take);
            }),
          );
        }
      }
      const settled = await Promise.allSettled(asked);
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
    for (let k = 0; k < rest.length; k++) got[restAt[k]] = part[k];
    return got;
  }

  /**
   * Decodes the pieces' segments. With `out`, a piece that wants its whole segment is decoded
   * into out at dst and the rest are copied there from scratch; without, every segment is
   * decoded into scratch. Returns each piece's whole segment, except those decoded in place
   * (undefined). `cache` keeps the scratch ones.
   */
  private async decode(out: Buffer | undefined, pieces: ReadPiece[], cache: boolean, hot = false): Promise<Buffer[]> {
    try {
      return await this.decodeRetry(out, pieces, cache, undefined, hot);
    } catch (err) {
      // A failed read is logged where an operator looks, naming the file (the error says it too).
      if (isVmvaultError(err) && err.code !== 'MISSING_SEGMENT' && err.code !== 'CLOSED') this.core.log(`store: read failed: ${err.message}`);
      throw err;
    }
  }

  private async decodeRetry(out: Buffer | undefined, pieces: ReadPiece[], cache: boolean, rc?: RescueContext, hot = false): Promise<Buffer[]> {
    try {
      return await this.decodeOnce(out, pieces, cache, rc, hot);
    } catch (err) {
      // Garbage collection may have copied a segment forward and removed its container between
      // our lookup and our read: forget what we knew of that container and look up once more.
      const cid = isVmvaultError(err, 'MISSING_SEGMENT') ? (err.details?.container as number | undefined) : undefined;
      if (cid === undefined) throw err;
      this.core.cache.drop(cid);
      this.core.files.forget(cid);
      return this.decodeOnce(out, pieces, cache, rc, hot);
    }
  }

  /** `hot`: offer every segment decoded from a container to the decoded cache (file reads; it keeps those read twice). */
  private async decodeOnce(out: Buffer | undefined, pieces: ReadPiece[], cache: boolean, rc?: RescueContext, hot = false): Promise<Buffer[]> {
    // A segment repeated within one read is simply decoded twice: rarer than the bookkeeping
    // that would avoid it is costly.
    const n = pieces.length;
    const locs = await this.core.lookupMany(pieces.map((p) => p.fp));
    const got: Buffer[] = new Array(n);
    const disk: DiskItem[] = [];
    let scratchBytes = 0;
    // Partial pieces another read is decoding now (partials): taken from it once it is done.
    let waits: Array<{ j: number; seg: Promise<Buffer> }> | undefined;
    const share = out !== undefined && rc === undefined;
    for (let j = 0; j < n; j++) {
      const p = pieces[j];
      const loc = locs[j];
      if (share && loc && !(p.skip === 0 && p.take === loc.rawLen)) {
        const seg = this.partials.get(p.fp);
        if (seg) {
          (waits ??= []).push({ j, seg });
          continue;
        }
      }
      if (!loc) {
        throw vmError('MISSING_SEGMENT', `segment ${fpHex(p.fp).slice(0, 16)} is referenced but not in the store; run verify`, {
          fingerprint: fpHex(p.fp),
        });
      }
      const mem = this.core.memPayload(loc);
      if (mem) {
        got[j] = decodePayload(mem, loc.codec, loc.rawLen, p.fp, { cid: loc.cid, offset: loc.offset });
        if (hot && loc.kind !== SegmentKind.Node) this.decoded.put(p.fp, got[j], 0, loc.rawLen); // re-hashed by decodePayload
        if (out) got[j].copy(out, p.dst, p.skip, p.skip + p.take);
      } else if (out && p.skip === 0 && p.take === loc.rawLen) {
        disk.push({ j, loc, target: 0, at: p.dst });
      } else {
        disk.push({ j, loc, target: 1, at: scratchBytes });
        scratchBytes += loc.rawLen;
      }
    }
    if (disk.length === 0) return waits ? this.takeShared(out!, pieces, got, waits, cache, hot) : got;
    const scratch = Buffer.allocUnsafe(scratchBytes);
    const failed: Array<{ d: DiskItem; err: Error }> | undefined = rc ? [] : undefined;
    // This read's partial pieces are offered to reads that come meanwhile (settled below).
    const mine: Array<{ d: DiskItem; fp: Buffer; seg: Promise<Buffer>; settle: (b: Buffer | undefined) => void }> = [];
    if (share) {
      for (const d of disk) {
        if (d.target !== 1) continue;
        const fp = pieces[d.j].fp;
        if (this.partials.get(fp)) continue; // twice in this read: decoded twice, as noted above
        let settle!: (b: Buffer | undefined) => void;
        const seg = new Promise<Buffer>((res, rej) => (settle = (b) => (b ? res(b) : rej(new Error('partial decode failed')))));
        seg.catch(() => {});
        this.partials.set(fp, seg);
        mine.push({ d, fp, seg, settle });
      }
    }
    try {
      await this.readDisk(disk, pieces, out ?? scratch, scratch, failed);
    } catch (err) {
      for (const m of mine) {
        this.partials.delete(m.fp, (v) => v === m.seg);
        m.settle(undefined);
      }
      throw err;
    }
    // Records the rescue mended: healthy bytes from another copy where the damaged ones were.
    const mended = new Set<number>();
    if (failed && failed.length > 0) {
      await Promise.all(
        failed.map(async ({ d, err }) => {
          const p = pieces[d.j];
          const kind = d.loc.kind === SegmentKind.Node ? 'node' : rc!.kind;
          const b = await rc!.rescue.rescue(p.fp, kind, err);
          if (b.length !== d.loc.rawLen) throw err; // hashed to the fingerprint: cannot differ
          mended.add(d.j);
          if (d.target === 0) b.copy(out!, d.at);
          else b.copy(scratch, d.at);
        }),
      );
    }
    for (const d of disk) {
      // Here every record of `disk` decoded and matched its fingerprint (a failure threw, or
      // was mended from a rescue, whose bytes are not kept).
      if (hot && !mended.has(d.j) && d.loc.kind !== SegmentKind.Node) this.decoded.put(pieces[d.j].fp, d.target === 0 ? out! : scratch, d.at, d.loc.rawLen);
      if (d.target === 0) continue; // decoded in place
      const seg = scratch.subarray(d.at, d.at + d.loc.rawLen);
      got[d.j] = seg;
      const p = pieces[d.j];
      if (out) seg.copy(out, p.dst, p.skip, p.skip + p.take);
      if (cache && !mended.has(d.j)) this.data.set(Buffer.from(p.fp), seg, seg.length);
    }
    for (const m of mine) {
      this.partials.delete(m.fp, (v) => v === m.seg);
      m.settle(got[m.d.j]);
    }
    return waits ? this.takeShared(out!, pieces, got, waits, cache, hot) : got;
  }

  /**
   * The pieces of `waits` from the decodes of other reads (partials): copied into `out` when
   * those succeeded, else decoded here.
   */
  private async takeShared(out: Buffer, pieces: ReadPiece[], got: Buffer[], waits: Array<{ j: number; seg: Promise<Buffer> }>, cache: boolean, hot: boolean): Promise<Buffer[]> {
    for (const { j, seg } of waits) {
      const p = pieces[j];
      const b = await seg.catch(() => undefined);
      if (b) {
        b.copy(out, p.dst, p.skip, p.skip + p.take);
        got[j] = b;
      } else [got[j]] = await this.decodeOnce(out, [p], cache, undefined, hot);
    }
    return got;
  }

  private async readDisk(disk: DiskItem[], pieces: ReadPiece[], out: Buffer, scratch: Buffer, failed?: Array<{ d: DiskItem; err: Error }>): Promise<void> {
    // Container order, then offset order: sequential reads of each file.
    disk.sort((a, b) => a.loc.cid - b.loc.cid || a.loc.offset - b.loc.offset);
    const fds = new Map<number, number>();
    try {
      for (const d of disk) if (!fds.has(d.loc.cid)) fds.set(d.loc.cid, await this.acquire(d.loc.cid));
      const groups: Array<Promise<void>> = [];
      let from = 0;
      let bytes = 0;
      const targets = [out, scratch];
      for (let k = 0; k < disk.length; k++) {
        bytes += disk[k].loc.rawLen;
        if (bytes >= DECODE_SPLIT_BYTES || k === disk.length - 1) {
          groups.push(this.decodeGroup(disk, from, k + 1, fds, pieces, targets, failed));
          from = k + 1;
          bytes = 0;
        }
      }
      await Promise.all(groups);
    } finally {
      for (const cid of fds.keys()) this.core.files.release(cid);
    }
  }

  /** A container's descriptor; a failure names the container (a rescue records where the damage is). */
  private async acquire(cid: number): Promise<number> {
    try {
      return await this.core.files.acquire(cid);
    } catch (err) {
      if (!isVmvaultError(err) || err.details?.container !== undefined) throw err;
      throw vmError(err.code, `container ${containerName(cid)}: ${err.message}`, { ...(err.details ?? {}), container: cid }, err);
    }
  }

  private async decodeGroup(disk: DiskItem[], from: number, to: number, fds: Map<number, number>, pieces: ReadPiece[], targets: Buffer[], failed?: Array<{ d: DiskItem; err: Error }>): Promise<void> {
    const n = to - from;
    const items = new Float64Array(n * DECODE_ITEM);
    const fps = Buffer.allocUnsafe(n * 32);
    // Tests: the fault plan decides per container file; the engine injects where it reads.
    const faults = faultPlanInstalled() ? new Int32Array(n) : undefined;
    for (let k = 0; k < n; k++) {
      const d = disk[from + k];
      const o = k * DECODE_ITEM;
      items[o] = fds.get(d.loc.cid)!;
      items[o + 1] = d.loc.offset + RECORD_HEADER_BYTES;
      items[o + 2] = d.loc.storedLen;
      items[o + 3] = d.loc.rawLen;
      items[o + 4] = d.loc.codec;
      items[o + 5] = d.target;
      items[o + 6] = d.at;
      const fp = pieces[d.j].fp;
      for (let b = 0; b < 32; b++) fps[k * 32 + b] = fp[b];
      if (faults) faults[k] = readFaultOf(this.core.files.pathOf(d.loc.cid));
    }
    const failures = await this.core.codec.decode(items, fps, targets, faults);
    if (failures.length === 0) return;
    const errorOf = (e: (typeof failures)[number]): Error => {
      const d = disk[from + e.i];
      const place = { cid: d.loc.cid, offset: d.loc.offset };
      const file = this.core.files.pathOf(d.loc.cid);
      const fp = pieces[d.j].fp;
      if (e.kind === 'io') {
        return vmError('IO', `reading ${file} (container ${containerName(d.loc.cid)}) at offset ${d.loc.offset}, segment ${fpHex(fp).slice(0, 16)}: ${e.message}`, {
          container: d.loc.cid,
          offset: d.loc.offset,
          fingerprint: fpHex(fp),
          path: file,
        });
      }
      return corrupt(fp, place, e.kind === 'short' ? `${e.message} in ${file}` : e.message);
    };
    if (!failed) throw errorOf(failures[0]);
    for (const e of failures) {
      const err = errorOf(e);
      // Logged as a plain read's failure is: the operator learns of the damage either way.
      this.core.log(`store: read failed: ${err.message}`);
      failed.push({ d: disk[from + e.i], err });
    }
  }

  /** Location lookups for callers that need the kind (verify, GC). */
  async kindOf(fp: Buffer): Promise<SegmentKind | undefined> {
    const [loc] = await this.core.lookupMany([fp]);
    return loc?.kind;
  }
}
