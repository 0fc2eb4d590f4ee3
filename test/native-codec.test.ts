// The addon's codec (native/src/blake3.c, lz4.c, batch.c) against the libraries of the
// fallback path: BLAKE3 equal to @napi-rs/blake-hash for every length around the chunk and
// block boundaries and for segment lists, with every SIMD kernel this CPU runs; LZ4 payloads
// readable by lz4-napi and lz4-napi's readable by the addon; the batch calls' results; and
// malformed input refused, never read past.

import t from 'tap';
import { blake3 } from '@napi-rs/blake-hash';
import { compressSync, uncompressSync } from 'lz4-napi';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nativeCodec } from '../src/store/native.js';
import { generate, Rng } from './helpers/data.js';

const addon = nativeCodec;

function realBytes(n: number): Buffer {
  const out = Buffer.alloc(n);
  let at = 0;
  for (const name of fs.readdirSync('/usr/bin').sort()) {
    if (at >= n) break;
    try {
      const f = path.join('/usr/bin', name);
      if (!fs.statSync(f).isFile()) continue;
      at += fs.readFileSync(f).copy(out, at);
    } catch {
      // unreadable
    }
  }
  return out;
}

t.test('the addon is built with the codec', async (t) => {
  if (process.env.VMVAULT_REQUIRE_NATIVE === '1') t.ok(addon, 'VMVAULT_REQUIRE_NATIVE=1 and the codec is present');
  else if (!addon) t.pass('native codec not built; the fallback path is what runs');
  else t.pass(`native codec present, BLAKE3 kernel ${addon.blake3Impl()}`);
});

t.test('BLAKE3 equals @napi-rs/blake-hash for every kernel', { skip: !addon }, async (t) => {
  const rng = new Rng(3);
  const data = rng.bytes(70000 + 64);
  const lengths: number[] = [];
  for (let n = 0; n <= 2100; n++) lengths.push(n);
  for (let c = 2; c <= 68; c++) for (const d of [-65, -64, -63, -1, 0, 1, 63, 64, 65]) lengths.push(c * 1024 + d);
  for (let n = 2100; n <= 70000; n += 331) lengths.push(n);
  for (const impl of ['portable', 'sse41', 'avx2', 'avx512']) {
    if (!addon!.blake3Force(impl)) {
      t.comment(`${impl}: not supported by this CPU`);
      continue;
    }
    try {
      let bad = 0;
      for (const n of lengths) {
        const off = n % 29;
        if (!addon!.blake3(data.subarray(off, off + n)).equals(blake3(data.subarray(off, off + n)))) bad++;
      }
      t.equal(bad, 0, `${impl}: ${lengths.length} lengths 0..70000 agree`);
      let badMany = 0;
      let total = 0;
      for (let r = 0; r < 60; r++) {
        const segs: number[] = [];
        let at = rng.int(100);
        while (at < data.length && segs.length < 600) {
          const len = Math.min(data.length - at, rng.int(4) === 0 ? rng.int(2100) : rng.int(66000));
          segs.push(at, len);
          at += len + (rng.int(5) === 0 ? rng.int(300) : 0);
        }
        const s = Uint32Array.from(segs);
        const out = Buffer.alloc(s.length * 16);
        addon!.blake3Many(data, s, out);
        for (let i = 0; i < s.length / 2; i++) {
          total++;
          if (!out.subarray(32 * i, 32 * i + 32).equals(blake3(data.subarray(s[2 * i], s[2 * i] + s[2 * i + 1])))) badMany++;
        }
      }
      t.equal(badMany, 0, `${impl}: ${total} segments of 60 segment lists agree`);
    } finally {
      addon!.blake3Force();
    }
  }
});

