// Stream-informed locality (Data Domain's SISL): when one fingerprint is found in container C,
// the neighbours of that segment in the stream are very likely in C too, so the whole record
// table of C is loaded at once. A duplicate stream then costs about one index read per
// container instead of one per segment. Bounded by containers and by records (LRU).
//
// Memory: a cached record costs its 48-byte table entry (the container table layout) and two
// 4-byte slots of an open-addressing hash (at most 3/4 full), ~60 bytes, and no JavaScript
// object: a full cache (128 containers or 128 k records, 512 MiB of stored data at the
// default segment size) holds ~8 MiB.

import { type RecordMeta, TABLE_ENTRY_BYTES } from '../container/format.js';
import { fpEquals } from '../codec/fingerprint.js';
import type { Location } from './segment-index.js';

/** Record index bits of a hash value; the container slot is above them. */
const REC_BITS = 20;
const REC_MASK = (1 << REC_BITS) - 1;
const MAX_SLOTS = 1 << (31 - REC_BITS);
const TOMB = -1;

interface Held {
  cid: number;
  table: Buffer;
  count: number;
  lastUse: number;
}

function key32(fp: Uint8Array, off: number): number {
  return fp[off + 8] | (fp[off + 9] << 8) | (fp[off + 10] << 16) | (fp[off + 11] << 24);
}

export class LocalityCache {
  private readonly slots: Array<Held | undefined> = [];
  private readonly slotOf = new Map<number, number>();
  private keys = new Int32Array(1024);
  /** (slot << REC_BITS | record) + 1; 0 empty, TOMB deleted. */
  private vals = new Int32Array(1024);
  private mask = 1023;
  private live = 0;
  private dead = 0;
  private records = 0;
  private clock = 0;

  /**
   * Records a repair replaced (index/superseded.ts): never cached, so a lookup finds the
   * healthy copy through the index instead of the damaged record beside the neighbours.
   */
  skip: ((fp: Uint8Array, off: number, cid: number) => boolean) | undefined;

  constructor(
    private readonly maxContainers = 128,
    private readonly maxRecords = 1 << 17,
  ) {}

  has(cid: number): boolean {
    return this.slotOf.has(cid);
  }

  get containers(): number {
    return this.slotOf.size;
  }

  get entries(): number {
    return this.live;
  }

  /** The hash value of fp's record, or 0. */
  private find(fp: Uint8Array, off: number): number {
    const k = key32(fp, off);
    const mask = this.mask;
    for (let h = k & mask; ; h = (h + 1) & mask) {
      const v = this.vals[h];
      if (v === 0) return 0;
      if (v !== TOMB && this.keys[h] === k) {
        const held = this.slots[(v - 1) >>> REC_BITS]!;
        const at = ((v - 1) & REC_MASK) * TABLE_ENTRY_BYTES;
        if (fpEquals(held.table, at, fp, off)) return v;
      }
    }
  }

  /** The container holding fp, or -1 (a hit counts as a use of that container). */
  cidOf(fp: Uint8Array, off = 0): number {
    const v = this.find(fp, off);
    if (v === 0) return -1;
    const held = this.slots[(v - 1) >>> REC_BITS]!;
    held.lastUse = ++this.clock;
    return held.cid;
  }

  get(fp: Uint8Array, off = 0): Location | undefined {
    const v = this.find(fp, off);
    if (v === 0) return undefined;
    const held = this.slots[(v - 1) >>> REC_BITS]!;
    held.lastUse = ++this.clock;
    const t = held.table;
    const at = ((v - 1) & REC_MASK) * TABLE_ENTRY_BYTES;
    return {
      cid: held.cid,
      offset: t.readUInt32LE(at + 32),
      storedLen: t.readUInt32LE(at + 36),
      rawLen: t.readUInt32LE(at + 40),
      kind: t[at + 44],
      codec: t[at + 45],
    };
  }

  /** Caches a container's records from its encoded table, which it keeps (no copy). */
  insert(cid: number, raw: Buffer): void {
    const count = raw.length / TABLE_ENTRY_BYTES;
    if (count > REC_MASK) return; // absurdly many records: locality is not worth it
    if (this.slotOf.has(cid)) this.drop(cid);
    while (this.slotOf.size > 0 && (this.slotOf.size >= this.maxContainers || this.records + count > this.maxRecords)) this.evictOne();
    let slot = this.slots.indexOf(undefined);
    if (slot < 0) slot = this.slots.length;
    if (slot >= MAX_SLOTS) return;
    this.slots[slot] = { cid, table: raw, count, lastUse: ++this.clock };
    this.slotOf.set(cid, slot);
    this.records += count;
    this.reserve(this.live + count);
    for (let r = 0; r < count; r++) {
      const at = r * TABLE_ENTRY_BYTES;
      // A fingerprint already cached from another container keeps its first home.
      if (this.find(raw, at) !== 0) continue;
      if (this.skip?.(raw, at, cid)) continue;
      this.put(key32(raw, at), ((slot << REC_BITS) | r) + 1);
    }
  }

  private put(k: number, v: number): void {
    const mask = this.mask;
    let h = k & mask;
    while (this.vals[h] > 0) h = (h + 1) & mask;
    if (this.vals[h] === TOMB) this.dead--;
    this.keys[h] = k;
    this.vals[h] = v;
    this.live++;
  }

  /** Room for `want` live entries below 60% load, counting tombstones; rehashes if not. */
  private reserve(want: number): void {
    const cap = this.mask + 1;
    if ((want + this.dead) * 4 <= cap * 3) return;
    let size = 1024;
    while (want * 2 > size) size *= 2; // at most half full after a rehash, at most 3/4 before the next
    const oldKeys = this.keys;
    const oldVals = this.vals;
    this.keys = new Int32Array(size);
    this.vals = new Int32Array(size);
    this.mask = size - 1;
    this.live = 0;
    this.dead = 0;
    for (let h = 0; h < oldVals.length; h++) if (oldVals[h] > 0) this.put(oldKeys[h], oldVals[h]);
  }

  drop(cid: number): void {
    const slot = this.slotOf.get(cid);
    if (slot === undefined) return;
    const held = this.slots[slot]!;
    const mask = this.mask;
    for (let r = 0; r < held.count; r++) {
      const at = r * TABLE_ENTRY_BYTES;
      const k = key32(held.table, at);
      const mine = ((slot << REC_BITS) | r) + 1;
      for (let h = k & mask; ; h = (h + 1) & mask) {
        const v = this.vals[h];
        if (v === 0) break;
        if (v === mine) {
          this.vals[h] = TOMB;
          this.live--;
          this.dead++;
          break;
        }
      }
    }
    this.records -= held.count;
    this.slots[slot] = undefined;
    this.slotOf.delete(cid);
  }

  clear(): void {
    this.slots.length = 0;
    this.slotOf.clear();
    this.keys = new Int32Array(1024);
    this.vals = new Int32Array(1024);
    this.mask = 1023;
    this.live = this.dead = this.records = 0;
  }

  private evictOne(): void {
    let victim = -1;
    let oldest = Infinity;
    for (const h of this.slots) {
      if (h && h.lastUse < oldest) {
        oldest = h.lastUse;
        victim = h.cid;
      }
    }
    if (victim >= 0) this.drop(victim);
  }
}

export function toLocation(cid: number, m: RecordMeta): Location {
  return { cid, offset: m.offset, storedLen: m.storedLen, rawLen: m.rawLen, kind: m.kind, codec: m.codec };
}
