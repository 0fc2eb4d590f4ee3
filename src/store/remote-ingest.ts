// Ingest of segments that were cut and fingerprinted elsewhere (the transfer protocol's
// receiver): which fingerprints the index lacks, accepting a segment by fingerprint, and
// checking the segments a recipe names. The store trusts no sender: every segment is
// decompressed and re-hashed before it is stored, and one whose bytes do not hash to the
// fingerprint it came under is refused (SEGMENT_MISMATCH), so no one can place data under
// another fingerprint. A segment already stored costs no space (dedup as for local writes).

import { vmError } from '../errors.js';
import { compressionPays, encodePayload, LengthMismatch, uncompressPayload, uncompressPayloadInto } from './codec/codec.js';
import { fingerprint, fpHex, FP_BYTES } from './codec/fingerprint.js';
import { ACCEPT_ITEM } from './codec/engine.js';
import { Codec, MAX_SEGMENT_BYTES, SegmentKind } from './container/format.js';
import type { Location } from './index/segment-index.js';
import type { StoreCore } from './store-core.js';
import type { TreeView } from './tree/reader.js';
import type { TreeWriter, WriteResult } from './tree/writer.js';

/** Where each fingerprint is stored (memory first, then the summary filter, then one batched index read). */
export async function locate(core: StoreCore, fps: Uint8Array[]): Promise<Array<Location | undefined>> {
  const out: Array<Location | undefined> = new Array<Location | undefined>(fps.length).fill(undefined);
  const doubt: number[] = [];
  for (let i = 0; i < fps.length; i++) {
    if (fps[i].length !== FP_BYTES) throw vmError('INVALID_ARGUMENT', `a fingerprint is ${FP_BYTES} bytes, not ${fps[i].length}`);
    const loc = core.lookupMem(fps[i]);
    if (loc) out[i] = loc;
    else if (core.bloom.mayContain(fps[i])) doubt.push(i);
  }
  if (doubt.length > 0) {
    const found = await core.lookupMany(doubt.map((i) => fps[i]));
    doubt.forEach((i, j) => (out[i] = found[j]));
  }
  return out;
}

export interface AcceptResult {
  /** False: the store held the segment already (no space used). */
  stored: boolean;
}

/**
 * Stores a segment sent as (fingerprint, plain length, payload): `lz4` payloads in the store's
 * LZ4 layout (FORMAT.md), else the plain bytes. `deps` collects containers a commit must wait for.
 */
export async function acceptSegment(core: StoreCore, fp: Buffer, len: number, lz4: boolean, payload: Uint8Array, deps: Set<number>): Promise<AcceptResult> {
  if (fp.length !== FP_BYTES) throw vmError('INVALID_ARGUMENT', `a fingerprint is ${FP_BYTES} bytes, not ${fp.length}`);
  if (!Number.isInteger(len) || len <= 0 || len > MAX_SEGMENT_BYTES) throw vmError('INVALID_ARGUMENT', `segment length ${len} outside 1..${MAX_SEGMENT_BYTES}`);
  let raw: Buffer;
  if (lz4) {
    try {
      raw = uncompressPayload(payload, len);
    } catch (err) {
      const why = err instanceof LengthMismatch ? `decodes to ${err.got} bytes, not ${len}` : `does not decompress (${(err as Error).message})`;
      throw vmError('SEGMENT_MISMATCH', `segment sent as ${fpHex(fp)} ${why}; refused`, { fingerprint: fpHex(fp) });
    }
  } else {
    if (payload.length !== len) throw vmError('SEGMENT_MISMATCH', `segment sent as ${fpHex(fp)} has ${payload.length} bytes, not ${len}; refused`, { fingerprint: fpHex(fp) });
    raw = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  }
  if (!fingerprint(raw).equals(fp)) {
    throw vmError('SEGMENT_MISMATCH', `segment sent as ${fpHex(fp)} does not hash to that fingerprint (BLAKE3 mismatch); refused, nothing stored under it`, { fingerprint: fpHex(fp) });
  }
  const [loc] = await locate(core, [fp]);
  // Checked again without an await before append: another writer may have stored it meanwhile.
  const known = loc ?? core.lookupMem(fp);
  if (known && core.dedupHit(fp, 0, known.cid)) {
    if (core.writers.has(known.cid)) deps.add(known.cid);
    return { stored: false };
  }
  let codec: Codec;
  let stored: Uint8Array;
  if (lz4 && compressionPays(len, payload.length)) {
    codec = Codec.Lz4;
    stored = Buffer.from(payload);
  } else {
    ({ codec, payload: stored } = encodePayload(raw));
    if (stored === raw) stored = Buffer.from(raw);
  }
  deps.add(core.append(SegmentKind.Data, fp, len, codec, stored).cid);
  return { stored: true };
}

