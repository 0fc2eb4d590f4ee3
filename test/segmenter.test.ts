// The segmenter's boundaries are part of the store format: these tests pin them with vectors
// and hold the C addon (native/) to the TypeScript reference, byte for byte.

import t from 'tap';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import {
  DEFAULT_CHUNKER,
  END_MASK,
  GEAR,
  Segmenter,
  ZERO_FLAG,
  cutTs,
  nativeCut,
  packParams,
  segmenterImpl,
  type ChunkerParams,
} from '../src/store/segmenter/segmenter.js';

const KiB = 1024;
const MiB = 1024 * KiB;

const PARAMS: Array<[string, ChunkerParams]> = [
  ['default 2K/8K/64K', DEFAULT_CHUNKER],
  ['small 512/2K/16K', { minSize: 512, avgSize: 2048, maxSize: 16384 }],
  ['large 16K/64K/256K', { minSize: 16384, avgSize: 65536, maxSize: 262144 }],
];

/** xorshift32, four bytes per step, little-endian: the pinned vectors depend on this exact stream. */
function xorshiftBytes(seed: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 255;
    out[i + 1] = (x >>> 8) & 255;
    out[i + 2] = (x >>> 16) & 255;
    out[i + 3] = x >>> 24;
  }
  return out;
}

/** A small seeded PRNG for sizes and layouts (not part of any vector). */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

/** Random data broken by zero runs: long ones (several max sizes, some aligned) and short ones. */
function mixedData(seed: number, n: number): Uint8Array {
  const buf = xorshiftBytes(seed, n);
  const r = rng(seed ^ 0x5a5a5a5a);
  buf.fill(0, 0, 600 * KiB); // a zero run at the very start, longer than every max size
  let at = 600 * KiB + r(64 * KiB);
  while (at < n) {
    const long = r(4) === 0;
    const len = long ? 64 * KiB * (1 + r(6)) + r(3) * r(64 * KiB) : 1 + r(6000);
    buf.fill(0, at, Math.min(n, at + len));
    at += len + r(long ? 400 * KiB : 60 * KiB);
  }
  buf.fill(0, n - 70 * KiB); // and one at the very end
  return buf;
}

/** Zeros with isolated non-zero bytes: a wrong zero test at any offset mislabels a chunk. */
function sparseData(seed: number, n: number): Uint8Array {
  const buf = new Uint8Array(n);
  const r = rng(seed);
  for (let at = r(40 * KiB); at < n; at += 1 + r(80 * KiB)) buf[at] = 1 + r(255);
  return buf;
}

/** Every flag must tell the truth: ZERO_FLAG exactly on the chunks that are all zero. */
function wrongFlags(data: Uint8Array, ends: number[]): number[] {
  const wrong: number[] = [];
  let start = 0;
  for (const e of ends.slice(0, -1)) {
    const end = e & END_MASK;
    const zero = data.subarray(start, end).every((b) => b === 0);
    if (zero !== e >= ZERO_FLAG) wrong.push(end);
    start = end;
  }
  return wrong;
}

/** Regular files from /usr/lib and /usr/bin in name order, concatenated up to `cap` bytes. */
function realData(cap: number): Uint8Array {
  const parts: Buffer[] = [];
  let total = 0;
  const walk = (dir: string, depth: number): void => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const name of names) {
      if (total >= cap) return;
      const p = path.join(dir, name);
      try {
        const st = statSync(p);
        if (st.isDirectory() && depth < 3) walk(p, depth + 1);
        else if (st.isFile() && st.size > 0 && st.size < 16 * MiB) {
          const b = readFileSync(p);
          parts.push(b);
          total += b.length;
        }
      } catch {
        // unreadable or vanished: skip
      }
    }
  };
  walk('/usr/lib', 0);
  walk('/usr/bin', 0);
  return new Uint8Array(Buffer.concat(parts).subarray(0, cap));
}

/**
 * Cut list of `data` fed whole or in pieces of the sizes `pieces` returns: absolute end
 * offsets with ZERO_FLAG kept, then the bytes left in the open chunk.
 */
