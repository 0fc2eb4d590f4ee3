// The addon's codec held to references on every test run (issue 9):
// - BLAKE3 (native/src/blake3.c, hand-written): the BLAKE3 team's official test vectors
//   (test/fixtures/blake3/, hash mode only: the store has no keyed or derive-key mode), and
//   @napi-rs/blake-hash on adversarial inputs (all-zero, all-0xff, sizes at and around the
//   block, chunk, lane-group and tree boundaries, batches that fill the lanes unevenly), with
//   every SIMD kernel this CPU runs.
// - LZ4 (native/src/lz4.c, liblz4 since it replaced the hand-written codec): payloads of the old
//   compressor (test/fixtures/lz4/) still decode, and lz4-napi (lz4_flex, an independent
//   implementation, the fallback path's codec) reads the addon's payloads and the addon reads
//   lz4-napi's, on random and adversarial inputs. Differential checks against liblz4 itself run
//   in C under the sanitizers (native/fuzz/, test/native-fuzz.test.ts).

import t from 'tap';
import { blake3 } from '@napi-rs/blake-hash';
import { compressSync, uncompressSync } from 'lz4-napi';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeCodec } from '../src/store/native.js';
import { Rng } from './helpers/data.js';
import type { TestT } from './helpers/tap-types.js';

const addon = nativeCodec;
// dist/test -> repository root
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const kernels = ['portable', 'sse41', 'avx2', 'avx512'];

/** Runs fn once per BLAKE3 kernel this CPU has; restores the best kernel after. */
async function eachKernel(t: TestT, fn: (kernel: string) => void): Promise<void> {
  let ran = 0;
  try {
    for (const k of kernels) {
      if (!addon!.blake3Force(k)) {
        t.comment(`${k}: not supported by this CPU`);
        continue;
      }
      ran++;
      fn(k);
    }
  } finally {
    addon!.blake3Force();
  }
  t.ok(ran >= 1, `${ran} kernels checked`);
}

interface VectorFile {
  cases: { input_len: number; hash: string; keyed_hash: string; derive_key: string }[];
}

t.test('BLAKE3: the official test vectors (hash mode)', { skip: !addon }, async (t) => {
  const file = JSON.parse(fs.readFileSync(path.join(root, 'test', 'fixtures', 'blake3', 'test_vectors.json'), 'utf8')) as VectorFile;
  // Every case also has keyed_hash and derive_key outputs: not checked, no such mode here.
  t.equal(file.cases.length, 35, 'all 35 cases of the official file');
  const input = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => i % 251));
  const want = file.cases.map((c) => Buffer.from(c.hash.slice(0, 64), 'hex'));
  t.ok(blake3(input(0)).equals(want[0]), '@napi-rs/blake-hash agrees on the empty input (the reference itself)');
  await eachKernel(t, (k) => {
    const bad = file.cases.filter((c, i) => !addon!.blake3(input(c.input_len)).equals(want[i])).map((c) => c.input_len);
    t.same(bad, [], `${k}: blake3() matches every vector`);
    // All cases in one batch, as ingest hashes them (lanes shared between segments).
    const segs: number[] = [];
    const parts: Buffer[] = [];
    let at = 0;
    for (const c of file.cases) {
      parts.push(input(c.input_len));
      segs.push(at, c.input_len);
      at += c.input_len;
    }
    const all = Buffer.concat(parts);
    const out = Buffer.alloc(32 * file.cases.length);
    addon!.blake3Many(all, Uint32Array.from(segs), out);
    const badMany = file.cases.filter((_, i) => !out.subarray(32 * i, 32 * i + 32).equals(want[i])).map((c) => c.input_len);
    t.same(badMany, [], `${k}: blake3Many() over all ${file.cases.length} vectors in one batch matches`);
  });
});

t.test('BLAKE3: adversarial inputs equal @napi-rs/blake-hash', { skip: !addon }, async (t) => {
  const rng = new Rng(91);
  const sizes = new Set<number>();
  for (let n = 0; n <= 130; n++) sizes.add(n);
  // Chunk counts around powers of two (tree shape) and lane groups (4, 8, 16 chunks).
  for (const chunks of [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257]) {
    for (const d of [-1025, -1024, -65, -64, -1, 0, 1, 64, 65]) {
      const n = chunks * 1024 + d;
      if (n >= 0) sizes.add(n);
    }
  }
  const fills: [string, (n: number) => Buffer][] = [
    ['zeros', (n) => Buffer.alloc(n)],
    ['0xff', (n) => Buffer.alloc(n, 0xff)],
    ['random', (n) => rng.bytes(n)],
  ];
  await eachKernel(t, (k) => {
    for (const [name, fill] of fills) {
      const bad: number[] = [];
      for (const n of sizes) {
        const b = fill(n);
        if (!addon!.blake3(b).equals(blake3(b))) bad.push(n);
      }
      t.same(bad, [], `${k}, ${name}: ${sizes.size} sizes up to ${Math.max(...sizes)} bytes agree`);
    }
    // Batches of uneven segments: one large among many tiny, empties, all sizes mixed.
    const data = rng.bytes(1 << 20);
    let bad = 0;
    let total = 0;
    for (let r = 0; r < 40; r++) {
      const segs: number[] = [];
      const count = rng.range(1, 300);
      for (let i = 0; i < count; i++) {
        const kind = rng.int(5);
        const len = kind === 0 ? 0 : kind === 1 ? rng.int(65) : kind === 2 ? rng.range(1, 1100) : kind === 3 ? rng.range(1, 20000) : rng.range(100000, 300000);
        const at = rng.int(data.length - len + 1);
        segs.push(at, len);
      }
      const s = Uint32Array.from(segs);
      const out = Buffer.alloc(16 * s.length);
      addon!.blake3Many(data, s, out);
      for (let i = 0; i < count; i++) {
        total++;
        if (!out.subarray(32 * i, 32 * i + 32).equals(blake3(data.subarray(s[2 * i], s[2 * i] + s[2 * i + 1])))) bad++;
      }
    }
    t.equal(bad, 0, `${k}: ${total} segments in 40 uneven batches agree`);
  });
});