export interface SentPayload {
  fp: Buffer;
  len: number;
  lz4: boolean;
  payload: Uint8Array;
}

export interface AcceptManyResult {
  stored: number;
  duplicates: number;
  /** Segments accepted (stored or already held), from the first: all but a refused one and those after it. */
  accepted: number;
  /** Why segment `accepted` was refused (SEGMENT_MISMATCH or INVALID_ARGUMENT), if one was. */
  error?: Error;
}

/**
 * Plain bytes decoded and hashed at a time: bounds the receiver's memory per frame, and is
 * small enough to stay in cache between decoding and hashing. The buffers are reused: fresh
 * memory costs a page fault per 4 KiB (decoding into a new 8 MiB buffer per group took more
 * of the appliance's main thread than the decoding itself, measured under load).
 */
const ACCEPT_GROUP_BYTES = 2 * 1024 * 1024;
const KEEP_PLAIN = 4;
const freePlain: Buffer[] = [];

/**
 * acceptSegment for a frame's segments, in order, with the same checks and outcome: every
 * segment is decompressed and re-hashed, and the first that fails is refused with those after
 * it (the ones before are kept). Faster: they are decoded into one buffer and hashed there in
 * one call on the codec engine (the libuv pool with the addon, so the main thread goes on
 * receiving), and looked up in one index read.
 */
export async function acceptSegments(core: StoreCore, segs: SentPayload[], deps: Set<number>): Promise<AcceptManyResult> {
  const out: AcceptManyResult = { stored: 0, duplicates: 0, accepted: 0 };
  // Group g+1 is decoded and hashed (on the pool with the addon) while group g is; groups are stored in order.
  let prev: Promise<void> = Promise.resolve();
  const finishing: Array<Promise<void>> = [];
  const groups: Group[] = [];
  try {
    for (let from = 0; from < segs.length && out.error === undefined; ) {
      // At most two groups (their buffers) at a time.
      if (finishing.length >= 2) await finishing.shift();
      if (out.error !== undefined) break;
      let to = from;
      let bytes = 0;
      while (to < segs.length && (to === from || bytes + segs[to].len <= ACCEPT_GROUP_BYTES)) {
        const len = segs[to].len;
        bytes += Number.isInteger(len) && len > 0 ? len : 0;
        to++;
      }
      const g = decodeGroup(core, segs.slice(from, to), bytes);
      groups.push(g);
      const done = prev.then(() => finishGroup(core, g, deps, out));
      done.catch(() => {});
      prev = done;
      finishing.push(done);
      from = to;
    }
    await prev;
  } finally {
    // Every decoding has ended before the caller may reuse the frame the payloads are views of.
    await Promise.allSettled(groups.map((g) => g.decoded));
  }
  return out;
}

interface Group {
  segs: SentPayload[];
  plain: Buffer;
  pooled: boolean;
  spans: Uint32Array;
  /**
   * The segments decoded (the first n), the refusal of the next if any, their fingerprints as
   * computed here, and (pool path) how the raw ones store: LZ4 payloads made on the pool, given
   * back by release(); settles whatever happens.
   */
  decoded: Promise<Decoded>;
}

