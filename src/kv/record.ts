// Decoding msgpack records read back from LevelDB (the store's counters and checkpoint, the
// namespace's inodes and volumes) as untrusted bytes: a record that does not unpack, or whose
// fields have the wrong type or range, is CORRUPT_RECORD naming the record, never a
// TypeError later, nor a half-filled object. Encoders write their records field by field
// (never by spreading an in-memory object, whose extra fields would leak into the format).

import { unpack } from 'msgpackr';
import { vmError } from '../errors.js';

export type Fields = Record<string, unknown>;

/** The top-level map of a msgpack record. */
export function unpackRecord(b: Uint8Array, what: string): Fields {
  let w: unknown;
  try {
    w = unpack(b);
  } catch (err) {
    throw vmError('CORRUPT_RECORD', `${what}: not a valid record (${(err as Error).message})`, undefined, err);
  }
  if (typeof w !== 'object' || w === null || Array.isArray(w) || w instanceof Uint8Array) {
    throw vmError('CORRUPT_RECORD', `${what}: not a valid record (not a map)`);
  }
  return w as Fields;
}

function bad(what: string, key: string, why: string): never {
  throw vmError('CORRUPT_RECORD', `${what}: field ${key} ${why}`);
}

/** A non-negative integer no larger than 2^53 - 1 (or `max`). */
export function uint(w: Fields, key: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  const v = w[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) bad(what, key, `is not an integer in [0, ${max}]`);
  return v;
}

export function optUint(w: Fields, key: string, what: string, max?: number): number | undefined {
  return w[key] === undefined ? undefined : uint(w, key, what, max);
}

/** A finite number (times in ms may be negative: before the epoch). */
export function num(w: Fields, key: string, what: string): number {
  const v = w[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) bad(what, key, 'is not a finite number');
  return v;
}

export function str(w: Fields, key: string, what: string): string {
  const v = w[key];
  if (typeof v !== 'string') bad(what, key, 'is not a string');
  return v;
}

export function optStr(w: Fields, key: string, what: string): string | undefined {
  return w[key] === undefined ? undefined : str(w, key, what);
}

export function optBytes(w: Fields, key: string, what: string): Uint8Array | undefined {
  const v = w[key];
  if (v === undefined) return undefined;
  if (!(v instanceof Uint8Array)) bad(what, key, 'is not a byte string');
  return v;
}

export function bool(w: Fields, key: string, what: string): boolean {
  const v = w[key];
  if (typeof v !== 'boolean') bad(what, key, 'is not a boolean');
  return v;
}

export function uintArray(w: Fields, key: string, what: string, max = Number.MAX_SAFE_INTEGER): number[] {
  const v = w[key];
  if (!Array.isArray(v)) bad(what, key, 'is not an array');
  return v.map((x, i) => {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > max) bad(what, `${key}[${i}]`, `is not an integer in [0, ${max}]`);
    return x;
  });
}

/** The record's format number, `f`: refuses a newer one with UNSUPPORTED_FORMAT. */
export function formatOf(w: Fields, key: string, known: number, what: string): number {
  const f = uint(w, key, what, 0xffff);
  if (f > known) throw vmError('UNSUPPORTED_FORMAT', `${what} format ${f} is newer than this vmvault reads (${known}); upgrade vmvault`);
  return f;
}
