// The binary frames of the fingerprint-first protocol, versions 1 and 2 (PROTOCOL.md, "Frames"). One
// module encodes and decodes them for both ends, so sender and receiver cannot drift apart.
// Decoding trusts nothing: every length is checked against the bytes actually there and
// against the limits below before anything is allocated, and a frame that lies gets
// INVALID_ARGUMENT naming the field.

import { vmError } from '../errors.js';

/** The base protocol: every message and frame type of version 1 (what older peers speak). */
export const PROTOCOL_VERSION = 1;
/** The newest protocol this code speaks: 2 adds the recipe's "old" entries (PROTOCOL.md). */
export const PROTOCOL_NEWEST = 2;
/** 'VVTF' */
export const FRAME_MAGIC = 0x46545656;
export const FRAME_HEADER_BYTES = 16;
export const FP_LEN = 32;
/** The content type every binary frame travels under. */
export const FRAME_CONTENT_TYPE = 'application/vnd.vmvault.transfer.v1';

export const FrameType = {
  Query: 1,
  QueryReply: 2,
  Segments: 3,
  Recipe: 4,
} as const;
export type FrameTypeName = keyof typeof FrameType;

/** Limits (PROTOCOL.md, "Limits"): a receiver refuses a frame beyond any of them. */
export const LIMITS = {
  /** (fingerprint, length) pairs in one query. */
  queryCount: 8192,
  /** Segments in one segments frame. */
  segmentCount: 2048,
  /** Entries in one recipe frame. */
  recipeCount: 65536,
  /** Bytes of one frame, header included (and so the HTTP body limit of the binary routes). */
  frameBytes: 64 * 1024 * 1024,
  /** The largest segment any store makes (the chunker's maxSize may be at most this). */
  segmentBytes: 16 * 1024 * 1024,
};

export const QUERY_ENTRY_BYTES = FP_LEN + 4;
/** Segment entry header: fp, plain length u32, codec u8, payload length u32. */
export const SEGMENT_ENTRY_HEADER_BYTES = FP_LEN + 4 + 1 + 4;
export const RECIPE_SEGMENT_BYTES = 1 + FP_LEN + 4;
export const RECIPE_ZERO_BYTES = 1 + 8;
export const RECIPE_OLD_BYTES = 1 + 8;

export const SegmentCodec = { Raw: 0, Lz4: 1 } as const;
/** Old (protocol 2): keep this many bytes of the file's old content (zeros past its old end). */
export const RecipeKind = { Segment: 1, Zero: 2, Old: 3 } as const;

export interface SegmentRef {
  fp: Buffer;
  len: number;
}
export interface SentSegment extends SegmentRef {
  codec: 0 | 1;
  payload: Buffer;
}
export type RecipeEntry = { kind: 'segment'; fp: Buffer; len: number } | { kind: 'zero'; len: number } | { kind: 'old'; len: number };

function bad(what: string): Error {
  return vmError('INVALID_ARGUMENT', `transfer frame: ${what}`);
}

function header(type: number, count: number, bodyBytes: number, version = PROTOCOL_VERSION): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUInt32LE(FRAME_MAGIC, 0);
  h[4] = version;
  h[5] = type;
  h.writeUInt16LE(0, 6);
  h.writeUInt32LE(count, 8);
  h.writeUInt32LE(bodyBytes, 12);
  return h;
}

/** Checks a frame's header against its type and the bytes there; returns (count, body, version). */
export function readHeader(buf: Buffer, type: number, maxCount: number): { count: number; body: Buffer; version: number } {
  if (!Buffer.isBuffer(buf)) throw bad('the request body is not binary');
  if (buf.length < FRAME_HEADER_BYTES) throw bad(`${buf.length} bytes is shorter than the ${FRAME_HEADER_BYTES}-byte header`);
  if (buf.length > LIMITS.frameBytes) throw bad(`${buf.length} bytes exceeds the frame limit of ${LIMITS.frameBytes}`);
  if (buf.readUInt32LE(0) !== FRAME_MAGIC) throw bad('bad magic (not a vmvault transfer frame)');
  if (buf[4] < PROTOCOL_VERSION || buf[4] > PROTOCOL_NEWEST) throw bad(`protocol version ${buf[4]} is not supported (this appliance speaks ${PROTOCOL_VERSION} to ${PROTOCOL_NEWEST})`);
  if (buf[5] !== type) throw bad(`frame type ${buf[5]} where type ${type} was expected`);
  if (buf.readUInt16LE(6) !== 0) throw bad('reserved flags are not zero');
  const count = buf.readUInt32LE(8);
  const bodyBytes = buf.readUInt32LE(12);
  if (count > maxCount) throw bad(`${count} entries exceeds the limit of ${maxCount}`);
  if (bodyBytes !== buf.length - FRAME_HEADER_BYTES) {
    throw bad(`header says ${bodyBytes} body bytes but ${buf.length - FRAME_HEADER_BYTES} arrived (truncated or padded)`);
  }
  return { count, body: buf.subarray(FRAME_HEADER_BYTES), version: buf[4] };
}