interface Decoded {
  n: number;
  refused: Error | undefined;
  fps: Buffer | undefined;
  stored?: { plens: Int32Array; payloads: Buffer; release(): void };
}

function decodeRefusal(fp: Buffer, len: number, why: string): Error {
  return vmError('SEGMENT_MISMATCH', `segment sent as ${fpHex(fp)} ${why}; refused`, { fingerprint: fpHex(fp) });
}

/** Checks the fields decoding does not (fingerprint size, plain length); the first bad one ends the group. */
function checkFields(segs: SentPayload[]): { n: number; refused: Error | undefined } {
  for (let n = 0; n < segs.length; n++) {
    const { fp, len } = segs[n];
    if (fp.length !== FP_BYTES) return { n, refused: vmError('INVALID_ARGUMENT', `a fingerprint is ${FP_BYTES} bytes, not ${fp.length}`) };
    if (!Number.isInteger(len) || len <= 0 || len > MAX_SEGMENT_BYTES) return { n, refused: vmError('INVALID_ARGUMENT', `segment length ${len} outside 1..${MAX_SEGMENT_BYTES}`) };
  }
  return { n: segs.length, refused: undefined };
}

/**
 * Decodes a group's segments into one (reused) buffer and hashes them; the first that does not
 * decode ends it. With the addon both run in one call on the libuv pool (LZ4 decoding on the
 * main thread took ~1.3 s of it per 460 MiB received, as much as the hashing it overlapped),
 * when the payloads are views of one buffer (a frame's); else decoding runs here.
 */
function decodeGroup(core: StoreCore, segs: SentPayload[], bytes: number): Group {
  const pooled = bytes <= ACCEPT_GROUP_BYTES;
  const plain = pooled ? (freePlain.pop() ?? Buffer.allocUnsafeSlow(ACCEPT_GROUP_BYTES)) : Buffer.allocUnsafe(bytes);
  const spans = new Uint32Array(2 * segs.length);
  const checked = checkFields(segs);
  let at = 0;
  for (let i = 0; i < checked.n; i++) {
    spans[2 * i] = at;
    spans[2 * i + 1] = segs[i].len;
    at += segs[i].len;
  }
  const accept = core.codec.accept;
  const frame = checked.n > 0 ? oneBuffer(segs.slice(0, checked.n)) : undefined;
  let decoded: Group['decoded'];
  if (accept && frame) {
    const items = new Uint32Array(ACCEPT_ITEM * checked.n);
    for (let i = 0; i < checked.n; i++) {
      const { payload, lz4, len } = segs[i];
      items[ACCEPT_ITEM * i] = payload.byteOffset - frame.byteOffset;
      items[ACCEPT_ITEM * i + 1] = payload.byteLength;
      items[ACCEPT_ITEM * i + 2] = lz4 ? 1 : 0;
      items[ACCEPT_ITEM * i + 3] = len;
    }
    decoded = accept(frame, items, plain).then(
      ({ n, fps, failure, plens, payloads, release }) => {
        let refused = checked.refused;
        if (failure) {
          const { fp, len, payload } = segs[n];
          refused = decodeRefusal(
            fp,
            len,
            failure.kind === 'length'
              ? segs[n].lz4
                ? `decodes to ${failure.got} bytes, not ${len}`
                : `has ${payload.length} bytes, not ${len}`
              : `does not decompress (${failure.kind === 'short-prefix' ? 'the payload is shorter than its length prefix' : 'malformed LZ4 block'})`,
          );
        }
        return { n, refused, fps: n > 0 ? fps : undefined, stored: { plens, payloads, release } };
      },
      () => ({ n: checked.n, refused: checked.refused, fps: undefined }),
    );
  } else {
    decoded = decodeHere(core, segs, checked, plain, spans);
  }
  return { segs, plain, pooled, spans, decoded };
}

