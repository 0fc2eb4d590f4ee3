// A set of 32-byte segment fingerprints in one flat table (open addressing, linear probing), for
// the replication tokens' scoping (replicas.ts): a Set of hex strings cost ~101 B per
// fingerprint (a 64-character string, its header and the Set's entry; tools/bench-fingerprint-set.ts),
// this 44-88 B (32 B slots at a load between 3/8 and 3/4, plus one byte of occupancy each; 69 B at
// a million), with the same lookup time. Fingerprints are BLAKE3 digests,
// uniformly distributed, so their first four bytes are the hash.

const FP = 32;
const MAX_LOAD = 0.75;

export class FingerprintSet {
  private slots: Buffer;
  private used: Uint8Array;
  private mask: number;
  private count = 0;

  constructor(expected = 1024) {
    let cap = 16;
    while (cap * MAX_LOAD < expected) cap *= 2;
    this.slots = Buffer.alloc(cap * FP);
    this.used = new Uint8Array(cap);
    this.mask = cap - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Bytes the table holds (for the memory figure). */
  get bytes(): number {
    return this.slots.length + this.used.length;
  }

  add(fp: Uint8Array): void {
    if (fp.length !== FP) throw new RangeError(`a fingerprint is ${FP} bytes, not ${fp.length}`);
    if ((this.count + 1) > (this.mask + 1) * MAX_LOAD) this.grow();
    if (this.insert(fp)) this.count++;
  }

  has(fp: Uint8Array): boolean {
    if (fp.length !== FP) return false;
    for (let i = this.home(fp); ; i = (i + 1) & this.mask) {
      if (this.used[i] === 0) return false;
      if (this.slots.compare(fp, 0, FP, i * FP, i * FP + FP) === 0) return true;
    }
  }

  private home(fp: Uint8Array): number {
    return ((fp[0]! | (fp[1]! << 8) | (fp[2]! << 16) | (fp[3]! << 24)) >>> 0) & this.mask;
  }

  /** False when it was there already. */
  private insert(fp: Uint8Array): boolean {
    for (let i = this.home(fp); ; i = (i + 1) & this.mask) {
      if (this.used[i] === 0) {
        this.slots.set(fp, i * FP);
        this.used[i] = 1;
        return true;
      }
      if (this.slots.compare(fp, 0, FP, i * FP, i * FP + FP) === 0) return false;
    }
  }

  private grow(): void {
    const old = this.slots;
    const oldUsed = this.used;
    const cap = (this.mask + 1) * 2;
    this.slots = Buffer.alloc(cap * FP);
    this.used = new Uint8Array(cap);
    this.mask = cap - 1;
    for (let i = 0; i < oldUsed.length; i++) if (oldUsed[i] === 1) this.insert(old.subarray(i * FP, i * FP + FP));
  }
}
