// Deterministic test data: a seeded PRNG and generators for the kinds of content VM images
// hold (random, zeros, sparse islands, compressible text, copies of earlier content).

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  /** xorshift32 */
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.s = x;
    return x;
  }
  int(n: number): number {
    return Math.floor((this.next() / 0x100000000) * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE(this.next(), i);
    for (; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
}

const WORDS = 'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa'.split(' ');

export type Kind = 'random' | 'zeros' | 'sparse' | 'text';

export function generate(rng: Rng, kind: Kind, n: number): Buffer {
  switch (kind) {
    case 'random':
      return rng.bytes(n);
    case 'zeros':
      return Buffer.alloc(n);
    case 'sparse': {
      const b = Buffer.alloc(n);
      const islands = rng.range(1, 8);
      for (let k = 0; k < islands && n > 0; k++) {
        const len = rng.range(1, Math.min(n, 16384));
        const at = rng.int(n - len + 1);
        rng.bytes(len).copy(b, at);
      }
      return b;
    }
    case 'text': {
      const parts: string[] = [];
      let len = 0;
      while (len < n) {
        const w = `${rng.pick(WORDS)} ${rng.int(100000)} `;
        parts.push(w);
        len += w.length;
      }
      return Buffer.from(parts.join('')).subarray(0, n);
    }
  }
}

/** Incompressible bytes, distinct per `seed` and the same for one seed (xorshift32). */
export function distinctBytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeInt32LE(x | 0, i);
  }
  return out;
}