function cutAll(data: Uint8Array, params: ChunkerParams, impl: 'native' | 'ts', pieces?: () => number): number[] {
  const seg = new Segmenter(params, impl);
  const ends: number[] = [];
  let off = 0;
  while (off < data.length) {
    const len = pieces ? Math.min(pieces(), data.length - off) : data.length;
    for (const e of seg.push(data.subarray(off, off + len))) {
      ends.push((e & END_MASK) + off + (e >= ZERO_FLAG ? ZERO_FLAG : 0));
    }
    off += len;
  }
  ends.push(seg.pending);
  return ends;
}

/** Piece sizes from 1 byte to 100 KiB, log-uniform so that small pieces are common. */
function randomPieces(seed: number): () => number {
  const r = rng(seed);
  return () => Math.max(1, Math.floor(Math.exp((r(1_000_000) / 1_000_000) * Math.log(100 * KiB))));
}

function digest(ends: number[]): string {
  return createHash('sha256').update(ends.join(',')).digest('hex');
}

// Changing any of these vectors is a format change: every boundary moves and nothing already
// stored deduplicates against new backups. Do it only with a new format version.
t.test('pinned vectors', async (t) => {
  t.same(Array.from(GEAR.subarray(0, 4)), [0x085a7bdd, 0xa329f3f6, 0x9c408375, 0xabe94173], 'gear table');
  t.same(Array.from(packParams(DEFAULT_CHUNKER)), [2048, 8192, 65536, 0xfffe0000 | 0, 0xffe00000 | 0, 1], 'default params, zeroFast 1');

  const random = xorshiftBytes(0x766d7631, MiB);
  const out = new Uint32Array(1024);
  const state = Uint32Array.of(0, 0, 1);
  const count = cutTs(GEAR, packParams(DEFAULT_CHUNKER), state, random, out);
  const ends = Array.from(out.subarray(0, count));
  t.equal(count, 109, 'chunk count of 1 MiB seeded random');
  t.same(
    ends.slice(0, 20),
    [8242, 16996, 22720, 36744, 46208, 55368, 65332, 71825, 80819, 98600, 107905, 118824, 127666, 133740, 144631, 154081, 159058, 167982, 177348, 188954],
    'first 20 ends',
  );
  t.equal(digest(ends), '49433563f7f83f499e20f68aece76fd9f38b666002c502223c4b2d06f14d0c1c', 'sha256 of the whole list');
  t.equal(state[0], 2637, 'bytes left in the open chunk');

  const zeros = new Uint8Array(MiB);
  const zc = cutTs(GEAR, packParams(DEFAULT_CHUNKER), Uint32Array.of(0, 0, 1), zeros, out);
  t.same(Array.from(out.subarray(0, zc)), Array.from({ length: 16 }, (_, i) => ((i + 1) * 65536 + ZERO_FLAG) >>> 0), '1 MiB of zeros: 16 zero chunks of 64 KiB');
  const piecewise = cutAll(zeros, DEFAULT_CHUNKER, 'ts', randomPieces(7));
  t.same(piecewise.slice(0, -1), Array.from(out.subarray(0, zc)), 'zeros fed in pieces cut the same without the fast path');
});

t.test('TypeScript: whole and piecewise feeding agree', async (t) => {
  const data = mixedData(11, 3 * MiB);
  for (const [name, params] of PARAMS) {
    const whole = cutAll(data, params, 'ts');
    t.ok(whole.some((e) => e >= ZERO_FLAG) && whole.some((e) => e < ZERO_FLAG), `${name}: has zero and data chunks`);
    t.same(wrongFlags(data, whole), [], `${name}: zero flags true`);
    t.same(cutAll(data, params, 'ts', randomPieces(3)), whole, `${name}: random pieces`);
  }
  const small = mixedData(5, 256 * KiB);
  t.same(cutAll(small, { minSize: 512, avgSize: 2048, maxSize: 16384 }, 'ts', () => 1), cutAll(small, { minSize: 512, avgSize: 2048, maxSize: 16384 }, 'ts'), 'one byte at a time');
});

t.test('native addon is loaded when required', async (t) => {
  if (process.env.VMVAULT_REQUIRE_NATIVE === '1') {
    t.equal(segmenterImpl, 'native', 'VMVAULT_REQUIRE_NATIVE=1 but the addon did not load (npm install builds it)');
  } else {
    t.pass(`segmenter implementation: ${segmenterImpl}`);
  }
});

const noNative = segmenterImpl === 'native' ? false : 'native addon not built: parity tests skipped (npm install builds it)';