// ---- query -------------------------------------------------------------------------------------

export function encodeQuery(refs: SegmentRef[]): Buffer {
  const body = Buffer.allocUnsafe(refs.length * QUERY_ENTRY_BYTES);
  // Plain loops in the frame codecs, no callback per call (V8 optimized such callbacks again and again).
  for (let i = 0; i < refs.length; i++) {
    refs[i].fp.copy(body, i * QUERY_ENTRY_BYTES, 0, FP_LEN);
    body.writeUInt32LE(refs[i].len, i * QUERY_ENTRY_BYTES + FP_LEN);
  }
  return Buffer.concat([header(FrameType.Query, refs.length, body.length), body]);
}

export function decodeQuery(buf: Buffer, maxSegment: number): SegmentRef[] {
  const { count, body } = readHeader(buf, FrameType.Query, LIMITS.queryCount);
  if (body.length !== count * QUERY_ENTRY_BYTES) throw bad(`a query of ${count} entries must hold ${count * QUERY_ENTRY_BYTES} body bytes, not ${body.length}`);
  const out: SegmentRef[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const at = i * QUERY_ENTRY_BYTES;
    const len = body.readUInt32LE(at + FP_LEN);
    if (len === 0 || len > maxSegment) throw bad(`query entry ${i}: segment length ${len} outside 1..${maxSegment}`);
    out[i] = { fp: Buffer.from(body.subarray(at, at + FP_LEN)), len };
  }
  return out;
}

/** Reply: one bit per queried entry, in order (bit i%8 of byte i/8): 1 = send it. */
export function encodeQueryReply(missing: boolean[]): Buffer {
  const body = Buffer.alloc((missing.length + 7) >>> 3);
  for (let i = 0; i < missing.length; i++) if (missing[i]) body[i >>> 3] |= 1 << (i & 7);
  return Buffer.concat([header(FrameType.QueryReply, missing.length, body.length), body]);
}

