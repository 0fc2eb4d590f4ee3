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
