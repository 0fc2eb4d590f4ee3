// Segment-tree nodes (Lp, p >= 1): lists of (fingerprint, length) of their children, stored
// as segments themselves. Layout version 1 is specified in FORMAT.md.
//
// Grouping is content-defined, so an edit rewrites only its path and identical subtrees
// dedup across files and versions. The rule, part of the format:
//   after appending a non-zero child whose fingerprint's last 4 bytes (u32 LE) have the low
//   GROUP_BITS bits all zero, a node ends if it has >= MIN_FANOUT children; it also ends at
//   MAX_FANOUT children. A node never ends after a zero-run child (so adjacent zero runs can
//   always be merged and a node has at most MAX_FANOUT + 1 children).

import { vmError } from '../../errors.js';
import { FP_BYTES, isZeroFp, ZERO_FP } from '../codec/fingerprint.js';

export const NODE_MAGIC_0 = 0x56; // 'V'
export const NODE_MAGIC_1 = 0x4e; // 'N'
export const NODE_VERSION = 1;
export const NODE_HEADER_BYTES = 8;
export const NODE_ENTRY_BYTES = 40;

export const MIN_FANOUT = 16;
export const MAX_FANOUT = 256;
export const GROUP_BITS = 6;
const GROUP_MASK = (1 << GROUP_BITS) - 1;

/** One child: a data segment or zero run (level 0) or a node (level >= 1). */
export interface Entry {
  fp: Buffer;
  len: number;
  zero: boolean;
}

export function zeroEntry(len: number): Entry {
  return { fp: ZERO_FP, len, zero: true };
}

export function endsGroup(e: Entry, children: number): boolean {
  if (e.zero) return false;
  if (children >= MAX_FANOUT) return true;
  return children >= MIN_FANOUT && (e.fp.readUInt32LE(FP_BYTES - 4) & GROUP_MASK) === 0;
}

export function encodeNode(level: number, entries: Entry[]): Buffer {
  const b = Buffer.allocUnsafe(NODE_HEADER_BYTES + entries.length * NODE_ENTRY_BYTES);
  b[0] = NODE_MAGIC_0;
  b[1] = NODE_MAGIC_1;
  b[2] = NODE_VERSION;
  b[3] = level;
  b.writeUInt32LE(entries.length, 4);
  let at = NODE_HEADER_BYTES;
  for (const e of entries) {
    // A byte loop: Buffer.copy costs far more than 32 bytes' worth per call.
    const fp = e.fp;
    for (let k = 0; k < FP_BYTES; k++) b[at + k] = fp[k];
    b.writeUInt32LE(e.len % 0x100000000, at + 32);
    b.writeUInt32LE(Math.floor(e.len / 0x100000000), at + 36);
    at += NODE_ENTRY_BYTES;
  }
  return b;
}

/** A decoded node; `starts[i]` is the byte offset of child i within the node, starts[n] = size. */
export interface Node {
  level: number;
  count: number;
  fps: Buffer;
  starts: Float64Array;
}

export function decodeNode(b: Buffer, where: string): Node {
  if (b.length < NODE_HEADER_BYTES || b[0] !== NODE_MAGIC_0 || b[1] !== NODE_MAGIC_1) {
    throw vmError('CORRUPT_SEGMENT', `${where} is not a tree node`);
  }
  if (b[2] > NODE_VERSION) {
    throw vmError('UNSUPPORTED_FORMAT', `${where}: tree node format ${b[2]} is newer than this vmvault reads (${NODE_VERSION})`);
  }
  const level = b[3];
  const count = b.readUInt32LE(4);
  // An empty node is never written (a level with no entries has no node).
  if (level < 1 || count === 0 || b.length !== NODE_HEADER_BYTES + count * NODE_ENTRY_BYTES) {
    throw vmError('CORRUPT_SEGMENT', `${where}: malformed tree node (level ${level}, ${count} children, ${b.length} bytes)`);
  }
  const fps = Buffer.allocUnsafe(count * FP_BYTES);
  const starts = new Float64Array(count + 1);
  let at = NODE_HEADER_BYTES;
  let off = 0;
  for (let i = 0; i < count; i++) {
    for (let k = 0; k < FP_BYTES; k++) fps[i * FP_BYTES + k] = b[at + k];
    starts[i] = off;
    off += b.readUInt32LE(at + 32) + b.readUInt32LE(at + 36) * 0x100000000;
    at += NODE_ENTRY_BYTES;
  }
  // Lengths are u64 on disk but sizes are exact only up to 2^53: beyond, offsets would be wrong.
  if (off > Number.MAX_SAFE_INTEGER) throw vmError('CORRUPT_SEGMENT', `${where}: children's lengths add up past 2^53`);
  starts[count] = off;
  return { level, count, fps, starts };
}

export function childFp(n: Node, i: number): Buffer {
  return n.fps.subarray(i * FP_BYTES, (i + 1) * FP_BYTES);
}

export function childEntry(n: Node, i: number): Entry {
  const fp = childFp(n, i);
  return { fp, len: n.starts[i + 1] - n.starts[i], zero: n.level === 1 && isZeroFp(fp) };
}

/** Index of the child containing byte `off` of the node (the last child for off == size). */
export function childAt(n: Node, off: number): number {
  let lo = 0;
  let hi = n.count - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (n.starts[mid] <= off) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