t.test('LZ4 payloads cross between the addon and lz4-napi', { skip: !addon }, async (t) => {
  const rng = new Rng(5);
  const inputs: Buffer[] = [];
  for (let n = 0; n < 300; n++) inputs.push(rng.bytes(n), Buffer.alloc(n, n & 255), generate(rng, 'text', n));
  const real = realBytes(4 * 1024 * 1024);
  for (let k = 0; k < 300; k++) {
    const n = rng.int(70000);
    const at = rng.int(real.length - n);
    inputs.push(real.subarray(at, at + n), generate(rng, rng.pick(['random', 'sparse', 'text', 'zeros'] as const), n));
  }
  // Patterns that exercise every match-copy path: short periods, long runs, overlaps.
  for (const period of [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 64]) {
    const unit = rng.bytes(period);
    const b = Buffer.alloc(20000 + period);
    for (let i = 0; i < b.length; i++) b[i] = unit[i % period];
    inputs.push(b);
  }
  let mineBad = 0;
  let theirsBad = 0;
  let mine = 0;
  let theirs = 0;
  for (const src of inputs) {
    const dst = Buffer.alloc(src.length + Math.ceil(src.length / 255) + 20);
    const n = addon!.lz4Compress(src, dst);
    if (n === 0 || !uncompressSync(dst.subarray(0, n)).equals(src)) mineBad++;
    const c = compressSync(src);
    const back = Buffer.alloc(src.length);
    if (addon!.lz4Decompress(c, back) !== src.length || !back.equals(src)) theirsBad++;
    mine += n;
    theirs += c.length;
  }
  t.equal(mineBad, 0, `${inputs.length} addon payloads decode with lz4-napi`);
  t.equal(theirsBad, 0, `${inputs.length} lz4-napi payloads decode with the addon`);
  t.ok(mine <= theirs * 1.02, `the addon compresses as well as lz4-napi (${mine} vs ${theirs} bytes)`);
  const text = generate(rng, 'text', 10000);
  t.equal(addon!.lz4Compress(text, Buffer.alloc(100)), 0, 'a payload that does not fit its room is refused (0)');
});

t.test('malformed LZ4 payloads are refused, never overrun', { skip: !addon }, async (t) => {
  const rng = new Rng(9);
  const src = generate(rng, 'text', 20000);
  const good = compressSync(src);
  const out = Buffer.alloc(src.length);
  t.equal(addon!.lz4Decompress(good.subarray(0, 3), out), -1, 'shorter than the prefix');
  t.equal(addon!.lz4Decompress(good.subarray(0, good.length - 1), out), -1, 'truncated');
  t.equal(addon!.lz4Decompress(good, Buffer.alloc(src.length - 1)), -1, 'room smaller than the prefix claims');
  let refused = 0;
  let wrong = 0;
  for (let k = 0; k < 2000; k++) {
    const bad = Buffer.from(good);
    const flips = rng.range(1, 4);
    for (let f = 0; f < flips; f++) bad[4 + rng.int(bad.length - 4)] ^= 1 << rng.int(8);
    const guard = Buffer.alloc(src.length + 64, 0xa5);
    const n = addon!.lz4Decompress(bad, guard.subarray(0, src.length));
    if (n < 0) refused++;
    else if (!guard.subarray(0, n).equals(src)) wrong++;
    if (!guard.subarray(src.length).equals(Buffer.alloc(64, 0xa5))) t.fail('wrote past the room it was given');
  }
  t.ok(refused > 0, `${refused} of 2000 damaged payloads refused; ${wrong} decoded to other bytes (the fingerprint check catches those)`);
});

t.test('hashBatch: fingerprints, payloads and the summary filter', { skip: !addon }, async (t) => {
  const rng = new Rng(11);
  const real = realBytes(2 * 1024 * 1024);
  const data = Buffer.concat([real, rng.bytes(100000), Buffer.alloc(50000)]);
  const segs: number[] = [];
  for (let at = 0; at < data.length; ) {
    const len = Math.min(data.length - at, rng.range(1, 40000));
    segs.push(at, len);
    at += len;
  }
  const s = Uint32Array.from(segs);
  const n = s.length / 2;
  // A filter holding the fingerprint of every third segment: those are not compressed.
  const log2Bits = 16;
  const words = new Uint32Array(new SharedArrayBuffer(2 ** log2Bits / 8));
  for (let i = 0; i < n; i += 3) {
    const fp = blake3(data.subarray(s[2 * i], s[2 * i] + s[2 * i + 1]));
    const h1 = fp.readUInt32LE(0);
    const h2 = fp.readUInt32LE(4) | 1;
    for (let p = 0; p < 7; p++) {
      const bit = ((h1 + Math.imul(p, h2)) >>> 0) & (2 ** log2Bits - 1);
      words[bit >>> 5] |= 1 << (bit & 31);
    }
  }
  const fps = Buffer.alloc(n * 32);
  const plens = new Int32Array(n);
  const payloads = Buffer.alloc(data.length);
  const used = await new Promise<number>((res, rej) =>
    addon!.hashBatch(data, s, words, log2Bits, 7, true, fps, plens, payloads, (e, v) => (e ? rej(e) : res(v))),
  );
  let bad = 0;
  let at = 0;
  let skipped = 0;
  for (let i = 0; i < n; i++) {
    const seg = data.subarray(s[2 * i], s[2 * i] + s[2 * i + 1]);
    if (!fps.subarray(32 * i, 32 * i + 32).equals(blake3(seg))) bad++;
    if (i % 3 === 0 && plens[i] !== -1) bad++;
    if (plens[i] === -1) skipped++;
    if (plens[i] > 0) {
      if (!uncompressSync(payloads.subarray(at, at + plens[i])).equals(seg)) bad++;
      if (plens[i] > seg.length - (seg.length >>> 4)) bad++;
      at += plens[i];
    }
  }
  t.equal(bad, 0, `${n} segments: fingerprints, payloads and filter decisions right`);
  t.equal(used, at, 'payload bytes reported');
  t.ok(skipped >= n / 3, `${skipped} segments the filter knew were not compressed`);
  t.throws(() => addon!.hashBatch(data, Uint32Array.of(data.length - 10, 11), null, 0, 0, false, fps, plens, payloads, () => {}), RangeError, 'a segment past the data is refused');
  t.throws(() => addon!.hashBatch(data, s, null, 0, 0, true, fps, plens, Buffer.alloc(10), () => {}), RangeError, 'too little payload room is refused');
});

