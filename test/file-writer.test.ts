// files/file-writer.ts and the addon's writer thread (native/src/file_writer.c): writes land in
// order at their positions, zero 64 KiB blocks stay holes, aligned chunks go direct and the rest
// the ordinary way, and a failed write fails every later one, unwritten (real files in /tmp,
// ext4 here).

import t from 'tap';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { alignedBuffer, fileWriterAvailable, openFileWriter } from '../src/files/file-writer.js';
import { generate, Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

t.ok(fileWriterAvailable, 'the addon is built with the file writer (node tools/build-native.js)');

t.test('chunks land in order, zero blocks stay holes, aligned ones go direct', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'out.raw');
  const plain = await fsp.open(file, 'wx', 0o600);
  t.teardown(() => plain.close().catch(() => {}));
  await plain.truncate(8 * MiB + 100);
  const w = (await openFileWriter(file, plain))!;
  const rng = new Rng(3);
  const a = alignedBuffer(2 * MiB);
  generate(rng, 'random', 2 * MiB).copy(a);
  a.fill(0, MiB, MiB + 128 * 1024); // two zero 64 KiB blocks: not written
  const b = alignedBuffer(MiB);
  generate(rng, 'text', MiB).copy(b);
  // Unaligned memory and position: the ordinary descriptor.
  const c = Buffer.allocUnsafe(4096 + 100);
  generate(rng, 'random', c.length).copy(c);
  const odd = c.subarray(3);
  // Aligned memory and position, a length off the block: its whole blocks direct, the rest not.
  const d = alignedBuffer(8192 + 100);
  generate(rng, 'random', d.length).copy(d);
  await Promise.all([w.write(a, 0), w.write(b, 4 * MiB), w.write(odd, 8 * MiB + 100 - odd.length), w.write(d, 6 * MiB)]);
  await w.close();
  t.same(w.written, { direct: 3 * MiB - 128 * 1024 + 8192, plain: odd.length + 100 }, 'aligned blocks direct, less the zero blocks; the rest plain');
  await plain.sync();
  const got = fs.readFileSync(file);
  const want = Buffer.alloc(8 * MiB + 100);
  a.copy(want, 0);
  b.copy(want, 4 * MiB);
  odd.copy(want, want.length - odd.length);
  d.copy(want, 6 * MiB);
  t.ok(got.equals(want), 'every byte where it was written, zeros elsewhere');
  t.ok(fs.statSync(file).blocks * 512 <= 3 * MiB - 128 * 1024 + 32 * 1024, `holes stay holes: ${fs.statSync(file).blocks * 512} bytes allocated`);
  await t.rejects(w.write(b, 0), /closed/, 'no write after close');
});

t.test('a failed write fails the later ones, unwritten', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'ro.raw');
  fs.writeFileSync(file, Buffer.alloc(0));
  // Read-only descriptors: every pwrite fails with EBADF.
  const plain = await fsp.open(file, 'r');
  t.teardown(() => plain.close().catch(() => {}));
  const w = (await openFileWriter(file, plain, { direct: false }))!;
  const buf = alignedBuffer(64 * 1024).fill(1);
  const first = await w.write(buf, 0).catch((e: NodeJS.ErrnoException) => e);
  t.equal((first as NodeJS.ErrnoException).code, 'EBADF', 'the kernel\'s error, as fs gives them');
  t.match((first as Error).message, /ro\.raw at 0/, 'names the file and position');
  const later = await w.write(buf, 65536).catch((e: NodeJS.ErrnoException) => e);
  t.equal((later as NodeJS.ErrnoException).code, 'EBADF', 'a later write fails with the first error');
  await w.close();
  t.same(w.written, { direct: 0, plain: 0 });
});