t.test('LZ4: payloads of the hand-written compressor still decode', { skip: !addon }, async (t) => {
  const f = fs.readFileSync(path.join(root, 'test', 'fixtures', 'lz4', 'handwritten.bin'));
  let at = 0;
  let count = 0;
  const bad: number[] = [];
  while (at < f.length) {
    const n = f.readUInt32LE(at);
    const plain = f.subarray(at + 4, at + 4 + n);
    at += 4 + n;
    const pl = f.readUInt32LE(at);
    const payload = f.subarray(at + 4, at + 4 + pl);
    at += 4 + pl;
    const out = Buffer.alloc(n);
    if (addon!.lz4Decompress(payload, out) !== n || !out.equals(plain)) bad.push(count);
    if (!uncompressSync(payload).equals(plain)) bad.push(count);
    count++;
  }
  t.equal(at, f.length, 'the fixture parses to its end');
  t.ok(count >= 60, `${count} payloads`);
  t.same(bad, [], 'every one decodes with the addon and with lz4-napi');
});

t.test('LZ4: adversarial inputs cross between the addon and lz4-napi', { skip: !addon }, async (t) => {
  const rng = new Rng(93);
  const inputs: [string, Buffer][] = [];
  // Sizes at the block format's edges (MFLIMIT 12, LASTLITERALS 5, the length nibble's 15 and
  // the 255 steps of its extension) and around the 64 KiB window.
  const sizes = [0, 1, 4, 5, 11, 12, 13, 16, 17, 18, 19, 20, 31, 32, 33, 270, 271, 272, 525, 526, 4095, 4096, 4097, 65535, 65536, 65537, 65536 + 12, 131072, 262145];
  for (const n of sizes) {
    inputs.push([`zeros ${n}`, Buffer.alloc(n)]);
    inputs.push([`random ${n}`, rng.bytes(n)]);
    const rep = Buffer.alloc(n);
    const unit = rng.bytes(1 + rng.int(20));
    for (let i = 0; i < n; i++) rep[i] = unit[i % unit.length];
    inputs.push([`period ${unit.length} ${n}`, rep]);
    // Incompressible with a copy of its start just past the 64 KiB window and just inside it.
    const far = rng.bytes(n);
    if (n > 65536 + 64) far.copy(far, 65535, 0, 64);
    inputs.push([`far match ${n}`, far]);
    // Random with islands of zeros: literal runs of every length between matches.
    const mixed = rng.bytes(n);
    for (let i = 0; i < n; i += rng.range(1, 600)) mixed.fill(0, i, Math.min(n, i + rng.range(4, 300)));
    inputs.push([`islands ${n}`, mixed]);
  }
  const bad: string[] = [];
  for (const [name, src] of inputs) {
    const dst = Buffer.alloc(src.length + Math.ceil(src.length / 255) + 20);
    const n = addon!.lz4Compress(src, dst);
    if (n === 0 || !uncompressSync(dst.subarray(0, n)).equals(src)) bad.push(`addon -> lz4-napi: ${name}`);
    const c = compressSync(src);
    const back = Buffer.alloc(src.length);
    if (addon!.lz4Decompress(c, back) !== src.length || !back.equals(src)) bad.push(`lz4-napi -> addon: ${name}`);
    // One byte less room than the data needs is refused, never overrun.
    if (src.length > 0) {
      const guard = Buffer.alloc(src.length + 16, 0xa5);
      if (addon!.lz4Decompress(c, guard.subarray(0, src.length - 1)) !== -1) bad.push(`short room accepted: ${name}`);
      if (!guard.subarray(src.length - 1).equals(Buffer.alloc(17, 0xa5))) bad.push(`wrote past the room: ${name}`);
    }
  }
  t.same(bad, [], `${inputs.length} inputs, both directions`);
});
