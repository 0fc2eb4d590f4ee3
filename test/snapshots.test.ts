// Snapshots, clones and fastcopy through the namespace (real store, real LevelDB).

import t from 'tap';
import { createHash } from 'node:crypto';
import { isVmvaultError } from '../src/errors.js';
import { Namespace } from '../src/namespace/namespace.js';
import { generate, Rng } from './helpers/data.js';
import { openNs as open, readFile, writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

async function patch(ns: Namespace, path: string, edits: Array<{ off: number; data: Buffer }>): Promise<void> {
  const fh = await ns.fs.open(path, 2);
  for (const e of edits) await ns.write(fh, e.off, e.data);
  await ns.fs.release(fh);
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return isVmvaultError(err) ? err.code : String(err);
  }
}

/** A VM-disk-like image: compressible and random regions with zero holes. */
function image(rng: Rng, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let at = 0; at < size; at += MiB) {
    const k = rng.int(4);
    if (k === 0) continue;
    generate(rng, k === 1 ? 'random' : 'text', Math.min(MiB, size - at)).copy(b, at);
  }
  return b;
}

t.test('snapshots keep each point in time; stored bytes grow by the changes only', async (t) => {
  const { store, ns } = await open(t, tmpDir(t));
  const rng = new Rng(11);
  await ns.shares.create('vms');
  const v1 = image(rng, 48 * MiB);
  await writeFile(ns, '/vms/web01.vmdk', v1);
  await ns.snapshots.create('vms', 'nightly-1');
  const before = (await store.stats()).storedBytes;
  const v2 = Buffer.from(v1);
  const edits: Array<{ off: number; data: Buffer }> = [];
  let changed = 0;
  for (let i = 0; i < 40; i++) {
    const data = rng.bytes(rng.range(512, 16384));
    const off = rng.int(v2.length - data.length);
    data.copy(v2, off);
    edits.push({ off, data });
    changed += data.length;
  }
  await patch(ns, '/vms/web01.vmdk', edits);
  await ns.snapshots.create('vms', 'nightly-2');
  const grew = (await store.stats()).storedBytes - before;
  t.equal(sha(await readFile(ns, '/vms/.snapshots/nightly-1/web01.vmdk')), sha(v1), 'the first snapshot holds the first image');
  t.equal(sha(await readFile(ns, '/vms/.snapshots/nightly-2/web01.vmdk')), sha(v2), 'the second snapshot holds the changed image');
  t.equal(sha(await readFile(ns, '/vms/web01.vmdk')), sha(v2), 'the share reads the newest');
  // Each edit rewrites the segments it touches (about 2 x 8 KiB around it) and its tree path.
  const bound = changed + edits.length * 40 * 1024 + 256 * 1024;
  t.ok(grew < bound, `stored bytes grew by ${grew} for ${changed} changed bytes in ${edits.length} edits (bound ${bound})`);
  const list = await ns.snapshots.list('vms');
  t.same(list.map((s) => s.name), ['nightly-1', 'nightly-2']);
  t.equal(list[0].logicalBytes, v1.length);
  t.equal(list[0].files, 1);
});

