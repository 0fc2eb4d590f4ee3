// Fingerprints are BLAKE3-256 of a segment's plain bytes. They name segments in the index,
// in tree nodes and in container records, and they are the check every read makes.

import { blake3 } from '@napi-rs/blake-hash';
import { nativeCodec } from '../native.js';

export const FP_BYTES = 32;

/** Stands for a run of zero bytes: never stored, never hashed (BLAKE3 of nothing is not 0). */
export const ZERO_FP: Buffer = Buffer.alloc(FP_BYTES);

/**
 * BLAKE3 of one buffer: the addon's (see native.ts), else @napi-rs/blake-hash; the same hash
 * (test/native-codec.test.ts holds the two to each other).
 */
export const fingerprint: (data: Uint8Array) => Buffer = nativeCodec ? nativeCodec.blake3 : blake3;

export function isZeroFp(fp: Uint8Array): boolean {
  // Only the sentinel is all zero; a real BLAKE3 output with 64 leading zero bits is not a
  // concern, so two words decide.
  const v = Buffer.isBuffer(fp) ? fp : Buffer.from(fp.buffer, fp.byteOffset, fp.byteLength);
  return v.readUInt32LE(0) === 0 && v.readUInt32LE(4) === 0 && v.equals(ZERO_FP);
}

export function fpHex(fp: Uint8Array): string {
  return Buffer.from(fp.buffer, fp.byteOffset, fp.byteLength).toString('hex');
}

/** A short form for messages: enough to find the segment with the verify tools. */
export function fpShort(fp: Uint8Array): string {
  return fpHex(fp).slice(0, 12);
}

/**
 * A 30-bit number taken from a fingerprint, used as a Map key: a small integer key is far
 * cheaper than a string or a larger number (measured ~2x faster Map lookups than 48-bit keys,
 * which V8 keeps as heap numbers). Callers confirm the full fingerprint on a hit.
 */
export function fpKey(fp: Uint8Array, offset = 0): number {
  return fp[offset] | (fp[offset + 1] << 8) | (fp[offset + 2] << 16) | ((fp[offset + 3] & 0x3f) << 24);
}

export function fpEquals(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number): boolean {
  for (let i = 0; i < FP_BYTES; i++) if (a[aOff + i] !== b[bOff + i]) return false;
  return true;
}
