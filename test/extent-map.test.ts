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
