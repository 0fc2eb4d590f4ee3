// Segments received from a sender are decoded (LZ4) and re-hashed off the main thread, in one
// addon call per group on the libuv pool, when their payloads are views of one frame; the
// outcome and every refusal's words are those of decoding on the main thread (payloads in
// separate buffers), which stays as the fallback.

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { encodePayload } from '../src/store/codec/codec.js';
import { fingerprint } from '../src/store/codec/fingerprint.js';
import { Codec } from '../src/store/container/format.js';
import { nativeCodec } from '../src/store/native.js';
import type { SentPayload } from '../src/store/remote-ingest.js';
import { openNs } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

/** A segment as a sender makes it: LZ4 when that pays (compressible bytes), else raw. */
function sent(raw: Buffer): SentPayload {
  const e = encodePayload(raw);
  const s = { fp: fingerprint(raw), len: raw.length, lz4: e.codec === Codec.Lz4, payload: Buffer.from(e.payload) };
  plainOf.set(s, raw);
  return s;
}

function compressible(n: number): Buffer {
  const b = Buffer.alloc(n);
  const word = randomBytes(64);
  for (let at = 0; at < n; at += 64) word.copy(b, at, 0, Math.min(64, n - at));
  b.writeUInt32LE(Math.floor(Math.random() * 2 ** 32), 0);
  return b;
}

/** The segments' payloads as views of one buffer, as the receiver's frame decoder leaves them. */
function inOneFrame(segs: SentPayload[]): SentPayload[] {
  const frame = Buffer.concat([Buffer.alloc(16), ...segs.map((s) => s.payload)]);
  let at = 16;
  return segs.map((s) => {
    const payload = frame.subarray(at, at + s.payload.length);
    at += s.payload.length;
    return { ...s, payload };
  });
}

/** The plain bytes of a segment made by sent() from compressible(): kept beside it. */
const plainOf = new WeakMap<SentPayload, Buffer>();
const compressibleOf = (s: SentPayload): Buffer => plainOf.get(s)!;

const apart = (segs: SentPayload[]): SentPayload[] => segs.map((s) => ({ ...s, payload: Buffer.from(s.payload) }));

t.test('a frame is decoded and hashed on the pool; refusals say what decoding here says', { skip: nativeCodec ? false : 'the addon is not built' }, async (t) => {
  t.equal(typeof nativeCodec!.acceptBatch, 'function', 'the addon decodes received segments on the pool');
  let poolCalls = 0;
  const orig = nativeCodec!.acceptBatch!;
  nativeCodec!.acceptBatch = (...args) => (poolCalls++, orig(...args));
  t.teardown(() => void (nativeCodec!.acceptBatch = orig));

  // More than one 2 MiB group, LZ4 and raw mixed.
  const good = Array.from({ length: 300 }, (_, i) => sent(i % 3 === 0 ? randomBytes(12_000) : compressible(12_000)));
  t.ok(good.some((s) => s.lz4) && good.some((s) => !s.lz4), 'both codecs in the frame');
  const lz4At = good.findIndex((s, i) => i >= 150 && s.lz4);
  const rawAt = good.findIndex((s, i) => i >= 150 && !s.lz4);
  const forged = (k: number, f: (s: SentPayload) => SentPayload): SentPayload[] => good.map((s, i) => (i === k ? f({ ...s, payload: Buffer.from(s.payload) }) : s));
  const cases: Array<[string, SentPayload[], number | undefined]> = [
    ['all good', good, undefined],
    ['bytes that do not hash to the fingerprint', forged(rawAt, (s) => ({ ...s, payload: randomBytes(s.len) })), rawAt],
    ['a raw payload of the wrong length', forged(rawAt, (s) => ({ ...s, payload: s.payload.subarray(1) })), rawAt],
    ['LZ4 whose prefix claims another length', forged(lz4At, (s) => ((s.payload as Buffer).writeUInt32LE(s.len + 1, 0), s)), lz4At],
    ['LZ4 shorter than its prefix', forged(lz4At, (s) => ({ ...s, payload: s.payload.subarray(0, 3) })), lz4At],
    ['LZ4 that is not LZ4', forged(lz4At, (s) => ({ ...s, payload: Buffer.concat([s.payload.subarray(0, 4), Buffer.alloc(s.payload.length - 4, 0xff)]) })), lz4At],
    ['a cut LZ4 block', forged(lz4At, (s) => ({ ...s, payload: s.payload.subarray(0, s.payload.length - 5) })), lz4At],
    // A sender that does not compress: the store LZ4s what pays (on the pool), as for a local write.
    ['compressible segments sent raw', good.map((s, i) => (s.lz4 && i % 2 === 0 ? { ...s, lz4: false, payload: compressibleOf(s) } : s)), undefined],
  ];
  for (const [what, segs, bad] of cases) {
    const outcomes = [];
    for (const [how, payloads] of [
      ['pool', inOneFrame(segs)],
      ['here', apart(segs)],
    ] as const) {
      const { store } = await openNs(t, tmpDir(t));
      const before = poolCalls;
      const r = await store.acceptSegments(payloads, new Set());
      if (how === 'pool') t.ok(poolCalls > before, `${what}: decoded on the pool`);
      else t.equal(poolCalls, before, `${what}: payloads apart are decoded here`);
      const missing = await store.missingSegments(good.map((s) => s.fp));
      const storedBytes = (await store.stats()).storedBytes;
      outcomes.push({ accepted: r.accepted, stored: r.stored, storedBytes, code: (r.error as { code?: string } | undefined)?.code, message: r.error?.message, held: missing.filter((m) => !m).length });
    }
    const [pool, here] = outcomes;
    if (what === 'compressible segments sent raw') t.ok(pool.storedBytes < outcomes[0].stored * 12_000 * 0.6, `${what}: stored compressed (${pool.storedBytes} bytes)`);
    t.same(pool, here, `${what}: the same outcome both ways (${JSON.stringify(pool)})`);
    t.equal(pool.accepted, bad ?? good.length, `${what}: those before the bad one are accepted`);
    t.equal(pool.held, bad ?? good.length, `${what}: and only they are stored`);
    if (bad !== undefined) {
      t.equal(pool.code, 'SEGMENT_MISMATCH');
      t.match(pool.message, good[bad].fp.toString('hex'), 'the refusal names the segment');
    }
  }
});