export function decodeQueryReply(buf: Buffer, expected: number): boolean[] {
  const { count, body } = readHeader(buf, FrameType.QueryReply, LIMITS.queryCount);
  if (count !== expected) throw bad(`the reply answers ${count} entries, not the ${expected} asked`);
  if (body.length !== (count + 7) >>> 3) throw bad('the reply bitmap has the wrong length');
  const out: boolean[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = (body[i >>> 3] & (1 << (i & 7))) !== 0;
  return out;
}

// ---- segments ----------------------------------------------------------------------------------

/** A segments frame, in `into` (a reused buffer; the frame is a view of its start) if it is big enough. */
export function encodeSegments(segs: SentSegment[], into?: Buffer): Buffer {
  let bytes = 0;
  for (const s of segs) bytes += SEGMENT_ENTRY_HEADER_BYTES + s.payload.length;
  // Header and body in one buffer: a frame is megabytes, and a concat would copy it again.
  const frame = into && into.length >= FRAME_HEADER_BYTES + bytes ? into.subarray(0, FRAME_HEADER_BYTES + bytes) : Buffer.allocUnsafe(FRAME_HEADER_BYTES + bytes);
  header(FrameType.Segments, segs.length, bytes).copy(frame, 0);
  let at = FRAME_HEADER_BYTES;
  for (const s of segs) {
    s.fp.copy(frame, at, 0, FP_LEN);
    frame.writeUInt32LE(s.len, at + FP_LEN);
    frame[at + FP_LEN + 4] = s.codec;
    frame.writeUInt32LE(s.payload.length, at + FP_LEN + 5);
    at += SEGMENT_ENTRY_HEADER_BYTES;
    s.payload.copy(frame, at);
    at += s.payload.length;
  }
  return frame;
}

export function decodeSegments(buf: Buffer, maxSegment: number): SentSegment[] {
  const { count, body } = readHeader(buf, FrameType.Segments, LIMITS.segmentCount);
  const out: SentSegment[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (body.length - at < SEGMENT_ENTRY_HEADER_BYTES) throw bad(`segment ${i}: truncated entry header`);
    const fp = Buffer.from(body.subarray(at, at + FP_LEN));
    const len = body.readUInt32LE(at + FP_LEN);
    const codec = body[at + FP_LEN + 4];
    const plen = body.readUInt32LE(at + FP_LEN + 5);
    at += SEGMENT_ENTRY_HEADER_BYTES;
    if (len === 0 || len > maxSegment) throw bad(`segment ${i}: length ${len} outside 1..${maxSegment}`);
    if (codec !== SegmentCodec.Raw && codec !== SegmentCodec.Lz4) throw bad(`segment ${i}: unknown codec ${codec}`);
    if (codec === SegmentCodec.Raw && plen !== len) throw bad(`segment ${i}: a raw payload of ${plen} bytes for a ${len}-byte segment`);
    if (plen > body.length - at) throw bad(`segment ${i}: payload of ${plen} bytes runs past the frame's end`);
    out.push({ fp, len, codec, payload: body.subarray(at, at + plen) });
    at += plen;
  }
  if (at !== body.length) throw bad(`${body.length - at} bytes after the last segment`);
  return out;
}

// ---- recipe ------------------------------------------------------------------------------------

/** A recipe frame: entries in file order from `offset` on. "old" entries need a version-2 frame (and session). */
export function encodeRecipe(offset: number, entries: RecipeEntry[], version = PROTOCOL_VERSION): Buffer {
  let bytes = 8;
  for (const e of entries) {
    if (e.kind === 'old' && version < 2) throw vmError('INVALID_ARGUMENT', 'internal: an "old" recipe entry needs protocol 2');
    bytes += e.kind === 'segment' ? RECIPE_SEGMENT_BYTES : e.kind === 'zero' ? RECIPE_ZERO_BYTES : RECIPE_OLD_BYTES;
  }
  const body = Buffer.allocUnsafe(bytes);
  body.writeBigUInt64LE(BigInt(offset), 0);
  let at = 8;
  for (const e of entries) {
    if (e.kind === 'segment') {
      body[at] = RecipeKind.Segment;
      e.fp.copy(body, at + 1, 0, FP_LEN);
      body.writeUInt32LE(e.len, at + 1 + FP_LEN);
      at += RECIPE_SEGMENT_BYTES;
    } else {
      body[at] = e.kind === 'zero' ? RecipeKind.Zero : RecipeKind.Old;
      body.writeBigUInt64LE(BigInt(e.len), at + 1);
      at += RECIPE_ZERO_BYTES;
    }
  }
  return Buffer.concat([header(FrameType.Recipe, entries.length, body.length, version), body]);
}

export function decodeRecipe(buf: Buffer, maxSegment: number): { offset: number; entries: RecipeEntry[]; version: number } {
  const { count, body, version } = readHeader(buf, FrameType.Recipe, LIMITS.recipeCount);
  if (body.length < 8) throw bad('a recipe frame must start with its 8-byte offset');
  const offset = safe(body.readBigUInt64LE(0), 'recipe offset');
  const entries: RecipeEntry[] = [];
  let at = 8;
  for (let i = 0; i < count; i++) {
    const kind = body[at];
    if (kind === RecipeKind.Segment) {
      if (body.length - at < RECIPE_SEGMENT_BYTES) throw bad(`recipe entry ${i}: truncated`);
      const len = body.readUInt32LE(at + 1 + FP_LEN);
      if (len === 0 || len > maxSegment) throw bad(`recipe entry ${i}: segment length ${len} outside 1..${maxSegment}`);
      entries.push({ kind: 'segment', fp: Buffer.from(body.subarray(at + 1, at + 1 + FP_LEN)), len });
      at += RECIPE_SEGMENT_BYTES;
    } else if (kind === RecipeKind.Zero || (kind === RecipeKind.Old && version >= 2)) {
      if (body.length - at < RECIPE_ZERO_BYTES) throw bad(`recipe entry ${i}: truncated`);
      const what = kind === RecipeKind.Zero ? 'zero' : 'old';
      const len = safe(body.readBigUInt64LE(at + 1), `recipe entry ${i} ${what} run`);
      if (len === 0) throw bad(`recipe entry ${i}: an empty ${what} run`);
      entries.push({ kind: what, len });
      at += RECIPE_ZERO_BYTES;
    } else {
      throw bad(`recipe entry ${i}: unknown kind ${kind ?? '(missing)'}`);
    }
  }
  if (at !== body.length) throw bad(`${body.length - at} bytes after the last recipe entry`);
  return { offset, entries, version };
}

function safe(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${what} ${v} is beyond 2^53`);
  return Number(v);
}
