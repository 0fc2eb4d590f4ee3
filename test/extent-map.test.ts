// The dirty extent map's hand-over writes: a buffer written `owned` is kept without a copy, and
// no later write (appending, overlapping) ever writes into it.

import t from 'tap';
import { ExtentMap } from '../src/namespace/extent-map.js';

const bytes = (n: number, v: number) => Buffer.alloc(n, v);

t.test('an owned buffer is kept as is, and later writes never change it', async (t) => {
  const m = new ExtentMap();
  const owned = bytes(1000, 1);
  const snapshot = Buffer.from(owned);
  m.write(0, owned, true);
  t.equal(m.list()[0].data.buffer, owned.buffer, 'the extent holds the caller\'s memory, not a copy');
  m.write(1000, bytes(10, 2)); // sequential append: must not go into the owned buffer
  m.write(500, bytes(100, 3)); // overlap in the middle
  t.same(owned, snapshot, 'the handed-over buffer is unchanged');
  const out = Buffer.alloc(1010);
  t.equal(m.overlay(out, 0), 1010);
  const want = Buffer.concat([bytes(500, 1), bytes(100, 3), bytes(400, 1), bytes(10, 2)]);
  t.same(out, want, 'reads back the newest bytes');
  t.equal(m.bytes, 1010);
});

t.test('a write that is not owned is copied', async (t) => {
  const m = new ExtentMap();
  const src = bytes(100, 7);
  m.write(0, src);
  src.fill(9);
  const out = Buffer.alloc(100);
  m.overlay(out, 0);
  t.same(out, bytes(100, 7), 'the caller may reuse its buffer');
});

t.test('a small file holds about its own size; appends still coalesce into large extents', async (t) => {
  // Issue 10: each 4 KiB file used to hold a 1 MiB buffer (external memory: V8 ran a
  // mark-compact every few dozen files).
  const m = new ExtentMap();
  m.write(0, bytes(4096, 1));
  t.ok(m.list()[0].data.buffer.byteLength <= 64 * 1024, `a 4 KiB write holds ${m.list()[0].data.buffer.byteLength} bytes`);
  // 4 KiB appends up to 1.5 MiB: one extent per MiB, as before.
  for (let off = 4096, v = 2; off < 1536 * 1024; off += 4096, v = (v % 250) + 1) m.write(off, bytes(4096, v));
  t.equal(m.count, 2, 'sequential appends coalesce: one extent per MiB');
  t.equal(m.list()[0].data.length, 1024 * 1024);
  const out = Buffer.alloc(1536 * 1024);
  t.equal(m.overlay(out, 0), out.length);
  for (let off = 0, v = 1; off < out.length; off += 4096, v = (v % 250) + 1) {
    if (out[off] !== v || out[off + 4095] !== v) return t.fail(`bytes at ${off}: ${out[off]}, want ${v}`);
  }
  t.pass('every appended block reads back');
  // A view (the head left by an overlapping write) is never grown in place.
  const n = new ExtentMap();
  n.write(0, bytes(8192, 1));
  n.write(4096, bytes(8192, 2));
  n.write(12288, bytes(4096, 3));
  const o2 = Buffer.alloc(16384);
  n.overlay(o2, 0);
  t.same(o2, Buffer.concat([bytes(4096, 1), bytes(8192, 2), bytes(4096, 3)]));
});
