// Small sequential reads (FUSE's 128 KiB read() calls) are served from read-ahead windows:
// whatever the read sizes, jumps and interleaving, every read returns the version's bytes.

import t from 'tap';
import { SegmentStore } from '../src/store/store.js';
import { generate, Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('sequential reads of any size, interleaved and with jumps, read back identical', async (t) => {
  const dir = tmpDir(t);
  const store = await SegmentStore.open(dir);
  t.teardown(() => store.close());
  const rng = new Rng(77);
  const a = Buffer.concat([generate(rng, 'text', 6 << 20), generate(rng, 'sparse', 3 << 20), rng.bytes(5 << 20)]);
  const b = Buffer.concat([rng.bytes(3 << 20), generate(rng, 'text', (9 << 20) + 12345)]);
  const va = (await store.writeBuffer(a)).version;
  const vb = (await store.writeBuffer(b)).version;
  await store.commit();
  let bad = 0;
  let reads = 0;
  for (const size of [131072, 100000, 4096, 1 << 20]) {
    // Two files read side by side, as two FUSE readers would.
    let oa = 0;
    let ob = rng.int(1 << 20);
    while (oa < a.length || ob < b.length) {
      if (oa < a.length) {
        const got = await store.read(va, oa, size);
        if (!got.equals(a.subarray(oa, oa + size))) bad++;
        oa += size;
        reads++;
      }
      if (ob < b.length) {
        const got = await store.read(vb, ob, size);
        if (!got.equals(b.subarray(ob, ob + size))) bad++;
        ob += size;
        reads++;
      }
      // Now and then a jump back or ahead, and on from there.
      if (rng.int(40) === 0) oa = rng.int(a.length);
    }
  }
  t.equal(bad, 0, `${reads} reads identical`);
  // Reads in flight together, in order, as the kernel issues them.
  const size = 131072;
  const all = await Promise.all(Array.from({ length: Math.ceil(a.length / size) }, (_, k) => store.read(va, k * size, size)));
  t.ok(Buffer.concat(all).equals(a), 'concurrent sequential reads identical');
});

t.test('read-ahead windows over zero runs, read in place and out of order', async (t) => {
  const dir = tmpDir(t);
  const store = await SegmentStore.open(dir);
  t.teardown(() => store.close());
  const rng = new Rng(78);
  // Zero runs long enough to become zero entries, between data, at window edges and at the end.
  const parts = [rng.bytes(1 << 20), Buffer.alloc((5 << 20) + 777), rng.bytes(300_000), Buffer.alloc(2 << 20), generate(rng, 'sparse', 3 << 20), rng.bytes(4097), Buffer.alloc(3 << 20)];
  const a = Buffer.concat(parts);
  const va = (await store.writeBuffer(a)).version;
  await store.commit();
  let bad = 0;
  let reads = 0;
  for (const size of [131072, 100000, 65536]) {
    // Pairs of reads swapped, as two kernel reads in flight may arrive.
    for (let k = 0; k * size < a.length; k += 2) {
      for (const j of [k + 1, k]) {
        const off = j * size;
        if (off >= a.length) continue;
        const out = Buffer.alloc(size, 0xaa);
        const n = await store.readInto(va, off, out.subarray(0, Math.min(size, a.length - off)));
        reads++;
        if (!out.subarray(0, n).equals(a.subarray(off, off + n))) bad++;
      }
    }
  }
  t.equal(bad, 0, `${reads} reads identical`);
});

t.test("a caller's buffer taken away during a read is never written into", async (t) => {
  // libfuse frees the buffer of a request that timed out while the read still runs. Here the
  // memory is moved to another owner instead, so a late write into it can be seen.
  const store = await SegmentStore.open(tmpDir(t));
  t.teardown(() => store.close());
  const a = new Rng(79).bytes(8 << 20);
  const va = (await store.writeBuffer(a)).version;
  await store.commit();
  const sizes = [4096, 131072, 1 << 20];
  let touched = 0;
  let reads = 0;
  for (const [k, size] of sizes.entries()) {
    // Random offsets, so read-ahead stays out and the segments are decoded for this read.
    for (let i = 0; i < 8; i++) {
      const off = ((i * 7919 + k * 104729) * 4096) % (a.length - size);
      const out = Buffer.from(new ArrayBuffer(size));
      out.fill(0xaa);
      const pending = Promise.resolve(store.readInto(va, off, out)).catch(() => -1);
      // Taken away once the read is under way: the segments' decoding has been handed out.
      await new Promise((resolve) => setImmediate(resolve));
      const moved = new Uint8Array(structuredClone(out.buffer, { transfer: [out.buffer] }));
      await pending;
      reads++;
      if (moved.some((x) => x !== 0xaa)) touched++;
    }
  }
  t.equal(touched, 0, `${reads} reads left the moved memory alone`);
  // And a read into a buffer that stays yields the bytes.
  const out = Buffer.alloc(131072);
  t.equal(await store.readInto(va, 4096 * 99, out), out.length);
  t.ok(out.equals(a.subarray(4096 * 99, 4096 * 99 + out.length)), 'bytes read');
});

t.test('readWith hands views of the read-ahead windows: the right bytes over data and zero runs, no copy in steady state', async (t) => {
  // What the FUSE read path replies from (each view is copied into the kernel during the call).
  const store = await SegmentStore.open(tmpDir(t));
  t.teardown(() => store.close());
  const rng = new Rng(80);
  const parts = [rng.bytes(3 << 20), Buffer.alloc((6 << 20) + 4096), generate(rng, 'text', 5 << 20), Buffer.alloc(2 << 20), rng.bytes(1 << 20), generate(rng, 'sparse', 4 << 20), rng.bytes(12345)];
  const a = Buffer.concat(parts);
  const va = (await store.writeBuffer(a)).version;
  await store.commit();
  for (const size of [1 << 20, 131072, 65536]) {
    let bad = 0;
    let reads = 0;
    let views = 0;
    const check = (off: number) => (b: Buffer) => {
      reads++;
      // A copy is a Buffer of its own (at most 1 MiB); a window, and the shared zero buffer, 4 MiB.
      if (b.buffer.byteLength === 4 << 20) views++;
      if (!b.equals(a.subarray(off, off + size))) bad++;
    };
    // In order, then four at a time as the kernel's read-ahead has them in flight (handed over
    // in order; their answers come back in any order).
    for (let off = 0; off < a.length; off += size) {
      const r = store.readWith(va, off, size, check(off));
      if (r !== true) await r;
    }
    const offs = Array.from({ length: Math.ceil(a.length / size) }, (_, k) => k * size);
    for (let k = 0; k < offs.length; k += 4) {
      await Promise.all(offs.slice(k, k + 4).map((off) => store.readWith(va, off, size, check(off))));
    }
    t.equal(bad, 0, `${size}-byte reads: ${reads} identical`);
    t.ok(views >= reads * 0.8, `${size}-byte reads: ${views} of ${reads} served as views of the windows`);
  }
  // A read past the end hands an empty buffer; one across it the tail only.
  let tail = Buffer.alloc(0);
  await store.readWith(va, a.length - 100, 4096, (b) => void (tail = Buffer.from(b)));
  t.ok(tail.equals(a.subarray(a.length - 100)), 'the tail of the file');
});

t.test('hole reads come from one shared zero buffer, across windows and before any, and data around them reads right', async (t) => {
  // A recovered VM's disk is mostly holes: each hole read used to allocate and zero-fill a fresh
  // Buffer (a page fault per 4 KiB) when it fell outside the windows or across two of them.
  const store = await SegmentStore.open(tmpDir(t));
  t.teardown(() => store.close());
  const rng = new Rng(81);
  const MiB = 1 << 20;
  const parts = [Buffer.alloc(20 * MiB), rng.bytes(3 * MiB + 4096), Buffer.alloc(9 * MiB), generate(rng, 'sparse', 6 * MiB), Buffer.alloc(5 * MiB + 777)];
  const a = Buffer.concat(parts);
  const at = (k: number) => parts.slice(0, k).reduce((n, p) => n + p.length, 0);
  const holes = [0, 2, 4].map((k) => [k === 0 ? -MiB : at(k), k === 4 ? a.length + MiB : at(k + 1)]);
  const va = (await store.writeBuffer(a)).version;
  await store.commit();
  const zeroBuffers = new Set<ArrayBufferLike>();
  let bad = 0;
  let zeroReads = 0;
  const check = (off: number, size: number) => (b: Buffer) => {
    const want = a.subarray(off, off + size);
    if (!b.equals(want)) bad++;
    // Well inside one of the written holes (a data segment may hold a few zeros at its edges).
    if (holes.some(([h0, h1]) => off >= h0 + MiB && off + size <= h1 - MiB)) {
      zeroReads++;
      zeroBuffers.add(b.buffer);
    }
  };
  const read = async (off: number, size: number) => {
    const r = store.readWith(va, off, size, check(off, size));
    if (r !== true) await r;
  };
  // The first reads of a stream are not in any window yet (the read-ahead starts with the third).
  await read(0, MiB);
  await read(MiB, MiB);
  // Then 1 MiB reads half a MiB off the windows' 4 MiB grid, so every fourth spans two windows;
  // and four in flight at once, as the kernel sends them.
  for (let off = 2 * MiB + MiB / 2; off < a.length; off += 4 * MiB) {
    await Promise.all([0, 1, 2, 3].map((k) => read(off + k * MiB, MiB)));
  }
  // Odd sizes at odd offsets, ends of data runs and holes inside requests, model-checked.
  for (let k = 0; k < 300; k++) await read(rng.int(a.length), 1 + rng.int(MiB + 4096));
  t.equal(bad, 0, 'every read equals the model');
  t.ok(zeroReads > 20, `${zeroReads} all-zero reads`);
  t.equal(zeroBuffers.size, 1, 'every all-zero read was a view of the one shared zero buffer');
});