/** The frame the payloads are views of, as one Uint8Array over them all, or undefined if they are not views of one buffer. */
function oneBuffer(segs: SentPayload[]): Uint8Array | undefined {
  const buf = segs[0].payload.buffer;
  let lo = Infinity;
  let hi = 0;
  for (const { payload } of segs) {
    if (payload.buffer !== buf) return undefined;
    lo = Math.min(lo, payload.byteOffset);
    hi = Math.max(hi, payload.byteOffset + payload.byteLength);
  }
  return hi - lo < 2 ** 32 ? new Uint8Array(buf, lo, hi - lo) : undefined;
}

/** Decoding on this thread (no addon, or payloads from several buffers), then hashing on the codec engine. */
function decodeHere(core: StoreCore, segs: SentPayload[], checked: { n: number; refused: Error | undefined }, plain: Buffer, spans: Uint32Array): Promise<Decoded> {
  let n = 0;
  let refused = checked.refused;
  for (; n < checked.n; n++) {
    const { fp, len, lz4, payload } = segs[n];
    const dst = plain.subarray(spans[2 * n], spans[2 * n] + len);
    try {
      if (lz4) {
        try {
          uncompressPayloadInto(payload, dst);
        } catch (err) {
          throw decodeRefusal(fp, len, err instanceof LengthMismatch ? `decodes to ${err.got} bytes, not ${len}` : `does not decompress (${(err as Error).message})`);
        }
      } else {
        if (payload.length !== len) throw decodeRefusal(fp, len, `has ${payload.length} bytes, not ${len}`);
        Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).copy(dst);
      }
    } catch (err) {
      refused = err as Error;
      break;
    }
  }
  let fps: Promise<Buffer | undefined>;
  if (n === 0) fps = Promise.resolve(undefined);
  else if (core.codec.impl === 'native') {
    fps = core.codec.hash(plain, spans.subarray(0, 2 * n), undefined, false).then(
      (h) => (h.release(), h.fps),
      () => undefined,
    );
  } else {
    const out = Buffer.allocUnsafe(32 * n);
    for (let i = 0; i < n; i++) fingerprint(plain.subarray(spans[2 * i], spans[2 * i] + spans[2 * i + 1])).copy(out, 32 * i);
    fps = Promise.resolve(out);
  }
  return fps.then((f) => ({ n, refused, fps: f }));
}

/** Checks a decoded group's fingerprints and stores those the store lacks, in order (one batched index read). */
async function finishGroup(core: StoreCore, g: Group, deps: Set<number>, out: AcceptManyResult): Promise<void> {
  let d: Decoded | undefined;
  try {
    d = await g.decoded;
    // A group after a refused one is not stored (the frame's later segments are refused too).
    if (out.error !== undefined) return;
    if (d.n > 0 && d.fps === undefined) throw vmError('IO', 'hashing received segments failed');
    const fps = d.fps;
    const { segs, plain, spans } = g;
    let n = d.n;
    let refused = d.refused;
    for (let i = 0; i < n; i++) {
      const fp = segs[i].fp;
      if (!fps!.subarray(32 * i, 32 * i + 32).equals(fp)) {
        refused = vmError('SEGMENT_MISMATCH', `segment sent as ${fpHex(fp)} does not hash to that fingerprint (BLAKE3 mismatch); refused, nothing stored under it`, { fingerprint: fpHex(fp) });
        n = i;
        break;
      }
    }
    const locs = n > 0 ? await locate(core, segs.slice(0, n).map((s) => s.fp)) : [];
    const made = d.stored;
    let madeAt = 0;
    for (let i = 0; i < n; i++) {
      const { fp, len, lz4, payload } = segs[i];
      // The pool's LZ4 payload of a segment sent raw (payloads are back to back, duplicates' too).
      const plen = made ? made.plens[i] : -1;
      const madeFrom = madeAt;
      if (plen > 0) madeAt += plen;
      // Checked again without an await before append: an earlier one of the group, or another writer meanwhile, may have stored it.
      const known = core.lookupMem(fp) ?? locs[i];
      if (known && core.dedupHit(fp, 0, known.cid)) {
        if (core.writers.has(known.cid)) deps.add(known.cid);
        out.duplicates++;
        out.accepted++;
        continue;
      }
      const raw = plain.subarray(spans[2 * i], spans[2 * i] + len);
      let codec: Codec;
      let stored: Uint8Array;
      if (lz4 && compressionPays(len, payload.length)) {
        codec = Codec.Lz4;
        stored = payload;
      } else if (plen > 0) {
        codec = Codec.Lz4;
        stored = made!.payloads.subarray(madeFrom, madeFrom + plen);
      } else if (plen === -2) {
        codec = Codec.Raw;
        stored = raw;
      } else {
        ({ codec, payload: stored } = encodePayload(raw));
      }
      // append copies the payload into the container's image.
      deps.add(core.append(SegmentKind.Data, fp, len, codec, stored).cid);
      out.stored++;
      out.accepted++;
    }
    if (refused) out.error = refused;
  } finally {
    d?.stored?.release();
    if (g.pooled && freePlain.length < KEEP_PLAIN) freePlain.push(g.plain);
  }
}

