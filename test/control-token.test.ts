// The API token file: made once, private, never half-written, shared by racing first starts.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ensureToken, readToken, TOKEN_FILE } from '../src/control/token.js';
import { isVmvaultError } from '../src/errors.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('first start creates a 0600 file of 32 random bytes in hex; later starts read it', async (t) => {
  const dir = tmpDir(t);
  const first = await ensureToken(dir);
  t.equal(first.created, true);
  t.match(first.token, /^[0-9a-f]{64}$/);
  t.equal(first.file, path.join(dir, TOKEN_FILE));
  t.equal(fs.statSync(first.file).mode & 0o777, 0o600);
  t.equal(fs.readFileSync(first.file, 'utf8'), `${first.token}\n`);
  const again = await ensureToken(dir);
  t.same(again, { token: first.token, file: first.file, created: false });
  t.equal(await readToken(dir), first.token);
  t.same(fs.readdirSync(dir), [TOKEN_FILE], 'no temporary files left behind');
});

t.test('two different data directories get different tokens', async (t) => {
  const a = await ensureToken(tmpDir(t));
  const b = await ensureToken(tmpDir(t));
  t.not(a.token, b.token);
});

t.test('racing first starts agree on one token', async (t) => {
  const dir = tmpDir(t);
  const results = await Promise.all(Array.from({ length: 8 }, () => ensureToken(dir)));
  const tokens = new Set(results.map((r) => r.token));
  t.equal(tokens.size, 1, 'everyone uses the same token');
  t.equal(results.filter((r) => r.created).length, 1, 'exactly one created it');
  t.equal(await readToken(dir), [...tokens][0]);
});

t.test('a token file with loose permissions is made private again', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, TOKEN_FILE);
  fs.writeFileSync(file, 'my-own-token-0123456789\n', { mode: 0o644 });
  fs.chmodSync(file, 0o644);
  const got = await ensureToken(dir);
  t.equal(got.token, 'my-own-token-0123456789', 'a person may choose their own token');
  t.equal(fs.statSync(file).mode & 0o777, 0o600);
});

t.test('readToken: absent is undefined, garbage is a clear error', async (t) => {
  const dir = tmpDir(t);
  t.equal(await readToken(dir), undefined);
  fs.writeFileSync(path.join(dir, TOKEN_FILE), 'short\n');
  await t.rejects(readToken(dir), { code: 'INVALID_ARGUMENT', message: /does not hold a token/ });
  fs.writeFileSync(path.join(dir, TOKEN_FILE), 'has a space in it 0123456789\n');
  await t.rejects(readToken(dir), { code: 'INVALID_ARGUMENT' });
});

t.test('a missing data directory is an IO error naming the file', async (t) => {
  const dir = path.join(tmpDir(t), 'nope');
  try {
    await ensureToken(dir);
    t.fail('should fail');
  } catch (err) {
    t.ok(isVmvaultError(err, 'IO'));
    t.match((err as Error).message, /api-token/);
  }
});
