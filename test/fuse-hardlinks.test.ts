// Hard links through the mount: link(2), link counts, data written through one name read through
// another, unlink of one name keeping the data, rename over a link, and all of it after a
// restart.
//
// The kernel caches each name separately: libfuse's high-level API gives every path its own
// kernel node, so after a change through one name the kernel may answer stat or read through
// another name from that name's own cached attributes (size, nlink, mtime) for up to the
// attribute timeout (attr_timeout=1 s). Checks through another name therefore wait 1.2 s first;
// checks through the name that made the change need no wait.

import t from 'tap';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Appliance, startAppliance } from './helpers/appliance.js';
import { Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

const ATTR_TIMEOUT_WAIT_MS = 1200;

t.test('hard links through the mount', async (t) => {
  const dir = tmpDir(t);
  let app: Appliance = await startAppliance(t, dir);
  t.equal((await app.api('POST', '/shares', { name: 'hl' })).status, 201, 'share hl created');
  const p = (...rel: string[]) => path.join(app.mount, 'hl', ...rel);
  const rng = new Rng(99);
  const nlink = async (...rel: string[]) => (await fs.stat(p(...rel))).nlink;

  await fs.mkdir(p('d1'));
  await fs.mkdir(p('d2'));
  const v1 = rng.bytes(300_000);
  await fs.writeFile(p('d1', 'a'), v1);
  t.equal(await nlink('d1', 'a'), 1, 'a new file has one link');

  await fs.link(p('d1', 'a'), p('d1', 'b'));
  await fs.link(p('d1', 'a'), p('d2', 'c'));
  t.equal(await nlink('d2', 'c'), 3, 'the newest name sees nlink 3 at once');
  await sleep(ATTR_TIMEOUT_WAIT_MS);
  t.same([await nlink('d1', 'a'), await nlink('d1', 'b'), await nlink('d2', 'c')], [3, 3, 3], 'every name counts 3 links');
  t.same((await fs.readFile(p('d2', 'c'))).equals(v1), true, 'the new names read the same bytes');
  const names = (await fs.readdir(p('d1'))).sort();
  t.same(names, ['a', 'b'], 'both names are listed');
  await t.rejects(fs.link(p('d1', 'a'), p('d1', 'b')), { code: 'EEXIST' }, 'link to a name that exists: EEXIST');
  await t.rejects(fs.link(p('d1'), p('d1-link')), { code: 'EPERM' }, 'link of a directory: EPERM');

  // Writes through one name, seen through the others.
  const patch = rng.bytes(70_000);
  const fh = await fs.open(p('d1', 'b'), 'r+');
  await fh.write(patch, 0, patch.length, 100_000);
  await fh.write(Buffer.from('tail'), 0, 4, 400_000);
  await fh.close();
  const v2 = Buffer.alloc(400_004);
  v1.copy(v2);
  patch.copy(v2, 100_000);
  Buffer.from('tail').copy(v2, 400_000);
  t.ok((await fs.readFile(p('d1', 'b'))).equals(v2), 'the writing name reads its write at once');
  await sleep(ATTR_TIMEOUT_WAIT_MS);
  t.ok((await fs.readFile(p('d1', 'a'))).equals(v2), 'a reads the write made through b (size grew to 400004)');
  t.ok((await fs.readFile(p('d2', 'c'))).equals(v2), 'c, in another directory, reads it too');
  const [sa, sb, sc] = await Promise.all([fs.stat(p('d1', 'a')), fs.stat(p('d1', 'b')), fs.stat(p('d2', 'c'))]);
  t.same([sa.size, sc.size, Math.floor(sa.mtimeMs), Math.floor(sc.mtimeMs)], [sb.size, sb.size, Math.floor(sb.mtimeMs), Math.floor(sb.mtimeMs)], 'size and mtime agree across names');

  // chmod through one name is the file's mode.
  await fs.chmod(p('d2', 'c'), 0o600);
  await sleep(ATTR_TIMEOUT_WAIT_MS);
  t.equal((await fs.stat(p('d1', 'a'))).mode & 0o7777, 0o600, 'chmod through c is seen through a');

  // Unlink one name: the data stays under the others.
  await fs.unlink(p('d1', 'a'));
  await sleep(ATTR_TIMEOUT_WAIT_MS);
  t.same([await nlink('d1', 'b'), await nlink('d2', 'c')], [2, 2], 'after unlinking a, two links remain');
  t.ok((await fs.readFile(p('d1', 'b'))).equals(v2), 'b still holds the data');
  await t.rejects(fs.stat(p('d1', 'a')), { code: 'ENOENT' }, 'a is gone');

  // Rename over a link: the replaced name's file loses one link, the moved file keeps its own.
  const other = rng.bytes(5000);
  await fs.writeFile(p('d2', 'other'), other);
  await fs.rename(p('d2', 'other'), p('d1', 'b'));
  await sleep(ATTR_TIMEOUT_WAIT_MS);
  t.ok((await fs.readFile(p('d1', 'b'))).equals(other), 'b now names the renamed file');
  t.equal(await nlink('d1', 'b'), 1, 'which has one link');
  t.equal(await nlink('d2', 'c'), 1, 'c lost the link b held');
  t.ok((await fs.readFile(p('d2', 'c'))).equals(v2), 'c keeps the data');
  // Renaming one name of a file onto another name of the same file does nothing (POSIX).
  await fs.link(p('d2', 'c'), p('d2', 'c2'));
  await fs.rename(p('d2', 'c'), p('d2', 'c2'));
  await sleep(ATTR_TIMEOUT_WAIT_MS);
  t.same((await fs.readdir(p('d2'))).sort(), ['c', 'c2'], 'rename between two names of one file leaves both');
  t.same([await nlink('d2', 'c'), await nlink('d2', 'c2')], [2, 2], 'and both links');

  // A link written through while the other name is open.
  const fa = await fs.open(p('d2', 'c'), 'r');
  await fs.appendFile(p('d2', 'c2'), 'appended');
  await sleep(ATTR_TIMEOUT_WAIT_MS);
  const whole = await fs.readFile(p('d2', 'c'));
  await fa.close();
  t.ok(whole.equals(Buffer.concat([v2, Buffer.from('appended')])), 'an append through c2 is read through c');

  const expect = {
    'd1/b': { data: other, nlink: 1 },
    'd2/c': { data: Buffer.concat([v2, Buffer.from('appended')]), nlink: 2 },
    'd2/c2': { data: Buffer.concat([v2, Buffer.from('appended')]), nlink: 2 },
  };
  t.equal(await app.stop(), 0, 'the appliance stops cleanly');
  app = await startAppliance(t, dir);
  for (const [rel, e] of Object.entries(expect)) {
    const st = await fs.stat(p(rel));
    t.equal(st.nlink, e.nlink, `after a restart ${rel} has ${e.nlink} link(s)`);
    t.ok((await fs.readFile(p(rel))).equals(e.data), `after a restart ${rel} holds its bytes`);
  }
  t.equal((await fs.stat(p('d2', 'c'))).mode & 0o7777, 0o600, 'after a restart the mode set through one name');
  // And links keep working after the restart: the last name removed frees the file.
  await fs.writeFile(p('d2', 'c'), 'rewritten through c');
  await sleep(ATTR_TIMEOUT_WAIT_MS);
  t.equal(await fs.readFile(p('d2', 'c2'), 'utf8'), 'rewritten through c', 'a rewrite (O_TRUNC) through c is read through c2');
  await fs.unlink(p('d2', 'c'));
  await fs.unlink(p('d2', 'c2'));
  t.same((await fs.readdir(p('d2'))).sort(), [], 'd2 is empty once both names are gone');
  const stats = (await app.api('GET', '/shares/hl')).body as { files: number };
  t.equal(stats.files, 1, 'the share counts one file left (d1/b): the linked file was counted once and freed once');
  t.equal(await app.stop(), 0, 'the appliance stops cleanly again');
});
