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
// The bytes live in one allocation of the budget, made at the first admission (its pages are
// touched only as slabs fill), cut in slabs of 4 MiB filled in turn: no Buffer per segment,
// and V8 sees one external allocation instead of one per slab (each growth of external memory
// by tens of MiB started a mark-compact: 20% of a first pass's CPU with a Buffer per 4 MiB
// slab). When the budget is used, the next slab without a hit since the clock hand last passed
// is emptied and refilled (second chance), so a reader going over data that fits keeps all of it.
//
// The index is typed arrays too (chained hashing over fixed entry slots), not a Map of objects:
// a first pass put ~12,000 entries, and their objects, promoted into a 9 MB old generation,
// drove ~20 mark-compacts over the pass (the first pass cost 50% more CPU than with the cache off).
//
// Admission: a segment is kept on its second offer, not its first. A single pass over a disk
// (`qemu-img convert` out of the mount, a copy, a catalog's scan) reads each segment once, and
// keeping all of it cost that pass a copy of every byte and the faults of a fresh arena (+0.3
// CPU-s, the convert 50% slower) for hits that never came. The first offer only notes the
// fingerprint in a ghost table (32-bit tags of fingerprint prefixes in buckets of 4, no
// bytes); a segment offered while its tag is there is read again, so it is kept. A tag that
// matches by chance admits a segment read once: a wasted copy, never a wrong byte (a hit still
// compares the whole fingerprint). The arena is allocated at the first admission, so a process
// that reads everything once never maps it. A warm pass is the third read of its data: the
// second pass pays the fill, from the third on reads hit (instant recovery reads its disk
// again and again; its first read is the boot or the copy that starts it).
//
// A second offer is kept only if it came within a budget's worth of reads (hits and offers,
// in bytes) of the first: a segment read again only after more than the budget was read in
// between would be evicted before its next read anyway. Passes over a disk with more data than
// the budget (a 512 MiB image with 460 MiB of data, against 256 MiB) otherwise copied every
// byte in and evicted it before the next pass came by: no hits, ~10% more CPU per pass. They
// now pass by the cache as they do with it off.

import { FP_BYTES, fpEquals, fpKey } from './codec/fingerprint.js';

const SLAB = 4 * 1024 * 1024;
/** Entry slots per byte of budget: segments are 2 KiB at least (a file's last may be less; one
 * put that finds no free slot is simply not kept). */
const MIN_SEGMENT = 2048;
/** Ghost tags per bucket; the table has a tag per MIN_SEGMENT of budget, so it holds about
 * four budgets of average (8 KiB) segments before a tag is overwritten. */
const GHOST_WAYS = 4;
/** seenBefore(): not in the ghost table; there, noted within a budget's worth of reads; longer ago. */
const SEEN_NEW = 0;
const SEEN_NEAR = 1;
const SEEN_FAR = 2;

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
  /** Offers of segments not admitted (their first read: only their fingerprint noted). */
  ghosted: number;
  /** Second offers not kept: read again only after more than the budget was read between. */
  tooFar: number;
  /** Bytes of the arena allocated (0 until the first admission, then the budget). */
  arenaBytes: number;
}

export class DecodedCache {
  private readonly slabs: Slab[] = [];
  private readonly maxSlabs: number;
  /** All slabs' memory, allocated at the first admission. */
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
  private ghosted = 0;
  /** Ghost tags (0: empty), GHOST_WAYS per bucket; allocated at the first offer. */
  private ghost = new Uint32Array(0);
  private ghostMask = 0;
  /** Per bucket, the way its next new tag overwrites when all are taken. */
  private ghostNext = new Uint8Array(0);
  /** Per ghost tag, the read clock (KiB, mod 2^32) when it was noted. */
  private ghostWhen = new Uint32Array(0);
  /** Bytes read through the cache so far (hits and offers): the clock of reuse distances. */
  private readBytes = 0;
  private tooFar = 0;

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

  /**
   * Offers src[from, from + len), the verified bytes of segment `fp`: kept if it was offered
   * before (its ghost tag is there), else only noted (see Admission above).
   */
  put(fp: Uint8Array, src: Buffer, from: number, len: number): void {
    if (this.maxSlabs === 0 || len <= 0 || len > SLAB) return;
    this.readBytes += len;
    const seen = this.seenBefore(fp);
    if (seen !== SEEN_NEAR) {
      if (seen === SEEN_FAR) this.tooFar++;
      else this.ghosted++;
      return;
    }
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
    this.ghost.fill(0);
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
    return { budget: this.maxSlabs * SLAB, bytes, entries: this.free.length - this.nfree, hits: this.hits, hitBytes: this.hitBytes, puts: this.puts, ghosted: this.ghosted, tooFar: this.tooFar, arenaBytes: this.arena?.length ?? 0 };
  }

  /**
   * Whether `fp`'s tag is in the ghost table, noted within a budget's worth of reads (NEAR) or
   * longer ago (FAR, noted again now); if not there (NEW), notes it (an empty way of its bucket,
   * else the bucket's ways in turn). The tag is fingerprint bytes 4-7, the bucket from bytes
   * 0-3 (fpKey): BLAKE3 bytes, uniform, so no further hashing.
   */
  private seenBefore(fp: Uint8Array): number {
    if (this.ghost.length === 0) {
      const slots = Math.ceil((this.maxSlabs * SLAB) / MIN_SEGMENT);
      let nb = 1;
      while (nb * GHOST_WAYS < slots) nb <<= 1;
      this.ghost = new Uint32Array(nb * GHOST_WAYS);
      this.ghostNext = new Uint8Array(nb);
      this.ghostWhen = new Uint32Array(nb * GHOST_WAYS);
      this.ghostMask = nb - 1;
    }
    const tag = (fp[4] | (fp[5] << 8) | (fp[6] << 16) | (fp[7] << 24)) >>> 0 || 1;
    const b = fpKey(fp) & this.ghostMask;
    const at = b * GHOST_WAYS;
    const now = Math.floor(this.readBytes / 1024) >>> 0;
    let empty = -1;
    for (let w = 0; w < GHOST_WAYS; w++) {
      const g = this.ghost[at + w];
      if (g === tag) {
        // Unsigned difference: the clock wraps after 4 TiB of reads.
        if ((now - this.ghostWhen[at + w]) >>> 0 <= (this.maxSlabs * SLAB) / 1024) return SEEN_NEAR;
        this.ghostWhen[at + w] = now;
        return SEEN_FAR;
      }
      if (g === 0 && empty < 0) empty = w;
    }
    if (empty < 0) {
      empty = this.ghostNext[b];
      this.ghostNext[b] = (empty + 1) % GHOST_WAYS;
    }
    this.ghost[at + empty] = tag;
    this.ghostWhen[at + empty] = now;
    return SEEN_NEW;
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
    this.readBytes += this.eLen[id];
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
