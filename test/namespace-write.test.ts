// Writes through the namespace the way FUSE makes them (128 KiB requests), with commits
// landing while the file is open: every byte reads back, before and after close.

import t from 'tap';
import { createHash } from 'node:crypto';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { generate, Rng } from './helpers/data.js';
import { readFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';
import type { TestT } from './helpers/tap-types.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const REQ = 128 * KiB;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function openStore(t: TestT, opts: { fileCommitBytes: number; dirtyLimitBytes: number }) {
  const store = await SegmentStore.open(tmpDir(t));
  const ns = await Namespace.open(store, { ...opts, log: () => {} });
  t.teardown(async () => {
    await ns.close();
    await store.close();
  });
  return ns;
}

t.test('a read while commits land sees every byte written before it', async (t) => {
  // Small commit sizes: the read of the store is slower than the commits that land during it
  // (the one in progress, then one of the bytes that were dirty when the read began).
  const ns = await openStore(t, { fileCommitBytes: 1 * MiB, dirtyLimitBytes: 2 * MiB });
  await ns.fs.mkdir('/s', 0o755);
  const data = generate(new Rng(5), 'random', 16 * MiB);
  const fh = await ns.fs.create('/s/r', 0o644);
  for (let at = 0; at < data.length; at += REQ) await ns.write(fh, at, data.subarray(at, at + REQ));
  const got = await ns.fs.read(fh, 0, data.length);
  let first = -1;
  for (let i = 0; i < data.length && first < 0; i++) if (got[i] !== data[i]) first = i;
  t.equal(first, -1, 'no byte differs');
  t.equal(sha(got), sha(data));
  await ns.fs.release(fh);
  t.equal(sha(await readFile(ns, '/s/r')), sha(data), 'read back after close');
});

t.test('a sequential stream commits in small steps while it is written; scattered writes wait for the threshold', async (t) => {
  const store = await SegmentStore.open(tmpDir(t));
  const ns = await Namespace.open(store, { fileCommitBytes: 64 * MiB, streamCommitBytes: 4 * MiB, dirtyLimitBytes: 512 * MiB, log: () => {} });
  t.teardown(async () => {
    await ns.close();
    await store.close();
  });
  await ns.fs.mkdir('/s', 0o755);
  const data = generate(new Rng(7), 'random', 24 * MiB);

  // A stream: a commit starts once 4 MiB are buffered, long before the 64 MiB threshold.
  const seq = await ns.fs.create('/s/seq', 0o644);
  for (let at = 0; at < data.length; at += REQ) await ns.write(seq, at, data.subarray(at, at + REQ));
  const sf = ns.fs.handle(seq).file;
  await sf.settled();
  t.ok(sf.base.size >= 4 * MiB, `the stream was committed while written (committed version: ${sf.base.size} bytes)`);
  t.ok(sf.dirtyBytes < data.length, 'not everything waits for the close');

  // Scattered writes (256 KiB every 2 MiB, as an incremental backup's dirty runs): no commit
  // before the threshold, so neighbouring runs still coalesce into one commit.
  const sc = await ns.fs.create('/s/scattered', 0o644);
  const PIECE = 256 * KiB;
  const piece = (k: number) => data.subarray(k * PIECE, (k + 1) * PIECE);
  for (let k = 0; k < 32; k++) await ns.write(sc, k * 2 * MiB, piece(k));
  const cf = ns.fs.handle(sc).file;
  await cf.settled();
  t.equal(cf.base.size, 0, 'scattered writes are not committed before the threshold');
  t.equal(cf.dirtyBytes, 8 * MiB);

  // The same scattered writes from a copy that writes each byte once (a backup's `once`):
  // committed in stream steps behind the writes, so little is left for the close.
  const once = await ns.fs.create('/s/once', 0o644);
  for (let k = 0; k < 32; k++) await ns.write(once, k * 2 * MiB, piece(k), { once: true });
  const of = ns.fs.handle(once).file;
  await of.settled();
  t.ok(of.base.size >= 4 * MiB, `scattered writes marked once were committed while written (committed version: ${of.base.size} bytes)`);
  t.ok(of.dirtyBytes < 8 * MiB, `not everything waits for the close (${of.dirtyBytes} bytes dirty)`);

  await ns.fs.release(seq);
  await ns.fs.release(sc);
  await ns.fs.release(once);
  t.equal(sha(await readFile(ns, '/s/seq')), sha(data), 'the stream reads back whole');
  for (const name of ['scattered', 'once']) {
    // Only the written pieces (and a hole's bytes before each) are read: the whole files are 62 MiB.
    const fh = await ns.fs.open(`/s/${name}`, 0);
    let bad = 0;
    try {
      for (let k = 0; k < 32; k++) {
        const at = k * 2 * MiB;
        const got = await ns.fs.read(fh, at - (k > 0 ? KiB : 0), PIECE + (k > 0 ? KiB : 0));
        const hole = k > 0 ? got.subarray(0, KiB) : Buffer.alloc(0);
        if (!got.subarray(hole.length).equals(piece(k)) || hole.some((b) => b !== 0)) bad++;
      }
    } finally {
      await ns.fs.release(fh);
    }
    t.equal(bad, 0, `every ${name} piece reads back`);
  }
});
