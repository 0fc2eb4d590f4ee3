// A bounded cache of decoded data segments that have passed their BLAKE3 check, so a second
// pass over hot data (a recovered VM's disk read again once the kernel dropped its pages, a
// second clone of one point) copies bytes instead of reading, LZ4-decoding and re-hashing them
// again. Keyed by fingerprint: a segment's bytes never change for its fingerprint, so nothing
// a write, a truncation, a GC or a repair does can make an entry wrong, and there is nothing to
// invalidate (a write makes new fingerprints; a version read later finds only what it names).
//
// Integrity: every byte put here was re-hashed against its fingerprint when it was decoded
// (segment-reader.ts puts only what the codec verified, never what a rescue supplied). A hit is
// not re-checked against the container: damage that reaches a container after its segment was
// cached is met by the next read that misses, by `verify` (which never reads through this
// cache) and by restores that read directly; the bytes a hit returns are still the right ones.
//
// The bytes live in one allocation of the budget, made at the first put (its pages are touched
// only as slabs fill), cut in slabs of 4 MiB filled in turn: no Buffer per segment, and V8 sees
// one external allocation instead of one per slab (each growth of external memory by tens of
// MiB started a mark-compact: 20% of a first pass's CPU with a Buffer per 4 MiB slab). When the
// budget is used, the next slab without a hit since the clock hand last passed is emptied and
// refilled (second chance), so a reader going over data that fits keeps all of it.
//
// The index is typed arrays too (chained hashing over fixed entry slots), not a Map of objects:
// a first pass put ~12,000 entries, and their objects, promoted into a 9 MB old generation,
// drove ~20 mark-compacts over the pass (the first pass cost 50% more CPU than with the cache off).

import { FP_BYTES, fpEquals, fpKey } from './codec/fingerprint.js';

const SLAB = 4 * 1024 * 1024;
/** Entry slots per byte of budget: segments are 2 KiB at least (a file's last may be less; one
 * put that finds no free slot is simply not kept). */
const MIN_SEGMENT = 2048;

interface Slab {
  buf: Buffer;
  used: number;
  /** The entry slots of its segments. */
  ids: number[];
  /** A hit since the clock hand last passed. */
  ref: boolean;
}

export interface DecodedCacheStats {
  budget: number;
  bytes: number;
  entries: number;
  hits: number;
  hitBytes: number;
  puts: number;
}

export class DecodedCache {
  private readonly slabs: Slab[] = [];
  private readonly maxSlabs: number;
  /** All slabs' memory, allocated at the first put. */
  private arena: Buffer | undefined;
  /** Chain heads by fpKey & mask; -1 ends a chain. */
  private buckets = new Int32Array(0);
  private mask = 0;
  /** Per entry slot: its fingerprint, slab, offset in the slab, length, next in its chain. */
  private keys = new Uint8Array(0);
  private eSlab = new Int32Array(0);
  private eAt = new Int32Array(0);
  private eLen = new Int32Array(0);
  private eNext = new Int32Array(0);
  /** Free entry slots, a stack. */
  private free = new Int32Array(0);
  private nfree = 0;
  /** The slab being filled (index into slabs), -1 before the first. */
  private cur = -1;
  private hand = 0;
  private hits = 0;
  private hitBytes = 0;
  private puts = 0;

  /** `budget` bytes at most (rounded down to 4 MiB slabs); 0 keeps nothing. */
  constructor(readonly budget: number) {
    this.maxSlabs = Math.max(0, Math.floor(budget / SLAB));
  }

  get enabled(): boolean {
    return this.maxSlabs > 0;
  }

  /** The segment's verified bytes (a view into a slab, valid until the next put), or undefined. */
  get(fp: Uint8Array): Buffer | undefined {
    const id = this.hit(fp);
    if (id < 0) return undefined;
    const at = this.eAt[id];
    return this.slabs[this.eSlab[id]].buf.subarray(at, at + this.eLen[id]);
  }

  /** Copies bytes [skip, skip + take) of the segment to out[dst]: false when it is not here. */
  copyTo(fp: Uint8Array, out: Buffer, dst: number, skip: number, take: number): boolean {
    const id = this.hit(fp);
    if (id < 0) return false;
    const at = this.eAt[id] + skip;
    this.slabs[this.eSlab[id]].buf.copy(out, dst, at, at + take);
    return true;
  }