/**
 * Checks that every (fingerprint, length) a recipe names is a stored data segment of that
 * length, and takes a reference to it for a running GC (as dedup does). Throws MISSING_SEGMENT
 * or INVALID_ARGUMENT naming the first that is not.
 */
export async function claimSegments(core: StoreCore, refs: Array<{ fp: Buffer; len: number }>, deps: Set<number>): Promise<void> {
  const locs = await locate(core, refs.map((r) => r.fp));
  for (let i = 0; i < refs.length; i++) {
    const loc = locs[i];
    const r = refs[i];
    if (!loc || loc.kind !== SegmentKind.Data || !core.dedupHit(r.fp, 0, loc.cid)) {
      throw vmError('NOT_FOUND', `the recipe names segment ${fpHex(r.fp)}, which the appliance does not hold; send it first`, { fingerprint: fpHex(r.fp) });
    }
    if (loc.rawLen !== r.len) throw vmError('INVALID_ARGUMENT', `the recipe gives segment ${fpHex(r.fp)} ${r.len} bytes; it holds ${loc.rawLen}`);
    if (core.writers.has(loc.cid)) deps.add(loc.cid);
  }
}

/**
 * Builds a file version from a recipe, in file order, without the data crossing again: pieces
 * of the old version, zero runs, and stored segments by reference (tree/writer.ts groups them
 * into nodes as it does written bytes). Memory is bounded by the writer's, not the file's size.
 */
export class RecipeWriter {
  /** Bytes of the new version described so far. */
  position = 0;
  /** Containers not yet indexed that the version relies on (writer's and claimed segments'). */
  readonly deps = new Set<number>();

  constructor(
    private readonly core: StoreCore,
    private readonly writer: TreeWriter,
    private readonly base: TreeView,
  ) {}

  /** The old version's bytes [from, to), past its end as zeros. */
  async old(from: number, to: number, lastPiece = false): Promise<void> {
    if (to <= from) return;
    const oldEnd = Math.min(to, this.base.size);
    if (oldEnd > from) await this.writer.piece(this.base, { kind: 'old', from, to: oldEnd }, lastPiece && oldEnd === to);
    if (to > Math.max(from, this.base.size)) await this.writer.writeZeros(to - Math.max(from, this.base.size));
    this.position += to - from;
  }

  async zeros(len: number): Promise<void> {
    await this.writer.writeZeros(len);
    this.position += len;
  }

  /** Stored segments by reference; each is checked to be stored with its length first. */
  async segments(refs: Array<{ fp: Buffer; len: number }>): Promise<void> {
    await claimSegments(this.core, refs, this.deps);
    for (const r of refs) {
      await this.writer.addSegment(r.fp, r.len);
      this.position += r.len;
    }
  }

  async finish(): Promise<WriteResult> {
    const r = await this.writer.finish();
    for (const d of this.deps) r.deps.add(d);
    return r;
  }

  abort(): Promise<void> {
    return this.writer.abort();
  }
}