t.test('decodeBatch: reads, decodes and verifies; names what failed', { skip: !addon }, async (t) => {
  const rng = new Rng(13);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-codec-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const segs = [generate(rng, 'text', 30000), rng.bytes(5000), Buffer.alloc(9000), generate(rng, 'text', 65536), rng.bytes(1)];
  const parts: Buffer[] = [Buffer.alloc(100)];
  const recs: Array<{ pos: number; stored: number; raw: number; codec: number }> = [];
  let pos = 100;
  for (const s of segs) {
    const c = compressSync(s);
    const lz = c.length < s.length;
    const payload = lz ? c : s;
    parts.push(Buffer.alloc(52), payload);
    recs.push({ pos: pos + 52, stored: payload.length, raw: s.length, codec: lz ? 1 : 0 });
    pos += 52 + payload.length;
  }
  const file = path.join(dir, 'c');
  fs.writeFileSync(file, Buffer.concat(parts));
  const fd = fs.openSync(file, 'r+');
  t.teardown(() => fs.closeSync(fd));
  const fps = Buffer.concat(segs.map((s) => blake3(s)));
  const run = async (mutate?: (items: Float64Array) => void) => {
    const items = new Float64Array(segs.length * 7);
    let off = 0;
    recs.forEach((r, k) => {
      items.set([fd, r.pos, r.stored, r.raw, r.codec, k % 2, off], k * 7);
      off += r.raw;
    });
    mutate?.(items);
    const targets = [Buffer.alloc(off), Buffer.alloc(off)];
    const status = new Int32Array(segs.length * 2);
    await new Promise<void>((res, rej) => addon!.decodeBatch(items, fps, targets, status, (e) => (e ? rej(e) : res())));
    return { targets, status, items };
  };
  const ok = await run();
  let bad = 0;
  ok.status.forEach((v, i) => {
    if (i % 2 === 0 && v !== 0) bad++;
  });
  segs.forEach((s, k) => {
    const o = ok.items[k * 7 + 6];
    if (!ok.targets[k % 2].subarray(o, o + s.length).equals(s)) bad++;
  });
  t.equal(bad, 0, 'every record decodes into its target');
  // A flipped byte in the third record's payload.
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, recs[3].pos + 10);
  b[0] ^= 0x40;
  fs.writeSync(fd, b, 0, 1, recs[3].pos + 10);
  const damaged = await run();
  t.ok(damaged.status[6] === 3 || damaged.status[6] === 5, `the damaged record fails (status ${damaged.status[6]})`);
  t.equal(damaged.status[0] + damaged.status[2] + damaged.status[4] + damaged.status[8], 0, 'its neighbours still decode');
  const short = await run((items) => (items[4 * 7 + 1] = pos + 1000));
  t.equal(short.status[8], 2, 'a record past the end of the file is short');
  t.throws(() => addon!.decodeBatch(new Float64Array([fd, 0, 10, 1e6, 0, 0, 0]), fps, [Buffer.alloc(10)], new Int32Array(2), () => {}), RangeError, 'a record larger than its target is refused');
});

