// The catalog build's read cache (catalog/read-cache.ts) over a source that reads into a
// caller's buffer (a snapshot's stored version, catalog-build's namespaceSource): its chunks
// are read into shared slabs until the cache first evicts or a read fails, then one allocation
// each again (catalog9: an ArrayBuffer per 4 KiB chunk was ~2% of a day-1 build's samples).
// Every read gives the source's bytes either way, across chunk edges and at the source's end.

import t from 'tap';
import crypto from 'node:crypto';
import { cachedSource } from '../src/catalog/read-cache.js';
import type { ByteSource } from '../src/catalog/source.js';

const SIZE = 300 * 4096 + 1234; // the last chunk is short
const bytes = crypto.randomBytes(SIZE);

function source(opts: { failAt?: number } = {}): ByteSource & { reads: number; intos: number } {
  const s = {
    size: SIZE,
    reads: 0,
    intos: 0,
    async read(offset: number, length: number) {
      s.reads++;
      return Buffer.from(bytes.subarray(offset, Math.min(SIZE, offset + length)));
    },
    async readInto(offset: number, out: Buffer) {
      s.intos++;
      if (offset === opts.failAt) throw new Error('injected read failure');
      if (offset + out.length > SIZE) throw new Error('readInto past the end');
      bytes.copy(out, 0, offset, offset + out.length);
    },
  };
  return s;
}

t.test('chunks share slabs; every read gives the source bytes', async (t) => {
  const src = source();
  const c = cachedSource(src, { chunkBytes: 4096, maxChunks: 1024 });
  const a = await c.read(0, 100);
  const b = await c.read(5 * 4096 + 10, 200);
  t.ok(a.equals(bytes.subarray(0, 100)) && b.equals(bytes.subarray(5 * 4096 + 10, 5 * 4096 + 210)), 'the bytes');
  t.equal(a.buffer, b.buffer, 'two chunks in one allocation');
  t.equal(src.reads, 0, 'no read() for whole chunks');
  // Across an edge, at the end, and everything once over.
  t.ok((await c.read(4096 - 7, 20)).equals(bytes.subarray(4096 - 7, 4096 + 13)), 'across a chunk edge');
  t.ok((await c.read(SIZE - 100, 500)).equals(bytes.subarray(SIZE - 100)), 'the short last chunk, clipped at the end');
  for (let at = 0; at < SIZE; at += 3000) t.ok((await c.read(at, 3000)).equals(bytes.subarray(at, Math.min(SIZE, at + 3000))), `[${at}, +3000)`, { diagnostic: false });
});

t.test('after the first eviction, chunks are their own allocations; the bytes stay right', async (t) => {
  const src = source();
  const c = cachedSource(src, { chunkBytes: 4096, maxChunks: 8 });
  const first = await c.read(0, 10);
  for (let i = 1; i <= 8; i++) await c.read(i * 4096, 10); // the 9th chunk evicts chunk 0
  const x = await c.read(20 * 4096, 10);
  const y = await c.read(21 * 4096, 10);
  t.not(x.buffer, y.buffer, 'one allocation each after an eviction');
  t.ok(first.equals(bytes.subarray(0, 10)) && x.equals(bytes.subarray(20 * 4096, 20 * 4096 + 10)) && y.equals(bytes.subarray(21 * 4096, 21 * 4096 + 10)), 'the bytes');
  t.ok((await c.read(0, 4096)).equals(bytes.subarray(0, 4096)), 'an evicted chunk read again');
});

t.test('a failed read is refused, not cached; later chunks are their own allocations', async (t) => {
  const src = source({ failAt: 3 * 4096 });
  const c = cachedSource(src, { chunkBytes: 4096, maxChunks: 1024 });
  await t.rejects(c.read(3 * 4096 + 5, 10), /injected/, 'the failure reaches the reader');
  const x = await c.read(30 * 4096, 10);
  const y = await c.read(31 * 4096, 10);
  t.not(x.buffer, y.buffer, 'no slab after a failure');
  t.ok(x.equals(bytes.subarray(30 * 4096, 30 * 4096 + 10)), 'the bytes');
});

t.test('a source without readInto is read as before', async (t) => {
  const src = source();
  const plain: ByteSource = { size: src.size, read: (o, l) => src.read(o, l) };
  const c = cachedSource(plain, { chunkBytes: 4096, maxChunks: 1024 });
  const a = await c.read(0, 10);
  const b = await c.read(4096, 10);
  t.not(a.buffer, b.buffer, 'one allocation per chunk');
  t.ok(a.equals(bytes.subarray(0, 10)) && b.equals(bytes.subarray(4096, 4106)), 'the bytes');
});
