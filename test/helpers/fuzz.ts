// Property-based fuzzing of decoders, with a seeded generator of our own (no shrinking: the
// failing input is printed in hex, and the seed reproduces the run). Each target generates
// valid values and their encodings; the harness checks
//  - round trip: decode(encode(v)) is v;
//  - hostile bytes (random bytes, truncations, extensions, bit flips, interesting u32s such
//    as huge lengths, spliced encodings, and for msgpack records fields of the wrong type):
//    the decoder returns a value that passes the target's check, or throws a VmvaultError
//    with one of the target's codes; never a RangeError/TypeError, never a call that takes
//    longer than SLOW_MS twice in a row, never one that grows the process by more than GROWTH_BYTES.
// Runs are bounded by time: VMVAULT_FUZZ_MS per target (default 1500).

import { pack } from 'msgpackr';
import { isDeepStrictEqual } from 'node:util';
import { type ErrorCode, isVmvaultError } from '../../src/errors.js';
import { Rng } from './data.js';

const SLOW_MS = 500;
const GROWTH_BYTES = 256 * 1024 * 1024;

export interface Sample<C> {
  bytes: Buffer;
  /** What the decoder needs beside the bytes (a file size, a fingerprint); kept by mutations. */
  ctx: C;
  /** The decoded value expected for `bytes`, in the form `view` gives. */
  expect: unknown;
}

export interface FuzzTarget<C, T> {
  name: string;
  gen(rng: Rng): Sample<C>;
  decode(bytes: Buffer, ctx: C): T;
  /** The comparable form of a decoded value. */
  view(v: T): unknown;
  /** Invariants of any value the decoder accepts; a message when one does not hold. */
  check?(v: T, bytes: Buffer, ctx: C): string | undefined;
  /** Typed codes a rejection may carry; an empty list means the decoder must never throw. */
  codes: ErrorCode[];
  /** For msgpack records: the record as an object, to mutate field by field. */
  fields?(rng: Rng): Record<string, unknown>;
  /** Structure-aware hostile inputs of the target's own (used for a quarter of the runs). */
  hostile?(rng: Rng): Buffer;
}

export interface FuzzResult {
  runs: number;
  roundTrips: number;
  accepted: number;
  rejected: number;
  failures: string[];
}

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0x1000000, 0x1000001];

function mutate(rng: Rng, b: Buffer, other: Buffer): Buffer {
  const out = Buffer.from(b);
  switch (rng.int(8)) {
    case 0:
      return rng.bytes(rng.int(Math.max(8, b.length * 2) + 1));
    case 1:
      return out.subarray(0, rng.int(b.length + 1));
    case 2:
      return Buffer.concat([out, rng.bytes(rng.range(1, 64))]);
    case 3: {
      const flips = rng.range(1, 8);
      for (let i = 0; i < flips && out.length > 0; i++) out[rng.int(out.length)] ^= 1 << rng.int(8);
      return out;
    }
    case 4: {
      if (out.length < 4) return out;
      const at = rng.int(out.length - 3);
      const v = rng.int(3) === 0 ? b.length + rng.range(-2, 2) : rng.pick(INTERESTING);
      if (rng.int(2) === 0) out.writeUInt32LE(v >>> 0, at);
      else out.writeUInt32BE(v >>> 0, at);
      return out;
    }
    case 5: {
      const cut = rng.int(b.length + 1);
      return Buffer.concat([out.subarray(0, cut), other.subarray(rng.int(other.length + 1))]);
    }
    case 6: {
      if (out.length === 0) return out;
      const at = rng.int(out.length);
      out[at] = rng.pick([0, 0xff, 0x80, 0x7f, 0xc0, 0xc1, 0xd4, 0xdc, 0xdd, 0xde, 0xdf, 0xdb, 0xc6]);
      return out;
    }
    default: {
      // A chunk repeated: lengths and counts then disagree with contents.
      if (out.length === 0) return out;
      const at = rng.int(out.length);
      const len = rng.range(1, Math.min(64, out.length - at));
      return Buffer.concat([out.subarray(0, at + len), out.subarray(at, at + len), out.subarray(at + len)]);
    }
  }
}

