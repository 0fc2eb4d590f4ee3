// A file version: the root of its segment tree, its size, and the root's level. Height 0
// means the root is a single data segment, or the zero-run sentinel for a file of zeros
// (including the empty file).

import { vmError } from '../../errors.js';
import { FP_BYTES, fpHex, ZERO_FP } from '../codec/fingerprint.js';

export interface FileVersion {
  readonly root: Buffer;
  readonly size: number;
  readonly height: number;
}

export const EMPTY_VERSION: FileVersion = Object.freeze({ root: ZERO_FP, size: 0, height: 0 });

export const VERSION_BYTES = FP_BYTES + 8 + 1;

export function encodeVersion(v: FileVersion): Buffer {
  const b = Buffer.allocUnsafe(VERSION_BYTES);
  v.root.copy(b, 0, 0, FP_BYTES);
  b.writeUInt32LE(v.size % 0x100000000, FP_BYTES);
  b.writeUInt32LE(Math.floor(v.size / 0x100000000), FP_BYTES + 4);
  b[FP_BYTES + 8] = v.height;
  return b;
}

export function decodeVersion(b: Uint8Array, where = 'file version'): FileVersion {
  if (b.length !== VERSION_BYTES) throw vmError('CORRUPT_RECORD', `${where}: file version malformed (${b.length} bytes, expected ${VERSION_BYTES})`);
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const size = buf.readUInt32LE(FP_BYTES) + buf.readUInt32LE(FP_BYTES + 4) * 0x100000000;
  if (size > Number.MAX_SAFE_INTEGER) throw vmError('CORRUPT_RECORD', `${where}: file version size ${size} is past 2^53`);
  return { root: Buffer.from(buf.subarray(0, FP_BYTES)), size, height: buf[FP_BYTES + 8] };
}

export function versionEquals(a: FileVersion, b: FileVersion): boolean {
  return a.size === b.size && a.height === b.height && a.root.equals(b.root);
}

export function describeVersion(v: FileVersion): string {
  return `${fpHex(v.root).slice(0, 16)}/${v.size}/h${v.height}`;
}
