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
// The bytes live in slabs of 4 MiB allocated once (no Buffer per segment: external memory that
// V8 answers with mark-compacts), filled in turn; when the budget is used, the next slab
// without a hit since the clock hand last passed is emptied and refilled (second chance), so a
// reader going over data that fits keeps all of it.

import { FpMap } from './index/fp-map.js';

const SLAB = 4 * 1024 * 1024;

interface Slab {
  buf: Buffer;
  used: number;
  /** The fingerprints of its entries (copies, owned by the map). */
  keys: Buffer[];
  /** A hit since the clock hand last passed. */
  ref: boolean;
}

interface Entry {
  slab: Slab;
  at: number;
  len: number;
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
  private readonly map = new FpMap<Entry>();
  private readonly slabs: Slab[] = [];
  private readonly maxSlabs: number;
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
    const e = this.map.get(fp);
    if (!e) return undefined;
    e.slab.ref = true;
    this.hits++;
    this.hitBytes += e.len;
    return e.slab.buf.subarray(e.at, e.at + e.len);
  }

  /** Keeps a copy of src[from, from + len), the verified bytes of segment `fp`. */
  put(fp: Uint8Array, src: Buffer, from: number, len: number): void {
    if (this.maxSlabs === 0 || len <= 0 || len > SLAB || this.map.get(fp)) return;
    let s = this.cur >= 0 ? this.slabs[this.cur] : undefined;
    if (!s || s.used + len > SLAB) s = this.nextSlab();
    src.copy(s.buf, s.used, from, from + len);
    const key = Buffer.from(fp);
    this.map.set(key, { slab: s, at: s.used, len });
    s.keys.push(key);
    s.used += len;
    this.puts++;
  }

  clear(): void {
    this.map.clear();
    for (const s of this.slabs) {
      s.used = 0;
      s.keys = [];
      s.ref = false;
    }
  }

  stats(): DecodedCacheStats {
    let bytes = 0;
    for (const s of this.slabs) bytes += s.used;
    return { budget: this.maxSlabs * SLAB, bytes, entries: this.map.size, hits: this.hits, hitBytes: this.hitBytes, puts: this.puts };
  }

  /** A fresh slab while the budget allows, else the next one the clock finds unused, emptied. */
  private nextSlab(): Slab {
    if (this.slabs.length < this.maxSlabs) {
      this.slabs.push({ buf: Buffer.allocUnsafeSlow(SLAB), used: 0, keys: [], ref: false });
      this.cur = this.slabs.length - 1;
      return this.slabs[this.cur];
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
      for (const k of s.keys) this.map.delete(k, (e) => e.slab === s);
      s.keys = [];
      s.used = 0;
      this.cur = i;
      return s;
    }
  }
}
