// The summary filter saved at a clean close, `<data>/bloom.bin`, so opening a large store does
// not re-read every index key. Trusted only when the store was closed cleanly; otherwise it
// is rebuilt from the index.

import fsp from 'node:fs/promises';
import path from 'node:path';
import { BloomFilter } from './bloom.js';

const MAGIC = Buffer.from('VVBLOOM\n', 'latin1');
const VERSION = 1;
const HEADER = 32;
export const BLOOM_FILE = 'bloom.bin';
/** More probes than any shape BloomFilter makes (bloom.ts picks a handful). */
const MAX_PROBES = 32;

export async function saveBloom(dir: string, bloom: BloomFilter): Promise<void> {
  const h = Buffer.alloc(HEADER);
  MAGIC.copy(h, 0);
  h.writeUInt32LE(VERSION, 8);
  h.writeUInt32LE(bloom.shape.log2Bits, 12);
  h.writeUInt32LE(bloom.shape.probes, 16);
  h.writeDoubleLE(bloom.count, 24);
  const file = path.join(dir, BLOOM_FILE);
  const tmp = `${file}.tmp`;
  const fh = await fsp.open(tmp, 'w');
  try {
    await fh.write(h, 0, HEADER, 0);
    await fh.write(new Uint8Array(bloom.shape.sab), 0, bloom.bytes, HEADER);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
}

export async function loadBloom(dir: string): Promise<BloomFilter | undefined> {
  const file = path.join(dir, BLOOM_FILE);
  let data: Buffer;
  try {
    data = await fsp.readFile(file);
  } catch {
    return undefined;
  }
  return parseBloom(data);
}

/** The filter in a bloom.bin image, or undefined when it is of another version or shape. */
export function parseBloom(data: Buffer): BloomFilter | undefined {
  if (data.length < HEADER || !data.subarray(0, 8).equals(MAGIC) || data.readUInt32LE(8) !== VERSION) return undefined;
  const log2Bits = data.readUInt32LE(12);
  const probes = data.readUInt32LE(16);
  const count = data.readDoubleLE(24);
  // A cache, so a file of another shape is ignored, never trusted: a huge probe count would
  // make every lookup spin, a wrong length read past the bits, fewer than 32 bits make no
  // Uint32Array (a RangeError at open, found by fuzzing).
  if (log2Bits < 5 || log2Bits > 32 || data.length !== HEADER + 2 ** log2Bits / 8) return undefined;
  if (probes < 1 || probes > MAX_PROBES || !Number.isFinite(count) || count < 0) return undefined;
  const sab = new SharedArrayBuffer(2 ** log2Bits / 8);
  new Uint8Array(sab).set(data.subarray(HEADER));
  const b = new BloomFilter({ sab, log2Bits, probes });
  b.count = count;
  return b;
}

export async function removeBloom(dir: string): Promise<void> {
  await fsp.rm(path.join(dir, BLOOM_FILE), { force: true });
}