t.test('clones are independent writable shares that share segments', async (t) => {
  const { store, ns } = await open(t, tmpDir(t));
  const rng = new Rng(12);
  await ns.shares.create('vms');
  const img = image(rng, 24 * MiB);
  await writeFile(ns, '/vms/db.vmdk', img);
  await ns.fs.mkdir('/vms/sub', 0o755);
  await writeFile(ns, '/vms/sub/small.txt', Buffer.from('hello'));
  await ns.snapshots.create('vms', 's1');
  const before = (await store.stats()).storedBytes;
  const clone = await ns.snapshots.clone('vms', 's1', 'vms-test');
  t.same(clone.origin, { share: 'vms', snapshot: 's1' });
  t.equal(clone.files, 2);
  t.equal((await store.stats()).storedBytes, before, 'a clone costs no data');
  const mod = rng.bytes(8192);
  await patch(ns, '/vms-test/db.vmdk', [{ off: 4 * MiB, data: mod }]);
  await writeFile(ns, '/vms-test/new.txt', Buffer.from('only in the clone'));
  await ns.fs.unlink('/vms-test/sub/small.txt');
  const expect = Buffer.from(img);
  mod.copy(expect, 4 * MiB);
  t.equal(sha(await readFile(ns, '/vms-test/db.vmdk')), sha(expect), 'the clone sees its own write');
  t.equal(sha(await readFile(ns, '/vms/db.vmdk')), sha(img), 'the origin share is unchanged');
  t.equal(sha(await readFile(ns, '/vms/.snapshots/s1/db.vmdk')), sha(img), 'the snapshot is unchanged');
  t.equal((await readFile(ns, '/vms/sub/small.txt')).toString(), 'hello', 'a file deleted in the clone stays in the origin');
  t.equal(await code(ns.fs.getattr('/vms/new.txt')), 'NOT_FOUND', 'a file made in the clone is not in the origin');
  const grew = (await store.stats()).storedBytes - before;
  t.ok(grew < 128 * 1024, `the clone's change cost ${grew} bytes`);
  await ns.snapshots.remove('vms', 's1');
  t.equal(sha(await readFile(ns, '/vms-test/db.vmdk')), sha(expect), 'deleting the snapshot does not break the clone');
  t.equal(await code(ns.snapshots.get('vms', 's1')), 'NOT_FOUND');
});

t.test('a snapshot includes data still in write buffers', async (t) => {
  const { ns } = await open(t, tmpDir(t));
  await ns.shares.create('vms');
  const fh = await ns.fs.create('/vms/open.img', 0o644);
  const data = Buffer.alloc(3 * MiB, 7);
  await ns.write(fh, 0, data);
  t.ok(ns.fs.handle(fh).file.dirtyBytes > 0, 'the data is only buffered');
  await ns.snapshots.create('vms', 'while-open');
  await ns.write(fh, 0, Buffer.alloc(MiB, 9));
  await ns.fs.release(fh);
  const snap = await readFile(ns, '/vms/.snapshots/while-open/open.img');
  t.equal(sha(snap), sha(data), 'the snapshot has the buffered bytes, not what came after');
});

t.test('snapshot directories are read-only and .snapshots is reserved', async (t) => {
  const { ns } = await open(t, tmpDir(t));
  await ns.shares.create('vms');
  await writeFile(ns, '/vms/a', Buffer.from('a'));
  await ns.snapshots.create('vms', 's');
  t.equal(await code(ns.fs.create('/vms/.snapshots/s/b', 0o644)), 'READ_ONLY');
  t.equal(await code(ns.fs.unlink('/vms/.snapshots/s/a')), 'READ_ONLY');
  t.equal(await code(ns.fs.open('/vms/.snapshots/s/a', 1)), 'READ_ONLY');
  t.equal(await code(ns.fs.truncate('/vms/.snapshots/s/a', 0)), 'READ_ONLY');
  t.equal(await code(ns.fs.chmod('/vms/.snapshots/s/a', 0o600)), 'READ_ONLY');
  t.equal(await code(ns.fs.rename('/vms/a', '/vms/.snapshots/s/a2')), 'READ_ONLY');
  t.equal(await code(ns.fs.mkdir('/vms/.snapshots', 0o755)), 'ALREADY_EXISTS');
  t.equal(await code(ns.fs.rmdir('/vms/.snapshots')), 'NOT_PERMITTED');
  t.equal(await code(ns.fs.rename('/vms/.snapshots', '/vms/x')), 'NOT_PERMITTED');
  t.equal(await code(ns.fs.rename('/vms/a', '/vms/.snapshots')), 'NOT_PERMITTED');
  t.equal(await code(ns.fs.create('/vms/.snapshots', 0o644)), 'NOT_PERMITTED');
  t.equal(await code(ns.fs.rmdir('/vms/.snapshots/s')), 'NOT_PERMITTED');
  t.same((await ns.fs.readdir('/vms')).map((e) => e.name).sort(), ['.snapshots', 'a']);
  t.same((await ns.fs.readdir('/vms/.snapshots')).map((e) => e.name), ['s']);
  t.same((await ns.fs.readdir('/vms/.snapshots/s')).map((e) => e.name), ['a'], 'a snapshot does not list .snapshots itself');
});