t.test('native cuts exactly as TypeScript', { skip: noNative }, async (t) => {
  const inputs: Array<[string, Uint8Array]> = [
    ['seeded random 8 MiB', xorshiftBytes(0x1234567, 8 * MiB)],
    ['real binaries', realData(32 * MiB)],
    ['mixed zero runs 16 MiB', mixedData(99, 16 * MiB)],
    ['sparse non-zero bytes 16 MiB', sparseData(17, 16 * MiB)],
    ['all zero 1 MiB + 1', new Uint8Array(MiB + 1)],
  ];
  for (const [what, data] of inputs) {
    for (const [name, params] of PARAMS) {
      const ref = cutAll(data, params, 'ts');
      const native = cutAll(data, params, 'native');
      t.same(native, ref, `${what}, ${name}: whole`);
      t.same(wrongFlags(data, native), [], `${what}, ${name}: zero flags true`);
      t.same(cutAll(data, params, 'native', randomPieces(data.length ^ params.avgSize)), ref, `${what}, ${name}: random pieces`);
    }
  }
  const small = mixedData(5, 256 * KiB);
  const p = { minSize: 512, avgSize: 2048, maxSize: 16384 };
  t.same(cutAll(small, p, 'native', () => 1), cutAll(small, p, 'ts'), 'one byte at a time');
});

t.test('native pinned vector', { skip: noNative }, async (t) => {
  const out = new Uint32Array(1024);
  const state = Uint32Array.of(0, 0, 1);
  const count = nativeCut!(GEAR, packParams(DEFAULT_CHUNKER), state, xorshiftBytes(0x766d7631, MiB), out);
  t.equal(digest(Array.from(out.subarray(0, count))), '49433563f7f83f499e20f68aece76fd9f38b666002c502223c4b2d06f14d0c1c', 'sha256 of the list');
  t.same(Array.from(state), [2637, state[1], 0], 'open chunk');
});

t.test('native validates its arguments', { skip: noNative }, async (t) => {
  const cut = nativeCut! as (...args: unknown[]) => number;
  const p = packParams(DEFAULT_CHUNKER);
  const buf = new Uint8Array(100_000);
  const need = Math.ceil(buf.length / (DEFAULT_CHUNKER.minSize + 1)) + 2;
  const ok = (): unknown[] => [GEAR, p, Uint32Array.of(0, 0, 1), buf, new Uint32Array(need)];
  const call = (i: number, v: unknown) => () => {
    const args = ok();
    args[i] = v;
    return cut(...args);
  };
  t.equal(typeof cut(...ok()), 'number', 'valid call works');
  t.equal(cut(GEAR, p, Uint32Array.of(0, 0, 1), Buffer.alloc(10), new Uint32Array(3)), 0, 'a Buffer is a Uint8Array');
  t.throws(() => cut(GEAR, p, Uint32Array.of(0, 0, 1), buf), { name: 'TypeError', message: /5 arguments/ }, 'missing argument');
  t.throws(call(0, Array.from(GEAR)), { name: 'TypeError', message: /gear/ }, 'gear as a plain array');
  t.throws(call(0, GEAR.subarray(0, 255)), { name: 'RangeError', message: /gear/ }, 'short gear');
  t.throws(call(1, new Uint32Array(p.buffer)), { name: 'TypeError', message: /params/ }, 'params of the wrong type');
  t.throws(call(1, p.subarray(0, 5)), { name: 'RangeError', message: /params/ }, 'short params');
  t.throws(call(1, Int32Array.of(8192, 2048, 65536, 0, 0, 1)), { name: 'RangeError', message: /min < avg < max/ }, 'min above avg');
  t.throws(call(2, new Uint32Array(2)), { name: 'RangeError', message: /state/ }, 'short state');
  t.throws(call(2, Uint32Array.of(65536, 0, 1)), { name: 'RangeError', message: /state\[0\]/ }, 'open chunk at max');
  t.throws(call(3, 'not bytes'), { name: 'TypeError', message: /buf/ }, 'string buf');
  t.throws(call(3, new Uint16Array(10)), { name: 'TypeError', message: /buf/ }, 'Uint16Array buf');
  t.throws(call(4, new Uint32Array(need - 1)), { name: 'RangeError', message: /out has/ }, 'out one entry short');
  t.throws(call(4, new Int32Array(need)), { name: 'TypeError', message: /out/ }, 'out of the wrong type');
});
