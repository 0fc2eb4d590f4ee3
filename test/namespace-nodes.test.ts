// The namespace addressed by node id (what FUSE's low-level API and NFS handles use): ids stable
// across a reopen and shared by hard links, "." and "..", the virtual directories, generations,
// the same refusals as the path API, and records written before parents were kept.

import t from 'tap';
import { Namespace } from '../src/namespace/namespace.js';
import { MOUNT_ROOT_NODE, nodeOf, parseNode } from '../src/namespace/node-id.js';
import { Txn } from '../src/namespace/meta.js';
import { SegmentStore } from '../src/store/store.js';
import { VmvaultError } from '../src/errors.js';
import { openNs, readFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';
import type { TestT } from './helpers/tap-types.js';

const code = (c: string) => (err: unknown) => err instanceof VmvaultError && err.code === c;

async function rejectsCode(t: TestT, p: Promise<unknown>, c: string, what: string): Promise<void> {
  try {
    await p;
    t.fail(`${what}: resolved, expected ${c}`);
  } catch (err) {
    t.ok(code(c)(err), `${what}: ${c}${code(c)(err) ? '' : ` (got ${(err as Error).message})`}`);
  }
}

t.test('lookup, hard links and "..": one node per inode, through every name', async (t) => {
  const { ns } = await openNs(t, tmpDir(t));
  const n = ns.nodes;
  const share = await n.mkdir(MOUNT_ROOT_NODE, 'vms', 0o755);
  t.same(await n.lookup(MOUNT_ROOT_NODE, 'vms'), share, 'mkdir at the top makes a share; lookup finds its root');
  const a = await n.mkdir(share.ino, 'a', 0o750, { uid: 1000, gid: 1000 });
  const b = await n.mkdir(a.ino, 'b', 0o755, { uid: 1000, gid: 1000 });
  t.equal(a.uid, 1000, "the caller's uid owns what it makes");
  t.equal((await n.lookup(a.ino, '.')).ino, a.ino, '"." is the directory itself');
  t.equal((await n.lookup(b.ino, '..')).ino, a.ino, '".." of a/b is a');
  t.equal((await n.lookup(a.ino, '..')).ino, share.ino, '".." of a is the share root');
  t.equal((await n.lookup(share.ino, '..')).ino, MOUNT_ROOT_NODE, '".." of a share root is the top of the mount');
  t.equal(await n.parent(MOUNT_ROOT_NODE), MOUNT_ROOT_NODE, 'the top is its own parent');

  const { attr: f, fh } = await n.create(a.ino, 'disk.raw', 0o644, 2, { uid: 1000, gid: 1000 });
  await ns.write(fh, 0, Buffer.from('hello'));
  await ns.fs.release(fh);
  const l = await n.link(f.ino, b.ino, 'again.raw');
  t.equal(l.ino, f.ino, 'a hard link has the same node id');
  t.equal(l.nlink, 2, 'and its link count says 2');
  const fh2 = await n.open(l.ino, 2);
  await ns.write(fh2, 5, Buffer.from(' world'));
  t.equal((await n.lookup(a.ino, 'disk.raw')).size, 11, 'a write through one name shows at once through the other');
  await ns.fs.release(fh2);
  t.equal((await readFile(ns, '/vms/a/disk.raw')).toString(), 'hello world', 'the path API reads the same file');

  const names = (await n.readdir(share.ino)).map((e) => e.name);
  t.same(names, ['.', '..', '.snapshots', 'a'], 'a share root lists ".", "..", .snapshots and its entries');
  const plus = await n.readdir(a.ino, true);
  t.same(
    plus.map((e) => [e.name, e.ino === e.attr?.ino]),
    [['.', true], ['..', true], ['b', true], ['disk.raw', true]],
    'readdirplus gives each entry its attributes',
  );

  await rejectsCode(t, n.rename(share.ino, 'a', b.ino, 'a'), 'INVALID_ARGUMENT', 'moving a directory into its own subtree');
  await n.rename(b.ino, 'again.raw', share.ino, 'moved.raw');
  await rejectsCode(t, n.rename(share.ino, 'moved.raw', a.ino, 'disk.raw', 1), 'ALREADY_EXISTS', 'RENAME_NOREPLACE onto an existing name');
  await n.rename(a.ino, 'b', share.ino, 'b2');
  t.equal(await n.parent(b.ino), share.ino, '".." follows a directory that moved');
  t.equal((await ns.fs.getattr('/vms/b2')).nlink, 2, 'the path API sees the move');

  await rejectsCode(t, n.mknod(a.ino, 'fifo', 0o010644), 'NOT_PERMITTED', 'mknod of a FIFO');
  await rejectsCode(t, n.lookup(a.ino, 'x'.repeat(256)), 'NAME_TOO_LONG', 'a 256-byte name');
  await rejectsCode(t, n.create(MOUNT_ROOT_NODE, 'f', 0o644, 2), 'NOT_PERMITTED', 'a file at the top of the mount');
  await n.unlink(a.ino, 'disk.raw');
  t.equal((await n.getattr(f.ino)).nlink, 1, 'unlinking one name leaves the other');
  await n.unlink(share.ino, 'moved.raw');
  await rejectsCode(t, n.getattr(f.ino), 'NOT_FOUND', 'the last unlink removes the node');
});

t.test('setgid directories, setattr, and a file unlinked while open', async (t) => {
  const { ns } = await openNs(t, tmpDir(t));
  const n = ns.nodes;
  const share = await n.mkdir(MOUNT_ROOT_NODE, 's', 0o755);
  const g = await n.mkdir(share.ino, 'g', 0o2775, { uid: 0, gid: 50 });
  const sub = await n.mkdir(g.ino, 'sub', 0o755, { uid: 1000, gid: 1000 });
  t.equal(sub.gid, 50, 'a setgid directory hands down its group');
  t.equal(sub.mode & 0o2000, 0o2000, 'and its setgid bit to subdirectories');
  const { attr, fh } = await n.create(g.ino, 'f', 0o600, 2, { uid: 1000, gid: 1000 });
  t.equal(attr.gid, 50, 'files too');
  const changed = await n.setattr(attr.ino, { mode: 0o640, uid: 7, mtime: 1_000_000, size: 4096 }, fh);
  t.same([changed.mode & 0o7777, changed.uid, changed.mtime, changed.size], [0o640, 7, 1_000_000, 4096], 'setattr changes mode, owner, time and size');
  await n.unlink(g.ino, 'f');
  await ns.write(fh, 0, Buffer.from('still here'));
  const open = await n.getattr(attr.ino, fh);
  t.same([open.nlink, open.size], [0, 4096], 'an unlinked open file still answers getattr, nlink 0');
  t.equal((await ns.fs.read(fh, 0, 10)).toString(), 'still here', 'and reads');
  await ns.fs.release(fh);
});

t.test('snapshots: node ids of their own, read-only, ".." back to .snapshots', async (t) => {
  const { ns } = await openNs(t, tmpDir(t));
  const n = ns.nodes;
  const share = await n.mkdir(MOUNT_ROOT_NODE, 'vm', 0o755);
  const d = await n.mkdir(share.ino, 'd', 0o755);
  const { fh } = await n.create(d.ino, 'img', 0o644, 2);
  await ns.write(fh, 0, Buffer.from('v1'));
  await ns.fs.release(fh);
  await ns.snapshots.create('vm', 'monday');
  const snapdir = await n.lookup(share.ino, '.snapshots');
  t.equal(snapdir.mode & 0o777, 0o555, '.snapshots is a read-only directory');
  t.same((await n.readdir(snapdir.ino)).map((e) => e.name), ['.', '..', 'monday'], '.snapshots lists the snapshots');
  const mon = await n.lookup(snapdir.ino, 'monday');
  t.not(mon.ino, share.ino, 'a snapshot root is another node than the share root');
  t.equal(await n.parent(mon.ino), snapdir.ino, '".." of a snapshot root is .snapshots');
  t.equal(await n.parent(snapdir.ino), share.ino, '".." of .snapshots is the share root');
  t.same((await n.readdir(mon.ino)).map((e) => e.name), ['.', '..', 'd'], 'a snapshot root has no .snapshots of its own');
  const sd = await n.lookup(mon.ino, 'd');
  const img = await n.lookup(sd.ino, 'img');
  t.equal(parseNode(img.ino).kind, 'vol');
  await rejectsCode(t, n.create(sd.ino, 'new', 0o644, 2), 'READ_ONLY', 'creating inside a snapshot');
  await rejectsCode(t, n.setattr(img.ino, { mode: 0o600 }), 'READ_ONLY', 'chmod inside a snapshot');
  await rejectsCode(t, n.open(img.ino, 2), 'READ_ONLY', 'opening a snapshot file for writing');
  await rejectsCode(t, n.mkdir(snapdir.ino, 'x', 0o755), 'READ_ONLY', 'mkdir in .snapshots');
  await rejectsCode(t, n.rmdir(snapdir.ino, 'monday'), 'NOT_PERMITTED', 'rmdir of a snapshot');
  await rejectsCode(t, n.unlink(share.ino, '.snapshots'), 'IS_DIRECTORY', 'unlink of .snapshots');
  const rfh = await n.open(img.ino, 0);
  t.equal((await ns.fs.read(rfh, 0, 2)).toString(), 'v1', 'a snapshot file opens read-only and reads');
  await ns.fs.release(rfh);
});

t.test('node ids and generations survive a reopen; a new run gets a new generation', async (t) => {
  const dir = tmpDir(t);
  let ids: bigint[];
  let gen: number;
  {
    const store = await SegmentStore.open(dir);
    const ns = await Namespace.open(store, { log: () => {} });
    const share = await ns.nodes.mkdir(MOUNT_ROOT_NODE, 'keep', 0o755);
    const d = await ns.nodes.mkdir(share.ino, 'd', 0o755);
    const { attr, fh } = await ns.nodes.create(d.ino, 'f', 0o644, 2);
    await ns.fs.fsync(fh);
    await ns.fs.release(fh);
    ids = [share.ino, d.ino, attr.ino];
    gen = attr.generation;
    t.ok(gen > 0, 'a new inode has a generation');
    await ns.close();
    await store.close();
  }
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {} });
  t.teardown(async () => {
    await ns.close();
    await store.close();
  });
  const share = await ns.nodes.lookup(MOUNT_ROOT_NODE, 'keep');
  const d = await ns.nodes.lookup(share.ino, 'd');
  const f = await ns.nodes.lookup(d.ino, 'f');
  t.same([share.ino, d.ino, f.ino], ids, 'the same node ids after a reopen');
  t.equal(f.generation, gen, 'the same generation');
  t.equal(await ns.nodes.parent(d.ino), share.ino, '".." by node id alone after a reopen (what an NFS handle needs)');
  const { attr: g, fh } = await ns.nodes.create(d.ino, 'g', 0o644, 2);
  await ns.fs.release(fh);
  t.ok(g.generation > gen, 'an inode made in a later run has a later generation');
  await rejectsCode(t, ns.nodes.getattr(nodeOf(999, 1)), 'NOT_FOUND', 'a node of a volume that does not exist');
  await rejectsCode(t, ns.nodes.getattr(nodeOf(Number(share.ino >> 40n), 99_999)), 'NOT_FOUND', 'an inode that does not exist');
});