t.test('names are validated with clear errors', async (t) => {
  const { ns } = await open(t, tmpDir(t));
  await ns.shares.create('vms');
  for (const bad of ['', '.hidden', 'a/b', 'x'.repeat(129), 'nul\0x', 'tab\tx', '..']) {
    const c = await code(ns.snapshots.create('vms', bad));
    t.ok(c === 'INVALID_ARGUMENT' || c === 'NAME_TOO_LONG', `snapshot name ${JSON.stringify(bad).slice(0, 20)} refused (${c})`);
  }
  t.equal(await code(ns.snapshots.create('nope', 's')), 'NOT_FOUND');
  await ns.snapshots.create('vms', 'ok');
  t.equal(await code(ns.snapshots.create('vms', 'ok')), 'ALREADY_EXISTS');
  t.equal(await code(ns.snapshots.clone('vms', 'ok', 'vms')), 'ALREADY_EXISTS');
  t.equal(await code(ns.snapshots.clone('vms', 'ok', '.x')), 'INVALID_ARGUMENT');
});

t.test('fastcopy is instant and free, and refuses to overwrite', async (t) => {
  const { store, ns } = await open(t, tmpDir(t));
  const rng = new Rng(13);
  await ns.shares.create('vms');
  const img = image(rng, 16 * MiB);
  await writeFile(ns, '/vms/web01.vmdk', img);
  await ns.fs.mkdir('/vms/copies', 0o755);
  const before = await store.stats();
  const r = await ns.snapshots.fastcopy('vms', 'web01.vmdk', 'copies/web01-copy.vmdk');
  t.equal(r.logicalBytes, img.length);
  t.equal((await store.stats()).storedBytes, before.storedBytes, 'no new space');
  t.equal(sha(await readFile(ns, '/vms/copies/web01-copy.vmdk')), sha(img));
  await patch(ns, '/vms/copies/web01-copy.vmdk', [{ off: 0, data: Buffer.from('changed') }]);
  t.equal(sha(await readFile(ns, '/vms/web01.vmdk')), sha(img), 'the source is independent of the copy');
  t.equal(await code(ns.snapshots.fastcopy('vms', 'web01.vmdk', 'copies/web01-copy.vmdk')), 'ALREADY_EXISTS');
  t.equal(await code(ns.snapshots.fastcopy('vms', '../etc/passwd', 'x')), 'INVALID_ARGUMENT');
  t.equal(await code(ns.snapshots.fastcopy('vms', 'nope', 'x')), 'NOT_FOUND');
  t.equal(await code(ns.snapshots.fastcopy('vms', 'copies', 'copies-too')), 'ok', 'a directory copies as a tree');
  t.same((await ns.fs.readdir('/vms/copies-too')).map((e) => e.name).filter((n) => !n.startsWith('.')), ['web01-copy.vmdk']);
  const fh = await ns.fs.open('/vms/web01.vmdk', 2);
  await ns.write(fh, 0, Buffer.from('buffered'));
  await ns.snapshots.fastcopy('vms', 'web01.vmdk', 'with-buffer.vmdk');
  await ns.fs.release(fh);
  t.equal((await readFile(ns, '/vms/with-buffer.vmdk')).subarray(0, 8).toString(), 'buffered', 'buffered writes to the source are included');
});

t.test('snapshots and clones survive a restart; share delete rules', async (t) => {
  const dir = tmpDir(t);
  let { store, ns } = await open(t, dir);
  await ns.shares.create('vms');
  await writeFile(ns, '/vms/f', Buffer.from('one'));
  await ns.snapshots.create('vms', 's');
  t.equal(await code(ns.shares.remove('vms', { force: false })), 'NOT_EMPTY');
  await ns.close();
  await store.close();
  ({ store, ns } = await open(t, dir));
  t.equal((await readFile(ns, '/vms/.snapshots/s/f')).toString(), 'one');
  await ns.fs.unlink('/vms/f');
  t.equal(await code(ns.shares.remove('vms', { force: false })), 'NOT_EMPTY', 'snapshots keep a share from being deleted');
  t.equal(await code(ns.shares.remove('vms', { force: true })), 'NOT_EMPTY', 'force alone does not delete snapshots');
  await ns.shares.remove('vms', { force: false, deleteSnapshots: true });
  t.equal(await code(ns.shares.get('vms')), 'NOT_FOUND');
  t.same(await ns.shares.list(), []);
});