function wrongValue(rng: Rng): unknown {
  return rng.pick<() => unknown>([
    () => -1,
    () => 1.5,
    () => 2 ** 60,
    () => Number.NaN,
    () => 'x',
    () => '',
    () => null,
    () => true,
    () => [],
    () => [1, -2],
    () => ({ a: 1 }),
    () => Buffer.from([1, 2, 3]),
    () => 0xffffffff,
    () => 0,
    () => 'x'.repeat(300),
  ])();
}

/** A msgpack record with one field removed, retyped or added. */
function mutateFields(rng: Rng, rec: Record<string, unknown>): Buffer {
  const r: Record<string, unknown> = { ...rec };
  const keys = Object.keys(r);
  const k = rng.pick(keys);
  switch (rng.int(3)) {
    case 0:
      delete r[k];
      break;
    case 1:
      r[k] = wrongValue(rng);
      break;
    default:
      r[`z${rng.int(100)}`] = wrongValue(rng);
  }
  return rng.int(8) === 0 ? pack(rng.pick([[], 'text', 42, null, Buffer.from('x')])) : pack(r);
}

function hex(b: Buffer): string {
  return b.length > 96 ? `${b.subarray(0, 96).toString('hex')}… (${b.length} bytes)` : b.toString('hex');
}

/** Runs one target for `ms` (VMVAULT_FUZZ_MS, default 1500) with a seed derived from its name. */
export function fuzz<C, T>(target: FuzzTarget<C, T>, ms = Number(process.env.VMVAULT_FUZZ_MS ?? 1500)): FuzzResult {
  let seed = 0x5eed;
  for (const ch of target.name) seed = (Math.imul(seed, 31) + ch.charCodeAt(0)) >>> 0;
  const rng = new Rng(seed);
  const res: FuzzResult = { runs: 0, roundTrips: 0, accepted: 0, rejected: 0, failures: [] };
  const fail = (what: string, input: Buffer): void => {
    if (res.failures.length < 5) res.failures.push(`${what}; input ${hex(input)}`);
  };
  const end = Date.now() + ms;
  let prev = target.gen(rng).bytes;
  while (Date.now() < end && res.failures.length < 5) {
    const s = target.gen(rng);
    // Round trip of a valid encoding.
    res.roundTrips++;
    try {
      const got = target.view(target.decode(s.bytes, s.ctx));
      if (!isDeepStrictEqual(got, s.expect)) fail(`round trip differs: ${JSON.stringify(got)?.slice(0, 300)} != ${JSON.stringify(s.expect)?.slice(0, 300)}`, s.bytes);
    } catch (err) {
      fail(`a valid encoding was refused: ${(err as Error).message}`, s.bytes);
    }
    // Hostile variants of it.
    for (let k = 0; k < 16; k++) {
      const structured = rng.int(4) === 0;
      const input = structured && target.fields ? mutateFields(rng, target.fields(rng)) : structured && target.hostile ? target.hostile(rng) : mutate(rng, s.bytes, prev);
      res.runs++;
      const rss0 = process.memoryUsage.rss();
      const t0 = performance.now();
      try {
        const v = target.decode(input, s.ctx);
        res.accepted++;
        const bad = target.check?.(v, input, s.ctx);
        if (bad) fail(`accepted a value that breaks an invariant: ${bad}`, input);
      } catch (err) {
        res.rejected++;
        if (!isVmvaultError(err)) fail(`threw ${(err as Error)?.name}: ${(err as Error)?.message}`, input);
        else if (!target.codes.includes(err.code)) fail(`threw code ${err.code} (${err.message}), expected one of ${target.codes.join(', ') || 'none'}`, input);
      }
      const took = performance.now() - t0;
      // A slow call is timed again: a hang repeats, a pause of the loaded machine does not.
      if (took > SLOW_MS) {
        const t1 = performance.now();
        try {
          target.decode(input, s.ctx);
        } catch {
          // judged above
        }
        const again = performance.now() - t1;
        if (again > SLOW_MS) fail(`took ${took.toFixed(0)} ms, then ${again.toFixed(0)} ms`, input);
      }
      const grew = process.memoryUsage.rss() - rss0;
      if (grew > GROWTH_BYTES) fail(`grew the process by ${(grew / 2 ** 20).toFixed(0)} MiB`, input);
    }
    prev = s.bytes;
  }
  return res;
}
