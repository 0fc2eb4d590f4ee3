// Content-defined segmenter: FastCDC (gear hash, normalized chunking).
//
// The boundaries this file defines are part of the store format: a change moves every
// boundary and loses dedup against everything already stored. The C addon (native/) must cut
// byte-identical boundaries; test/segmenter.test.ts pins vectors for both.
//
// Definition, per chunk, with i the index of a byte inside the chunk:
//   - bytes with i < minSize are not hashed;
//   - for i >= minSize: fp = (fp << 1) + GEAR[byte] (mod 2^32), fp starting at 0;
//     the chunk ends after byte i when (fp & mask) == 0, mask = MASK_S while i < avgSize and
//     MASK_L after (normalized chunking, level 2);
//   - a chunk also ends after maxSize bytes, and the last chunk at the end of the input.
// MASK_S has log2(avg)+2 one-bits and MASK_L log2(avg)-2, both at the top of the word: the top
// bit of fp depends on the last 32 bytes, the low bits only on the last few.
//
// The state between calls is (bytes in the current chunk, fp, all-zero so far), so input fed in
// pieces cuts exactly as input fed whole.

import { vmError } from '../../errors.js';
import { nativeCutAsyncFn, nativeCutFn } from '../native.js';

export interface ChunkerParams {
  minSize: number;
  avgSize: number;
  maxSize: number;
}

/** The defaults chosen by measurement on VM images (tools/PERFORMANCE.md, "segment size"). */
export const DEFAULT_CHUNKER: ChunkerParams = { minSize: 2048, avgSize: 8192, maxSize: 65536 };

/** High bit of an entry of the cut list: the segment that ends there is all zero bytes. */
export const ZERO_FLAG = 0x80000000;
export const END_MASK = 0x7fffffff;

// state indices
/** Pieces up to this size are cut on the calling thread even when pushAsync is asked. */
const SYNC_CUT_BYTES = 64 * 1024;

const S_POS = 0;
const S_FP = 1;
const S_ZERO = 2;

// params indices, shared with the C addon
const P_MIN = 0;
const P_AVG = 1;
const P_MAX = 2;
const P_MASK_S = 3;
const P_MASK_L = 4;
const P_ZERO_FAST = 5;

/** The gear table: 256 words from splitmix64 seeded with "vmvault1", upper halves. */
export const GEAR: Uint32Array = (() => {
  const g = new Uint32Array(256);
  const M = (1n << 64n) - 1n;
  let s = 0x766d7661756c7431n;
  for (let i = 0; i < 256; i++) {
    s = (s + 0x9e3779b97f4a7c15n) & M;
    let z = s;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
    z = z ^ (z >> 31n);
    g[i] = Number(z >> 32n);
  }
  return g;
})();

function topBits(n: number): number {
  return n >= 32 ? 0xffffffff : ((0xffffffff << (32 - n)) >>> 0);
}

export function validateChunkerParams(p: ChunkerParams): void {
  const pow2 = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
  if (!pow2(p.avgSize) || p.avgSize < 256 || p.avgSize > 1 << 22) {
    throw vmError('INVALID_ARGUMENT', `segment average size ${p.avgSize} must be a power of two between 256 and 4 MiB`);
  }
  if (!Number.isInteger(p.minSize) || p.minSize < 64 || p.minSize >= p.avgSize) {
    throw vmError('INVALID_ARGUMENT', `segment minimum size ${p.minSize} must be at least 64 and below the average ${p.avgSize}`);
  }
  if (!Number.isInteger(p.maxSize) || p.maxSize <= p.avgSize || p.maxSize > 1 << 24) {
    throw vmError('INVALID_ARGUMENT', `segment maximum size ${p.maxSize} must exceed the average ${p.avgSize} and be at most 16 MiB`);
  }
}

/**
 * Packs params for the cut loop. ZERO_FAST says whether a run of zeros can never end a
 * chunk before maxSize (true for the defaults); then a chunk start followed by maxSize zero
 * bytes is emitted without hashing, which is what makes sparse images cheap.
 */
export function packParams(p: ChunkerParams): Int32Array {
  // Scanning for ZERO_FAST walks up to maxSize bytes: once per params, not once per segmenter
  // (a store makes one per file version it writes).
  const key = `${p.minSize}/${p.avgSize}/${p.maxSize}`;
  let packed = packedParams.get(key);
  if (!packed) {
    packed = computePacked(p);
    packedParams.set(key, packed);
  }
  return packed.slice();
}

const packedParams = new Map<string, Int32Array>();

function computePacked(p: ChunkerParams): Int32Array {
  validateChunkerParams(p);
  const bits = Math.log2(p.avgSize);
  const maskS = topBits(bits + 2);
  const maskL = topBits(bits - 2);
  let fp = 0;
  let zeroFast = 1;
  for (let i = p.minSize; i < p.maxSize - 1; i++) {
    fp = ((fp << 1) + GEAR[0]) >>> 0;
    if ((fp & (i < p.avgSize ? maskS : maskL)) === 0) {
      zeroFast = 0;
      break;
    }
  }
  return Int32Array.of(p.minSize, p.avgSize, p.maxSize, maskS | 0, maskL | 0, zeroFast);
}

/**
 * The cut loop in TypeScript: the fallback when the addon is missing, and the reference it is
 * tested against. Appends one entry per finished chunk to `out` (end offset relative to `buf`,
 * ZERO_FLAG set for an all-zero chunk) and returns how many. `out` needs room for
 * ceil(buf.length / (minSize + 1)) + 1 entries.
 */
