// A file written as a stream may hold only `streamAheadBytes` not yet taken by a commit
// (Namespace.streamAhead): its writer then waits for the commit in flight and the next one. Through the
// mount, every payload the namespace holds keeps a block of the FUSE write ring (128 x 1 MiB)
// until the commit that took it is built; a writer faster than the store (a duplicate pass,
// dd on a busy machine) ran up to the 512 MiB dirty limit ahead, past the ring, and the final
// fsync waited for all of it. Here the writes are handed over like ring payloads (each release
// scribbles over its buffer, as the ring's next write into that block would), so the test checks
// both the bound (buffered bytes and blocks out) and that no byte was given back early.
// Scattered writes (no stream) keep the file commit threshold and are never held.
// A real store and namespace; no mount.

import t from 'tap';
import { createHash } from 'node:crypto';
import { generate, Rng } from './helpers/data.js';
import { openNs, readFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test('a stream waits for its commits once it buffers streamAheadBytes; every byte reads back', async (t) => {
  const { ns } = await openNs(t, tmpDir(t), { streamCommitBytes: 2 * MiB, streamAheadBytes: 8 * MiB });
  await ns.fs.mkdir('/s', 0o755);
  const data = generate(new Rng(16), 'random', 64 * MiB);
  const fh = await ns.fs.create('/s/f', 0o644);
  const f = ns.fs.handle(fh).file;
  let out = 0;
  let maxOut = 0;
  let maxBuffered = 0;
  let maxDirty = 0;
  for (let p = 0; p < data.length; p += MiB) {
    const buf = Buffer.from(data.subarray(p, p + MiB));
    out++;
    let done = false;
    const release = () => {
      if (done) return;
      done = true;
      out--;
      buf.fill(0xee);
    };
    // Awaited one by one, as dd's writes come through FUSE: nothing else paces the writer.
    await ns.write(fh, p, buf, { owned: true, release });
    maxOut = Math.max(maxOut, out);
    maxBuffered = Math.max(maxBuffered, f.buffered);
    maxDirty = Math.max(maxDirty, f.dirtyBytes);
  }
  t.ok(maxDirty <= 9 * MiB, `at most ${maxDirty / MiB} MiB waited for a commit (bound 8 MiB + one write)`);
  // The commit in flight holds at most what the bound let wait, plus the write that crossed it.
  t.ok(maxBuffered <= 18 * MiB, `the stream buffered at most ${maxBuffered / MiB} MiB, committing included`);
  t.ok(maxOut <= 18, `at most ${maxOut} handed-over buffers were held at once`);
  await ns.fs.fsync(fh);
  await ns.fs.release(fh);
  t.equal(out, 0, 'every handed-over buffer was given back');
  t.equal(sha(await readFile(ns, '/s/f')), sha(data), 'the file reads back whole');
});

t.test('scattered writes are not held by the stream bound', async (t) => {
  const { ns } = await openNs(t, tmpDir(t), { streamCommitBytes: 2 * MiB, streamAheadBytes: 8 * MiB });
  await ns.fs.mkdir('/s', 0o755);
  const data = generate(new Rng(17), 'random', MiB);
  const fh = await ns.fs.create('/s/g', 0o644);
  const f = ns.fs.handle(fh).file;
  // 1 MiB every 4 MiB: not a stream (OpenFile.streaming), committed at fileCommitBytes (64 MiB).
  for (let k = 0; k < 16; k++) await ns.write(fh, k * 4 * MiB, data);
  t.equal(f.buffered, 16 * MiB, 'all 16 MiB stay buffered');
  t.notOk(f.commitPending, 'no commit was forced');
  await ns.fs.fsync(fh);
  const back = await ns.fs.read(fh, 12 * 4 * MiB, MiB);
  t.equal(sha(back), sha(data), 'a scattered extent reads back');
  await ns.fs.release(fh);
});
