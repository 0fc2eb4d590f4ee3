// The small state files' rewrite (src/files/atomic-file.ts): the new text replaces the old whole,
// a new file is private, and a failed write leaves the old file as it was, no temporary file
// behind, and a typed error that names what was being written.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../src/files/atomic-file.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('replaces the file whole; a new file is 0600; the directory can be made', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'sub', 'state.json');
  await writeFileAtomic(file, '{"v":1}\n', 'writing the state', { mkdir: true });
  t.equal(fs.readFileSync(file, 'utf8'), '{"v":1}\n');
  t.equal(fs.statSync(file).mode & 0o777, 0o600);
  await writeFileAtomic(file, '{"v":2}\n');
  t.equal(fs.readFileSync(file, 'utf8'), '{"v":2}\n');
  t.same(fs.readdirSync(path.dirname(file)), ['state.json'], 'no temporary file left');
});

t.test('a failed write keeps the old file and says what failed', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'state.json');
  fs.writeFileSync(file, 'old\n');
  fs.mkdirSync(`${file}.tmp`); // the temporary file cannot be opened for writing, even by root
  await t.rejects(writeFileAtomic(file, 'new\n', 'writing the test state'), { code: 'IO', message: /^writing the test state: / });
  t.equal(fs.readFileSync(file, 'utf8'), 'old\n', 'the old file is untouched');
  await t.rejects(writeFileAtomic(path.join(dir, 'missing', 'x.json'), 'x'), { code: 'IO', message: /^writing .*missing\/x\.json: / }, 'no directory and no mkdir: IO');
});
