// The summary filter of the duplicate eliminator (Data Domain's summary vector): a Bloom
// filter over fingerprints so a new segment costs no index read. Its bits live in a
// SharedArrayBuffer so codec workers can consult it too and compress likely-new segments
// before the main thread decides (a stale read there only wastes a compression).
//
// Fingerprints are uniform, so probe positions come straight from their bytes (double
// hashing on two 32-bit words); no extra hashing.

export const BLOOM_BITS_PER_KEY = 10;
export const BLOOM_PROBES = 7;

export interface BloomShape {
  sab: SharedArrayBuffer;
  /** log2 of the number of bits. */
  log2Bits: number;
  probes: number;
}

export class BloomFilter {
  readonly shape: BloomShape;
  private readonly words: Uint32Array;
  private readonly mask: number;
  /** Keys added (duplicates counted twice; only used to decide when to grow). */
  count = 0;

  constructor(shape: BloomShape) {
    this.shape = shape;
    this.words = new Uint32Array(shape.sab);
    this.mask = shape.log2Bits >= 32 ? 0xffffffff : 2 ** shape.log2Bits - 1;
  }

  static forCapacity(keys: number): BloomFilter {
    const bits = Math.max(1 << 16, keys * BLOOM_BITS_PER_KEY);
    const log2Bits = Math.min(32, Math.ceil(Math.log2(bits)));
    return new BloomFilter({ sab: new SharedArrayBuffer(2 ** log2Bits / 8), log2Bits, probes: BLOOM_PROBES });
  }

  /** How many keys the filter holds at its designed false-positive rate (~1%). */
  get capacity(): number {
    return Math.floor(2 ** this.shape.log2Bits / BLOOM_BITS_PER_KEY);
  }

  get bytes(): number {
    return this.shape.sab.byteLength;
  }

  add(fp: Uint8Array, off = 0): void {
    const h1 = word(fp, off);
    const h2 = word(fp, off + 4) | 1;
    for (let i = 0; i < this.shape.probes; i++) {
      const bit = ((h1 + Math.imul(i, h2)) >>> 0) & this.mask;
      this.words[bit >>> 5] |= 1 << (bit & 31);
    }
    this.count++;
  }

  mayContain(fp: Uint8Array, off = 0): boolean {
    return bloomProbe(this.words, this.mask, this.shape.probes, fp, off);
  }
}

/** The probe as a free function, for workers holding only the shared words. */
export function bloomProbe(words: Uint32Array, mask: number, probes: number, fp: Uint8Array, off: number): boolean {
  const h1 = word(fp, off);
  const h2 = word(fp, off + 4) | 1;
  for (let i = 0; i < probes; i++) {
    const bit = ((h1 + Math.imul(i, h2)) >>> 0) & mask;
    if ((words[bit >>> 5] & (1 << (bit & 31))) === 0) return false;
  }
  return true;
}

function word(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}
