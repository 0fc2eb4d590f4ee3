// files/writeback.ts: the addon's startWriteback really calls sync_file_range on the file it is
// given (the kernel's errors come back through the strict form), and the plain form never fails.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startWriteback, startWritebackStrict, writebackAvailable } from '../src/files/writeback.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('sync_file_range on written ranges; kernel errors come back, the hint swallows them', async (t) => {
  t.ok(writebackAvailable, 'the addon is built with startWriteback (node tools/build-native.js)');
  const dir = tmpDir(t);
  const file = path.join(dir, 'f');
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, Buffer.alloc(4 << 20, 0x5a), 0, 4 << 20, 0);
    await startWritebackStrict(fd, 0, 4 << 20);
    await startWritebackStrict(fd, 1 << 20, 0); // length 0: to the end of the file
    fs.fsyncSync(fd);
    t.equal(fs.readFileSync(file).equals(Buffer.alloc(4 << 20, 0x5a)), true, 'the file reads back as written');
  } finally {
    fs.closeSync(fd);
  }
  // A closed descriptor: EBADF, so the call reached the kernel with the fd it was given.
  const bad = await startWritebackStrict(fd, 0, 4096).catch((e: Error & { errno?: number }) => e);
  t.ok(bad instanceof Error, 'a closed fd is refused');
  t.equal((bad as { errno?: number }).errno, 9, 'EBADF');
  // A pipe has no page cache to write: ESPIPE.
  const [r, w] = pipe(dir);
  try {
    const e = await startWritebackStrict(w, 0, 4096).catch((x: Error & { errno?: number }) => x);
    t.equal((e as { errno?: number }).errno, 29, 'ESPIPE on a pipe');
    await t.resolves(startWriteback(w, 0, 4096), 'the hint form never rejects');
  } finally {
    fs.closeSync(r);
    fs.closeSync(w);
  }
  await t.rejects(startWritebackStrict(-1, 0, 1), RangeError, 'a negative fd is refused before any call');
});

/** A pipe's two ends (read, write): a FIFO in `dir`, both ends opened without blocking. */
function pipe(dir: string): [number, number] {
  const fifo = path.join(dir, 'p');
  execFileSync('mkfifo', [fifo]);
  const r = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const w = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  return [r, w];
}
