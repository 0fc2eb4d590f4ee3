// Segment payload encoding: LZ4 block per segment, raw when compression does not pay, and
// the decode path that re-hashes every segment before anything is returned. An LZ4 payload is
// the uncompressed length (u32 LE) and an LZ4 block: lz4-napi's compressSync layout, which the
// addon (native/src/lz4.c) writes and reads too, so either reads what the other wrote.

import { compressSync, uncompressSync } from 'lz4-napi';
import { vmError } from '../../errors.js';
import { Codec } from '../container/format.js';
import { fingerprint, fpHex } from './fingerprint.js';
import { nativeCodec } from '../native.js';

/**
 * The largest payload worth keeping for a segment of rawLen bytes: compression must save at
 * least 1/16 of a segment to be kept; else the segment is raw.
 */
export function payloadCap(rawLen: number): number {
  return rawLen - (rawLen >>> 4);
}

export function compressionPays(rawLen: number, compressedLen: number): boolean {
  return compressedLen <= payloadCap(rawLen);
}

export interface Encoded {
  codec: Codec;
  payload: Uint8Array;
}

function encodePayloadJs(raw: Uint8Array): Encoded {
  const c = compressSync(raw as Buffer);
  return compressionPays(raw.length, c.length) ? { codec: Codec.Lz4, payload: c } : { codec: Codec.Raw, payload: raw };
}

function encodePayloadNative(raw: Uint8Array): Encoded {
  const dst = Buffer.allocUnsafe(Math.max(payloadCap(raw.length), 0));
  const n = nativeCodec!.lz4Compress(raw, dst);
  return n > 0 ? { codec: Codec.Lz4, payload: dst.subarray(0, n) } : { codec: Codec.Raw, payload: raw };
}

export const encodePayload: (raw: Uint8Array) => Encoded = nativeCodec ? encodePayloadNative : encodePayloadJs;

/** Decodes into exactly rawLen bytes; throws with the reason when it cannot. */
function uncompressNative(payload: Uint8Array, rawLen: number): Buffer {
  const claimed = nativeCodec!.lz4Claimed(payload);
  if (claimed < 0) throw new Error('the payload is shorter than its length prefix');
  if (claimed !== rawLen) throw new LengthMismatch(claimed);
  const out = Buffer.allocUnsafe(rawLen);
  if (nativeCodec!.lz4Decompress(payload, out) !== rawLen) throw new Error('malformed LZ4 block');
  return out;
}

/**
 * The plain length an LZ4 payload claims (its u32 LE prefix), or -1 when it has none. Checked
 * against the record's rawLen before lz4-napi sees the payload: lz4-napi allocates what the
 * prefix claims, so a damaged prefix of 2^31 cost 47 s and 2 GiB of zeroing per read.
 */
export function lz4ClaimedLength(payload: Uint8Array): number {
  if (payload.length < 4) return -1;
  return (payload[0] | (payload[1] << 8) | (payload[2] << 16)) + payload[3] * 0x1000000;
}

function uncompressJs(payload: Uint8Array, rawLen: number): Buffer {
  const claimed = lz4ClaimedLength(payload);
  if (claimed < 0) throw new Error('the payload is shorter than its length prefix');
  if (claimed !== rawLen) throw new LengthMismatch(claimed);
  return uncompressSync(payload as Buffer);
}

/**
 * An LZ4 payload's plain bytes, exactly rawLen of them, by the addon or (`js`, or without it)
 * lz4-napi; throws LengthMismatch or an Error saying why not. Both paths are fuzzed.
 */
export function uncompressPayload(payload: Uint8Array, rawLen: number, impl: 'native' | 'js' = nativeCodec ? 'native' : 'js'): Buffer {
  return impl === 'native' && nativeCodec ? uncompressNative(payload, rawLen) : uncompressJs(payload, rawLen);
}

/**
 * uncompressPayload into `dst` (exactly rawLen = dst.length bytes), without a buffer of its own
 * with the addon: for a batch decoded into one buffer (the transfer receiver's).
 */
export function uncompressPayloadInto(payload: Uint8Array, dst: Buffer): void {
  if (!nativeCodec) {
    uncompressJs(payload, dst.length).copy(dst);
    return;
  }
  const claimed = nativeCodec.lz4Claimed(payload);
  if (claimed < 0) throw new Error('the payload is shorter than its length prefix');
  if (claimed !== dst.length) throw new LengthMismatch(claimed);
  if (nativeCodec.lz4Decompress(payload, dst) !== dst.length) throw new Error('malformed LZ4 block');
}

export class LengthMismatch extends Error {
  constructor(readonly got: number) {
    super(`decodes to ${got} bytes`);
  }
}

export interface SegmentPlace {
  /** Container id and record offset, for the error a person reads. */
  cid: number;
  offset: number;
}

/**
 * Decodes a stored payload and checks it against its fingerprint. Throws CORRUPT_SEGMENT
 * naming the container and offset on any mismatch: nothing unverified is ever returned.
 */
export function decodePayload(
  payload: Uint8Array,
  codec: Codec,
  rawLen: number,
  fp: Uint8Array,
  place: SegmentPlace,
  impl?: 'native' | 'js',
): Buffer {
  let raw: Buffer;
  try {
    // A raw payload is copied: the caller's buffer may be a container image that is reused.
    raw = codec === Codec.Lz4 ? uncompressPayload(payload, rawLen, impl) : Buffer.from(payload);
  } catch (err) {
    if (err instanceof LengthMismatch) throw corrupt(fp, place, `decodes to ${err.got} bytes, expected ${rawLen}`);
    throw corrupt(fp, place, `does not decompress (${(err as Error).message})`);
  }
  if (raw.length !== rawLen) throw corrupt(fp, place, `decodes to ${raw.length} bytes, expected ${rawLen}`);
  if (!fingerprint(raw).equals(fp)) throw corrupt(fp, place, 'failed verification (BLAKE3 mismatch)');
  return raw;
}

export function corrupt(fp: Uint8Array, place: SegmentPlace, what: string) {
  return vmError(
    'CORRUPT_SEGMENT',
    `segment ${fpHex(fp).slice(0, 16)} in container ${containerName(place.cid)} at offset ${place.offset} ${what}`,
    { fingerprint: fpHex(fp), container: place.cid, offset: place.offset },
  );
}

export function containerName(cid: number): string {
  return cid.toString(16).padStart(8, '0');
}