t.test('acceptBatch: decodes, hashes and LZ4s raw ones on the pool; stops at the first bad one; checks its arguments', { skip: !addon }, async (t) => {
  t.equal(typeof addon!.acceptBatch, 'function');
  const rng = new Rng(12);
  const plains = [generate(rng, 'text', 30000), realBytes(20000), generate(rng, 'text', 9000)];
  const lz = compressSync(plains[0]);
  // src: a frame-like buffer with the payloads at odd offsets; item 1 raw, items 0 and 2 LZ4.
  const p2 = compressSync(plains[2]);
  const src = Buffer.concat([Buffer.alloc(7), lz, plains[1], Buffer.alloc(3), p2]);
  const items = new Uint32Array([7, lz.length, 1, plains[0].length, 7 + lz.length, plains[1].length, 0, plains[1].length, 10 + lz.length + plains[1].length, p2.length, 1, plains[2].length]);
  const total = plains.reduce((n, p) => n + p.length, 0);
  const run = (it: Uint32Array, plain = Buffer.alloc(total + 64, 0xa5), payloads = Buffer.alloc(plains[1].length)) => {
    const n = it.length / 4;
    const fps = Buffer.alloc(32 * n);
    const status = new Int32Array(2 * n);
    const plens = new Int32Array(n);
    return new Promise<{ n: number; fps: Buffer; status: Int32Array; plens: Int32Array; plain: Buffer; payloads: Buffer }>((resolve, reject) =>
      addon!.acceptBatch!(src, it, plain, fps, status, plens, payloads, (err, got) => (err ? reject(err) : resolve({ n: got, fps, status, plens, plain, payloads }))),
    );
  };
  const ok = await run(items);
  t.equal(ok.n, 3);
  t.ok(ok.plain.subarray(0, total).equals(Buffer.concat(plains)), 'decoded back to back');
  t.ok(ok.plain.subarray(total).equals(Buffer.alloc(64, 0xa5)), 'nothing written past them');
  for (let i = 0; i < 3; i++) t.ok(ok.fps.subarray(32 * i, 32 * i + 32).equals(blake3(plains[i])), `fingerprint ${i}`);
  t.equal(ok.plens[0], -1, 'sent as LZ4: stored as sent');
  t.equal(ok.plens[2], -1);
  if (ok.plens[1] > 0) t.ok(uncompressSync(ok.payloads.subarray(0, ok.plens[1])).equals(plains[1]), 'the raw one, LZ4ed when that pays');
  else t.equal(ok.plens[1], -2, 'or -2: store it raw');
  // Damage: the second LZ4 payload's prefix claims another length; then a cut block.
  const claims = Buffer.from(src);
  claims.writeUInt32LE(plains[2].length + 1, 10 + lz.length + plains[1].length);
  const bad = await new Promise<{ n: number; status: Int32Array }>((resolve, reject) => {
    const status = new Int32Array(6);
    addon!.acceptBatch!(claims, items, Buffer.alloc(total), Buffer.alloc(96), status, new Int32Array(3), Buffer.alloc(plains[1].length), (err, n) => (err ? reject(err) : resolve({ n, status })));
  });
  t.equal(bad.n, 2, 'stops at the bad one');
  t.same([...bad.status.subarray(4, 6)], [4, plains[2].length + 1], 'VV_E_LENGTH with the claimed length');
  const cut = Uint32Array.from(items);
  cut[1] = lz.length - 5;
  const c = await run(cut);
  t.equal(c.n, 0);
  t.equal(c.status[0], 3, 'a cut block: VV_E_DECODE');
  const short = Uint32Array.from(items);
  short[1] = 3;
  t.same([...(await run(short)).status.subarray(0, 2)], [3, -1], 'shorter than its prefix: VV_E_DECODE, detail -1');
  const rawLen = Uint32Array.from(items);
  rawLen[5] = plains[1].length - 1;
  const r = await run(rawLen);
  t.equal(r.n, 1);
  t.same([...r.status.subarray(2, 4)], [4, plains[1].length - 1], 'a raw payload of the wrong length: VV_E_LENGTH with its length');
  // Arguments that would read or write out of bounds are refused before any work.
  const past = Uint32Array.from(items);
  past[0] = src.length - 2;
  t.throws(() => addon!.acceptBatch!(src, past, Buffer.alloc(total), Buffer.alloc(96), new Int32Array(6), new Int32Array(3), Buffer.alloc(plains[1].length), () => {}), /runs past src/);
  t.throws(() => addon!.acceptBatch!(src, items, Buffer.alloc(total - 1), Buffer.alloc(96), new Int32Array(6), new Int32Array(3), Buffer.alloc(plains[1].length), () => {}), /plain needs room/);
  t.throws(() => addon!.acceptBatch!(src, items, Buffer.alloc(total), Buffer.alloc(64), new Int32Array(6), new Int32Array(3), Buffer.alloc(plains[1].length), () => {}), /fps needs/);
  t.throws(() => addon!.acceptBatch!(src, items, Buffer.alloc(total), Buffer.alloc(96), new Int32Array(6), new Int32Array(3), Buffer.alloc(10), () => {}), /payloads needs room/);
  const codec = Uint32Array.from(items);
  codec[2] = 7;
  t.throws(() => addon!.acceptBatch!(src, codec, Buffer.alloc(total), Buffer.alloc(96), new Int32Array(6), new Int32Array(3), Buffer.alloc(plains[1].length), () => {}), /unknown codec/);
});
