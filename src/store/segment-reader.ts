// Reading segments by fingerprint: locate (memory, then batched index reads with locality),
// read from containers and decode and verify in the codec workers, and keep small caches of
// decoded tree nodes and data segments. Every byte returned has been re-hashed.

import { vmError } from '../errors.js';
import { containerName, corrupt, decodePayload } from './codec.js';
import { RECORD_HEADER_BYTES, SegmentKind } from './container-format.js';
import { fpHex, fpShort } from './fingerprint.js';
import { FpMap } from './fp-map.js';
import type { Location } from './segment-index.js';
import type { StoreCore } from './store-core.js';
import { decodeNode, type Node } from './tree-node.js';

const NODE_CACHE_ENTRIES = 8192;
const DATA_CACHE_BYTES = 64 * 1024 * 1024;
/** Decode requests are split so both workers share a large read. */
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

export class SegmentReader {
  private readonly nodes = new FpLru<Node>(NODE_CACHE_ENTRIES);
  private readonly data = new FpLru<Buffer>(DATA_CACHE_BYTES);

  constructor(private readonly core: StoreCore) {}

  clearCaches(): void {
    this.nodes.clear();
    this.data.clear();
  }

  async node(fp: Buffer): Promise<Node> {
    const hit = this.nodes.get(fp);
    if (hit) return hit;
    const [raw] = await this.fetch([fp], false);
    const n = decodeNode(raw, `tree node ${fpShort(fp)}`);
    this.nodes.set(Buffer.from(fp), n, 1);
    return n;
  }

  /** The plain bytes of data segments, in order. */
  segments(fps: Buffer[]): Promise<Buffer[]> {
    return this.fetch(fps, true);
  }

  private async fetch(fps: Buffer[], cacheData: boolean): Promise<Buffer[]> {
    const out: Buffer[] = new Array(fps.length);
    const todo: number[] = [];
    for (let i = 0; i < fps.length; i++) {
      const hit = cacheData ? this.data.get(fps[i]) : undefined;
      if (hit) out[i] = hit;
      else todo.push(i);
    }
    if (todo.length === 0) return out;
    // The same segment may appear many times in one read (a repeated block); fetch it once.
    const uniq = new FpMap<number>();
    const want: number[] = [];
    for (const i of todo) {
      if (uniq.get(fps[i]) === undefined) {
        uniq.set(fps[i], want.length);
        want.push(i);
      }
    }
    const locs = await this.core.lookupMany(want.map((i) => fps[i]));
    const got: Buffer[] = new Array(want.length);
    const disk: Array<{ j: number; loc: Location }> = [];
    for (let j = 0; j < want.length; j++) {
      const fp = fps[want[j]];
      const loc = locs[j];
      if (!loc) {
        throw vmError('MISSING_SEGMENT', `segment ${fpHex(fp).slice(0, 16)} is referenced but not in the store; run verify`, {
          fingerprint: fpHex(fp),
        });
      }
      const mem = this.core.memPayload(loc);
      if (mem) got[j] = decodePayload(mem, loc.codec, loc.rawLen, fp, { cid: loc.cid, offset: loc.offset });
      else disk.push({ j, loc });
    }
    if (disk.length > 0) await this.readDisk(disk, want.map((i) => fps[i]), got);
    for (const i of todo) {
      const b = got[uniq.get(fps[i])!];
      out[i] = b;
    }
    if (cacheData) for (let j = 0; j < want.length; j++) this.data.set(Buffer.from(fps[want[j]]), got[j], got[j].length);
    return out;
  }

  private async readDisk(disk: Array<{ j: number; loc: Location }>, fps: Buffer[], got: Buffer[]): Promise<void> {
    // Container order, then offset order: sequential reads of each file.
    disk.sort((a, b) => a.loc.cid - b.loc.cid || a.loc.offset - b.loc.offset);
    const cids = [...new Set(disk.map((d) => d.loc.cid))];
    const fds = new Map<number, number>();
    try {
      for (const cid of cids) fds.set(cid, await this.core.files.acquire(cid));
      const groups: Array<typeof disk> = [];
      let cur: typeof disk = [];
      let curBytes = 0;
      for (const d of disk) {
        cur.push(d);
        curBytes += d.loc.rawLen;
        if (curBytes >= DECODE_SPLIT_BYTES) {
          groups.push(cur);
          cur = [];
          curBytes = 0;
        }
      }
      if (cur.length) groups.push(cur);
      await Promise.all(groups.map((g) => this.decodeGroup(g, fds, fps, got)));
    } finally {
      for (const cid of fds.keys()) this.core.files.release(cid);
    }
  }

  private async decodeGroup(g: Array<{ j: number; loc: Location }>, fds: Map<number, number>, fps: Buffer[], got: Buffer[]): Promise<void> {
    let total = 0;
    for (const d of g) total += d.loc.rawLen;
    const sab = new SharedArrayBuffer(total);
    const items = new Float64Array(g.length * 7);
    const gfps = new Uint8Array(g.length * 32);
    let at = 0;
    g.forEach((d, k) => {
      items[k * 7] = fds.get(d.loc.cid)!;
      items[k * 7 + 1] = d.loc.offset + RECORD_HEADER_BYTES;
      items[k * 7 + 2] = d.loc.storedLen;
      items[k * 7 + 3] = d.loc.rawLen;
      items[k * 7 + 4] = d.loc.codec;
      items[k * 7 + 5] = at;
      gfps.set(fps[d.j], k * 32);
      got[d.j] = Buffer.from(sab, at, d.loc.rawLen);
      at += d.loc.rawLen;
    });
    const res = await this.core.pool.decode({ items, fps: gfps, out: sab });
    if (res.errors.length > 0) {
      const e = res.errors[0];
      const d = g[e.i];
      const place = { cid: d.loc.cid, offset: d.loc.offset };
      if (e.kind === 'io') throw vmError('IO', `reading container ${containerName(d.loc.cid)} at offset ${d.loc.offset}: ${e.message}`, { container: d.loc.cid });
      throw corrupt(fps[d.j], place, e.message);
    }
  }

  /** Location lookups for callers that need the kind (verify, GC). */
  async kindOf(fp: Buffer): Promise<SegmentKind | undefined> {
    const [loc] = await this.core.lookupMany([fp]);
    return loc?.kind;
  }
}
