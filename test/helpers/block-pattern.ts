// Content that can be told apart block by block: the bytes at offset o of (file, version) are
// the AES-128-CTR keystream at o under a key derived from the file's name and the version, so
// any range can be regenerated without the rest, two versions never share a block, and a block
// that is neither (torn, shifted, from another file, zeroed) is recognised as such.

import { createCipheriv, createHash } from 'node:crypto';

/** The unit of "old or new": one page, which the kernel never splits across FUSE writes. */
export const BLOCK = 4096;

const ZEROS = Buffer.alloc(1024 * 1024);

function key(file: string, version: number): Buffer {
  return createHash('sha256').update(`vmvault-crash\0${file}\0${version}`).digest().subarray(0, 16);
}

/** Bytes [offset, offset + length) of version `version` of `file`; offset a multiple of 16. */
export function pattern(file: string, version: number, offset: number, length: number): Buffer {
  if (offset % 16 !== 0) throw new RangeError('offset must be a multiple of 16');
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(offset / 16), 8);
  const c = createCipheriv('aes-128-ctr', key(file, version), iv);
  const parts: Buffer[] = [];
  for (let done = 0; done < length; done += ZEROS.length) parts.push(c.update(ZEROS.subarray(0, Math.min(ZEROS.length, length - done))));
  parts.push(c.final());
  return Buffer.concat(parts, length);
}

export interface BlockReport {
  /** Blocks per accepted version (-1: all zeros). */
  counts: Map<number, number>;
  /** Offsets of blocks that are none of the accepted contents. */
  bad: number[];
}

/**
 * Classifies every BLOCK of `data` (the file as read, starting at offset 0) as one of
 * `versions` of `file`, or zeros when `zerosOk` (a hole, or bytes a new file never got).
 * A short last block is compared on its length.
 */
export function classify(file: string, data: Buffer, versions: number[], zerosOk: boolean): BlockReport {
  const counts = new Map<number, number>();
  const bad: number[] = [];
  const CHUNK = 1024 * 1024;
  for (let at = 0; at < data.length; at += CHUNK) {
    const len = Math.min(CHUNK, data.length - at);
    const want = versions.map((v) => pattern(file, v, at, len));
    for (let b = 0; b < len; b += BLOCK) {
      const end = Math.min(len, b + BLOCK);
      const got = data.subarray(at + b, at + end);
      let which: number | undefined;
      for (const [i, w] of want.entries()) {
        if (got.equals(w.subarray(b, end))) {
          which = versions[i];
          break;
        }
      }
      if (which === undefined && zerosOk && got.equals(ZEROS.subarray(0, got.length))) which = -1;
      if (which === undefined) bad.push(at + b);
      else counts.set(which, (counts.get(which) ?? 0) + 1);
    }
  }
  return { counts, bad };
}
