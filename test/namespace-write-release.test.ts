// Handed-over write buffers come back to their owner (Namespace.write's `release`) only when
// nothing in the namespace reads them any more: the FUSE write ring (native/src/fuse3/ring.c)
// reuses a block as soon as it is released, so a release that comes early lets a later write
// overwrite bytes the file still reads from. Every release here scribbles over its buffer, as
// that later write would: any early release shows up as wrong bytes.

import t from 'tap';
import { createHash } from 'node:crypto';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { generate, Rng } from './helpers/data.js';
import { readFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';
import type { TestT } from './helpers/tap-types.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function open(t: TestT, opts: { streamCommitBytes?: number; fileCommitBytes?: number } = {}) {
  const store = await SegmentStore.open(tmpDir(t));
  const ns = await Namespace.open(store, { ...opts, log: () => {} });
  t.teardown(async () => {
    await ns.close();
    await store.close();
  });
  await ns.fs.mkdir('/s', 0o755);
  return { ns, store };
}

/** A handed-over copy of `src` whose release scribbles over it and counts. */
function handed(src: Buffer, released: number[], id: number): { buf: Buffer; release: () => void } {
  const buf = Buffer.from(src);
  return {
    buf,
    release: () => {
      released.push(id);
      buf.fill(0xee);
    },
  };
}

t.test('owned buffers are released once, after the commit that took them is built', async (t) => {
  const { ns } = await open(t, { streamCommitBytes: 4 * MiB });
  const data = generate(new Rng(11), 'random', 24 * MiB);
  const fh = await ns.fs.create('/s/f', 0o644);
  const released: number[] = [];
  for (let k = 0; k < 24; k++) {
    const { buf, release } = handed(data.subarray(k * MiB, (k + 1) * MiB), released, k);
    await ns.write(fh, k * MiB, buf, { owned: true, release });
  }
  // Overwrites of handed-over extents: the spared parts stay views of the first buffers.
  const patch = generate(new Rng(12), 'random', MiB + 4096);
  const p = handed(patch, released, 100);
  await ns.write(fh, 5 * MiB + 1000, p.buf, { owned: true, release: p.release });
  patch.copy(data, 5 * MiB + 1000);
  // Read back while commits may still be running, then after fsync.
  t.equal(sha(await ns.fs.read(fh, 0, data.length)), sha(data), 'read while committing: every byte as written');
  await ns.fs.fsync(fh);
  t.equal(sha(await ns.fs.read(fh, 0, data.length)), sha(data), 'read after fsync');
  await ns.fs.release(fh);
  t.equal(sha(await readFile(ns, '/s/f')), sha(data), 'read after close');
  t.same([...released].sort((a, b) => a - b), [...Array(24).keys(), 100], 'every buffer released exactly once');
});

t.test('a read still laying a committed map over the store keeps its buffers until it is done', async (t) => {
  const { ns, store } = await open(t, { fileCommitBytes: 64 * MiB });
  const base = generate(new Rng(21), 'random', 4 * MiB);
  const fh = await ns.fs.create('/s/g', 0o644);
  await ns.write(fh, 0, base);
  await ns.fs.fsync(fh);
  const released: number[] = [];
  const fresh = generate(new Rng(22), 'random', MiB);
  const h = handed(fresh, released, 1);
  await ns.write(fh, MiB, h.buf, { owned: true, release: h.release });
  const want = Buffer.from(base);
  fresh.copy(want, MiB);
  // The store's read is held back until the commit is done (a gate, not a timer: under load a
  // commit can outlast any fixed delay, and the read then finished first), so that the commit
  // of the handed-over buffer is built and retires its map while the read still has to lay it
  // over. The commit itself reads nothing from the store here (it would hang on the gate).
  const real = store.readInto.bind(store);
  let delayed = 0;
  let openGate!: () => void;
  const gate = new Promise<void>((r) => (openGate = r));
  store.readInto = ((v, pos, out, rescue) => {
    delayed++;
    return gate.then(() => real(v, pos, out, rescue));
  }) as typeof store.readInto;
  const commit = ns.fs.fsync(fh);
  const read = ns.fs.read(fh, 0, 4 * MiB);
  await commit;
  t.same(released, [], 'the commit is built, but the read in flight holds the buffer');
  t.ok(delayed >= 1, 'the read is waiting on the store');
  openGate();
  const got = await read;
  store.readInto = real;
  t.equal(sha(got), sha(want), 'the read lays the right bytes over what the store held');
  t.same(released, [1], 'released once the read is done');
  await ns.fs.release(fh);
});

t.test('a buffer that is copied or refused is released at once', async (t) => {
  const { ns } = await open(t);
  const fh = await ns.fs.create('/s/h', 0o644);
  const released: number[] = [];
  const small = handed(Buffer.alloc(4096, 7), released, 1);
  await ns.write(fh, 0, small.buf, { owned: false, release: small.release });
  t.same(released, [1], 'copied: released when write returns');
  t.equal((await ns.fs.read(fh, 0, 4096)).every((b) => b === 7), true, 'the copy holds the bytes');
  await ns.fs.release(fh);
  const ro = await ns.fs.open('/s/h', 0);
  const refused = handed(Buffer.alloc(MiB, 9), released, 2);
  await t.rejects(ns.write(ro, 0, refused.buf, { owned: true, release: refused.release }), 'a read-only handle refuses the write');
  t.same(released, [1, 2], 'refused: released at once');
  await ns.fs.release(ro);
});