export function cutTs(gear: Uint32Array, params: Int32Array, state: Uint32Array, buf: Uint8Array, out: Uint32Array): number {
  const minSize = params[P_MIN];
  const avgSize = params[P_AVG];
  const maxSize = params[P_MAX];
  const maskS = params[P_MASK_S] >>> 0;
  const maskL = params[P_MASK_L] >>> 0;
  const zeroFast = params[P_ZERO_FAST] === 1;
  const n = buf.length;
  let pos = state[S_POS];
  let fp = state[S_FP];
  let zero = state[S_ZERO] === 1;
  let count = 0;
  let i = 0;
  while (i < n) {
    if (pos === 0 && zeroFast && n - i >= maxSize && allZero(buf, i, i + maxSize)) {
      i += maxSize;
      out[count++] = (i | ZERO_FLAG) >>> 0;
      continue;
    }
    const from = i; // where this chunk's bytes in buf begin
    // The unhashed prefix.
    if (pos < minSize) {
      const skip = Math.min(minSize - pos, n - i);
      i += skip;
      pos += skip;
    }
    let cut = false;
    if (pos >= minSize) {
      // Bytes at chunk index < avgSize test the strict mask, the rest the loose one; the
      // byte at index maxSize - 1 ends the chunk regardless.
      let lim = i + Math.min(Math.max(avgSize - pos, 0), n - i);
      const start = i;
      while (i < lim) {
        fp = ((fp << 1) + gear[buf[i++]]) >>> 0;
        if ((fp & maskS) === 0) {
          cut = true;
          break;
        }
      }
      pos += i - start;
      if (!cut && i < n) {
        const start2 = i;
        lim = i + Math.min(maxSize - pos, n - i);
        while (i < lim) {
          fp = ((fp << 1) + gear[buf[i++]]) >>> 0;
          if ((fp & maskL) === 0) {
            cut = true;
            break;
          }
        }
        pos += i - start2;
        if (pos >= maxSize) cut = true;
      }
    }
    if (zero) zero = allZero(buf, from, i);
    if (!cut) break;
    out[count++] = (zero ? i | ZERO_FLAG : i) >>> 0;
    pos = 0;
    fp = 0;
    zero = true;
  }
  state[S_POS] = pos;
  state[S_FP] = fp;
  state[S_ZERO] = zero ? 1 : 0;
  return count;
}

function allZero(buf: Uint8Array, from: number, to: number): boolean {
  for (let k = from; k < to; k++) if (buf[k] !== 0) return false;
  return true;
}

type CutFn = typeof cutTs;

export const nativeCut: CutFn | undefined = nativeCutFn;

/** Which implementation cuts: 'native' (the C addon) or 'ts' (the fallback). */
export const segmenterImpl: 'native' | 'ts' = nativeCut ? 'native' : 'ts';

/**
 * A resumable segmenter for one stream. push() returns the cut list for the bytes given
 * (valid until the next push); the bytes after the last cut belong to the chunk still open.
 */
export class Segmenter {
  readonly params: ChunkerParams;
  private readonly packed: Int32Array;
  private readonly state = new Uint32Array(3);
  private readonly cut: CutFn;
  private out = new Uint32Array(0);

  constructor(params: ChunkerParams, impl: 'native' | 'ts' = segmenterImpl) {
    this.params = params;
    this.packed = packParams(params);
    if (impl === 'native' && !nativeCut) throw vmError('NOT_SUPPORTED', 'the native segmenter addon is not built (npm install builds it)');
    this.cut = impl === 'native' ? nativeCut! : cutTs;
    this.reset();
  }

  /** True when a run of zeros never ends a chunk before maxSize (see packParams). */
  get zeroFast(): boolean {
    return this.packed[P_ZERO_FAST] === 1;
  }

  reset(): void {
    this.state[S_POS] = 0;
    this.state[S_FP] = 0;
    this.state[S_ZERO] = 1;
  }

  /** Bytes of the chunk still open (since the last cut). */
  get pending(): number {
    return this.state[S_POS];
  }

  push(buf: Uint8Array): Uint32Array {
    const need = Math.ceil(buf.length / (this.params.minSize + 1)) + 2;
    if (this.out.length < need) this.out = new Uint32Array(Math.max(need, 1024));
    const count = this.cut(GEAR, this.packed, this.state, buf, this.out);
    return this.out.subarray(0, count);
  }

  /**
   * push() off the main thread (the addon's cut on the libuv pool; the TypeScript loop runs
   * in place). Calls must not overlap, and `buf` must not change until the promise settles.
   * The cut list is the caller's to keep.
   */
  pushAsync(buf: Uint8Array): Promise<Uint32Array> {
    const cutAsync = nativeCutAsyncFn;
    // A small piece (a small file, a small update) is cut in place: tens of microseconds,
    // less than the hand-off to the pool and back.
    if (this.cut !== nativeCutFn || !cutAsync || buf.length <= SYNC_CUT_BYTES) return Promise.resolve(this.push(buf).slice());
    const out = new Uint32Array(Math.ceil(buf.length / (this.params.minSize + 1)) + 2);
    return new Promise((resolve, reject) => {
      cutAsync(GEAR, this.packed, this.state, buf, out, (err, count) => (err ? reject(err) : resolve(out.subarray(0, count))));
    });
  }
}
