// A ByteSource that reads its source in aligned chunks and keeps the most recent ones: a file
// system walk asks for many small pieces (inodes, directory blocks) that sit close together,
// and each read through the namespace costs a store lookup. Memory is bounded by
// chunkBytes x maxChunks (default 256 KiB x 64 = 16 MiB).

import type { ByteSource } from './source.js';

/** Chunks per slab (64 x 4 KiB = 256 KiB). */
const SLAB_CHUNKS = 64;

export function cachedSource(src: ByteSource, opts: { chunkBytes?: number; maxChunks?: number; directBytes?: number } = {}): ByteSource {
  const chunk = opts.chunkBytes ?? 256 * 1024;
  const max = opts.maxChunks ?? 64;
  /** Reads this large or larger go to the source (default: above one chunk). */
  const direct = opts.directBytes ?? chunk + 1;
  const cache = new Map<number, Promise<Buffer>>();
  // Chunks are read into slabs of SLAB_CHUNKS where the source can read into a buffer: a walk
  // reads thousands of 4 KiB chunks (2,700 for a day-1 build of the sample), and an ArrayBuffer
  // each was ~2% of its samples and external memory that brought the collector's full
  // collections sooner. Only until the cache first evicts or a read fails: a slab lives while
  // any chunk of it is cached, so after that each chunk is its own allocation again (the memory
  // bound holds: slabs for at most `max` chunks, plus `max` chunks cached).
  let slab: Buffer | undefined;
  let slabUsed = 0;
  let plain = false;
  const load = (at: number, n: number): Promise<Buffer> => {
    if (!src.readInto || plain || n !== chunk) return src.read(at, n);
    if (!slab || slabUsed === SLAB_CHUNKS) {
      slab = Buffer.allocUnsafe(chunk * SLAB_CHUNKS);
      slabUsed = 0;
    }
    const out = slab.subarray(slabUsed * chunk, ++slabUsed * chunk);
    return src.readInto(at, out).then(() => out);
  };
  const get = (i: number): Promise<Buffer> => {
    let p = cache.get(i);
    if (p) {
      cache.delete(i); // most recent last
      cache.set(i, p);
      return p;
    }
    const at = i * chunk;
    p = load(at, Math.min(chunk, src.size - at));
    p.catch(() => {
      cache.delete(i);
      plain = true;
    });
    cache.set(i, p);
    if (cache.size > max) {
      cache.delete(cache.keys().next().value as number);
      plain = true;
    }
    return p;
  };
  return {
    size: src.size,
    path: src.path,
    async read(offset: number, length: number): Promise<Buffer> {
      const end = Math.min(src.size, offset + length);
      if (end <= offset) return Buffer.alloc(0);
      // Large reads (file contents) go straight to the source: caching them would only evict.
      if (end - offset >= direct) return src.read(offset, end - offset);
      const first = Math.floor(offset / chunk);
      const last = Math.floor((end - 1) / chunk);
      if (first === last) {
        const b = await get(first);
        return b.subarray(offset - first * chunk, end - first * chunk);
      }
      const parts = await Promise.all([get(first), get(last)]);
      return Buffer.concat([parts[0].subarray(offset - first * chunk), parts[1].subarray(0, end - last * chunk)]);
    },
  };
}

/** A plain local file as a ByteSource (benchmarks, tests). */
export async function fileSource(path: string): Promise<ByteSource & { close(): Promise<void> }> {
  const fs = await import('node:fs/promises');
  const fh = await fs.open(path, 'r');
  const size = (await fh.stat()).size;
  return {
    size,
    path,
    async read(offset: number, length: number): Promise<Buffer> {
      const n = Math.max(0, Math.min(length, size - offset));
      const b = Buffer.allocUnsafe(n);
      let got = 0;
      while (got < n) {
        const r = await fh.read(b, got, n - got, offset + got);
        if (r.bytesRead === 0) break;
        got += r.bytesRead;
      }
      return got === n ? b : b.subarray(0, got);
    },
    close: () => fh.close(),
  };
}