t.test('".." of a directory whose record predates stored parents is found by scanning', async (t) => {
  const { ns } = await openNs(t, tmpDir(t));
  const n = ns.nodes;
  const share = await n.mkdir(MOUNT_ROOT_NODE, 'old', 0o755);
  const a = await n.mkdir(share.ino, 'a', 0o755);
  const b = await n.mkdir(a.ino, 'b', 0o755);
  // Rewrite b as a version-1 writer did: no parent field.
  const vol = Number(b.ino >> 40n);
  const ino = Number(b.ino & 0xffffffffffn);
  const inode = await ns.ctx.meta.mustInode(vol, ino);
  const { parent: _gone, ...old } = inode;
  const txn = new Txn();
  txn.putInode(vol, old);
  await ns.ctx.meta.apply(txn);
  ns.ctx.meta.forgetVolume(vol);
  t.equal((await ns.ctx.meta.mustInode(vol, ino)).parent, undefined, 'the record has no parent');
  t.equal(await n.parent(b.ino), a.ino, '".." is still a');
});

t.test('a fastcopied directory is a new object: its own "..", a current generation', async (t) => {
  const { ns } = await openNs(t, tmpDir(t));
  const n = ns.nodes;
  const share = await n.mkdir(MOUNT_ROOT_NODE, 'fc', 0o755);
  const src = await n.mkdir(share.ino, 'src', 0o755);
  await n.mkdir(src.ino, 'inner', 0o755);
  const dst = await n.mkdir(share.ino, 'dst', 0o755);
  await ns.fastcopy.copy('fc/src', 'fc/dst/copy');
  const copy = await n.lookup(dst.ino, 'copy');
  const inner = await n.lookup(copy.ino, 'inner');
  t.equal(await n.parent(copy.ino), dst.ino, '".." of the copy is where it was put');
  t.equal(await n.parent(inner.ino), copy.ino, '".." of a directory inside the copy is the copy');
  t.equal(copy.generation, ns.ctx.epoch, 'the copy has this run\'s generation');
});