  /** Keeps a copy of src[from, from + len), the verified bytes of segment `fp`. */
  put(fp: Uint8Array, src: Buffer, from: number, len: number): void {
    if (this.maxSlabs === 0 || len <= 0 || len > SLAB) return;
    if (!this.arena) this.init();
    if (this.find(fp) >= 0) return;
    let si = this.cur;
    if (si < 0 || this.slabs[si].used + len > SLAB) si = this.nextSlab();
    if (this.nfree === 0) return;
    const s = this.slabs[si];
    const id = this.free[--this.nfree];
    for (let k = 0; k < FP_BYTES; k++) this.keys[id * FP_BYTES + k] = fp[k];
    src.copy(s.buf, s.used, from, from + len);
    this.eSlab[id] = si;
    this.eAt[id] = s.used;
    this.eLen[id] = len;
    const b = fpKey(fp) & this.mask;
    this.eNext[id] = this.buckets[b];
    this.buckets[b] = id;
    s.ids.push(id);
    s.used += len;
    this.puts++;
  }

  clear(): void {
    if (!this.arena) return;
    this.buckets.fill(-1);
    for (let i = 0; i < this.free.length; i++) this.free[i] = this.free.length - 1 - i;
    this.nfree = this.free.length;
    for (const s of this.slabs) {
      s.used = 0;
      s.ids = [];
      s.ref = false;
    }
  }

  stats(): DecodedCacheStats {
    let bytes = 0;
    for (const s of this.slabs) bytes += s.used;
    return { budget: this.maxSlabs * SLAB, bytes, entries: this.free.length - this.nfree, hits: this.hits, hitBytes: this.hitBytes, puts: this.puts };
  }

  private init(): void {
    this.arena = Buffer.allocUnsafeSlow(this.maxSlabs * SLAB);
    const cap = Math.ceil((this.maxSlabs * SLAB) / MIN_SEGMENT);
    let nb = 1;
    while (nb < cap) nb <<= 1;
    this.buckets = new Int32Array(nb).fill(-1);
    this.mask = nb - 1;
    this.keys = new Uint8Array(cap * FP_BYTES);
    this.eSlab = new Int32Array(cap);
    this.eAt = new Int32Array(cap);
    this.eLen = new Int32Array(cap);
    this.eNext = new Int32Array(cap);
    this.free = new Int32Array(cap);
    for (let i = 0; i < cap; i++) this.free[i] = cap - 1 - i;
    this.nfree = cap;
  }

  private find(fp: Uint8Array): number {
    if (!this.arena) return -1;
    for (let id = this.buckets[fpKey(fp) & this.mask]; id >= 0; id = this.eNext[id]) if (fpEquals(this.keys, id * FP_BYTES, fp, 0)) return id;
    return -1;
  }

  private hit(fp: Uint8Array): number {
    const id = this.find(fp);
    if (id < 0) return -1;
    this.slabs[this.eSlab[id]].ref = true;
    this.hits++;
    this.hitBytes += this.eLen[id];
    return id;
  }

  /** A fresh slab while the budget allows, else the next one the clock finds unused, emptied. */
  private nextSlab(): number {
    if (this.slabs.length < this.maxSlabs) {
      const at = this.slabs.length * SLAB;
      this.slabs.push({ buf: this.arena!.subarray(at, at + SLAB), used: 0, ids: [], ref: false });
      this.cur = this.slabs.length - 1;
      return this.cur;
    }
    // Second chance: a slab hit since the hand last passed is spared once (its bit cleared);
    // after one full turn every bit is clear, so this ends. The slab being filled goes last.
    for (;;) {
      const i = this.hand;
      this.hand = (this.hand + 1) % this.slabs.length;
      const s = this.slabs[i];
      if (i === this.cur && this.slabs.length > 1) continue;
      if (s.ref) {
        s.ref = false;
        continue;
      }
      for (const id of s.ids) this.unlink(id);
      s.ids = [];
      s.used = 0;
      this.cur = i;
      return i;
    }
  }

  /** Takes entry `id` out of its chain and frees its slot. */
  private unlink(id: number): void {
    const b = fpKey(this.keys, id * FP_BYTES) & this.mask;
    let prev = -1;
    let i = this.buckets[b];
    while (i >= 0 && i !== id) {
      prev = i;
      i = this.eNext[i];
    }
    if (i < 0) return;
    if (prev < 0) this.buckets[b] = this.eNext[id];
    else this.eNext[prev] = this.eNext[id];
    this.free[this.nfree++] = id;
  }
}
