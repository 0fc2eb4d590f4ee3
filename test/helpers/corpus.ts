// Larger test inputs: real files from /usr concatenated (binaries, libraries, text: what a
// guest filesystem holds), and a cheap pseudo-random stream that never repeats itself.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { generate, Rng } from './data.js';

/**
 * `bytes` of real files under /usr, whole files in a fixed (sorted) order, topped up with
 * generated text and random data if /usr holds less. Files larger than 8 MiB are skipped so
 * the mix stays varied.
 */
export function usrCorpus(bytes: number, roots = ['/usr/lib', '/usr/share', '/usr/bin']): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  let at = 0;
  const walk = (dir: string): void => {
    let names: string[];
    try {
      names = fs.readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const name of names) {
      if (at >= bytes) return;
      const p = path.join(dir, name);
      let st: fs.Stats;
      try {
        st = fs.lstatSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && st.size > 0 && st.size <= 8 << 20) {
        try {
          const data = fs.readFileSync(p);
          at += data.copy(out, at);
        } catch {
          // unreadable: skip
        }
      }
    }
  };
  for (const r of roots) walk(r);
  const rng = new Rng(77);
  while (at < bytes) {
    const n = Math.min(bytes - at, 1 << 20);
    at += generate(rng, rng.int(2) === 0 ? 'text' : 'random', n).copy(out, at);
  }
  return out;
}

const NOISE_BASE = 64 * 1024 * 1024;
const noiseBases = new Map<number, Buffer>();

/**
 * Piece `i` (of `size` bytes) of a pseudo-random stream that never repeats itself: a 64 MiB
 * AES-128-CTR keystream with the second half of every 4 KiB zeroed (so it compresses about
 * 2:1, like disk data), cycled, with the piece number and offset stamped every 1 KiB so that
 * no segment (at least 2 KiB) equals another. Cheap: a copy and a few stores per KiB.
 */
export function noisePiece(seed: number, i: number, size: number): Buffer {
  let base = noiseBases.get(seed);
  if (!base) {
    const key = Buffer.alloc(16);
    key.writeUInt32LE(seed >>> 0, 0);
    base = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(NOISE_BASE));
    for (let k = 0; k < NOISE_BASE; k += 4096) base.fill(0, k + 2048, k + 4096);
    noiseBases.set(seed, base);
  }
  const out = Buffer.allocUnsafe(size);
  let from = (i * size) % NOISE_BASE;
  for (let at = 0; at < size; ) {
    const n = base.copy(out, at, from, Math.min(NOISE_BASE, from + size - at));
    at += n;
    from = 0;
  }
  for (let k = 0; k + 8 <= size; k += 1024) {
    out.writeUInt32LE(i >>> 0, k);
    out.writeUInt32LE(k, k + 4);
  }
  return out;
}
