// Fastcopy out of snapshots and across shares (issue 10: restore a file or a directory from a
// snapshot without a full copy), through the namespace on a real store and real LevelDB: the
// copy reads back byte for byte, the snapshot is unchanged, stored bytes do not grow, and the
// copy outlives its source's snapshot through GC and a restart.

import t from 'tap';
import { createHash } from 'node:crypto';
import { isVmvaultError } from '../src/errors.js';
import { runGc, runVerify } from '../src/namespace/maintenance.js';
import type { Namespace } from '../src/namespace/namespace.js';
import { generate, Rng } from './helpers/data.js';
import { openNs as open, readFile, writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return isVmvaultError(err) ? `${err.code}: ${err.message}` : String(err);
  }
}

/** Every entry below `root`: path -> "dir" | "link -> target" | content hash; with link counts of files. */
async function tree(ns: Namespace, root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string, rel: string) => {
    for (const { name } of await ns.fs.readdir(dir)) {
      if (name === '.' || name === '..' || name === '.snapshots') continue;
      const p = `${dir}/${name}`;
      const r = rel ? `${rel}/${name}` : name;
      const a = await ns.fs.getattr(p);
      if ((a.mode & 0o170000) === 0o040000) {
        out[r] = `dir nlink ${a.nlink}`;
        await walk(p, r);
      } else if ((a.mode & 0o170000) === 0o120000) out[r] = `link -> ${await ns.fs.readlink(p)}`;
      else out[r] = `${sha(await readFile(ns, p))} nlink ${a.nlink} mode ${(a.mode & 0o7777).toString(8)}`;
    }
  };
  await walk(root, '');
  return out;
}

t.test('restore a file and a directory tree from a snapshot, and copy across shares', async (t) => {
  const dir = tmpDir(t);
  let { store, ns } = await open(t, dir);
  const rng = new Rng(21);
  await ns.shares.create('vms');
  await ns.shares.create('restore');
  const disk = generate(rng, 'text', 8 * MiB);
  await writeFile(ns, '/vms/web01.vmdk', disk);
  await ns.fs.mkdir('/vms/cfg', 0o750);
  await ns.fs.mkdir('/vms/cfg/sub', 0o755);
  await writeFile(ns, '/vms/cfg/vm.json', Buffer.from('{"name":"web01"}'));
  await writeFile(ns, '/vms/cfg/sub/nvram', generate(rng, 'random', 300 * 1024));
  await ns.fs.link('/vms/cfg/vm.json', '/vms/cfg/sub/vm-link.json');
  await ns.fs.symlink('../web01.vmdk', '/vms/cfg/disk');
  await ns.fs.chmod('/vms/cfg/vm.json', 0o600);
  await ns.snapshots.create('vms', 'nightly');
  const snapTree = await tree(ns, '/vms/.snapshots/nightly');

  // The share moves on: the image changes, the config goes.
  const fh = await ns.fs.open('/vms/web01.vmdk', 2);
  await ns.write(fh, 4096, Buffer.from('damaged by a bad update'));
  await ns.fs.release(fh);
  await ns.fs.unlink('/vms/cfg/sub/nvram');
  await store.commit();
  const before = await store.stats();
  const shareBytes = (await ns.shares.get('vms')).logicalBytes;

  // A file back into its share, next to the damaged one.
  const file = await ns.fastcopy.copy('vms/.snapshots/nightly/web01.vmdk', 'vms/web01-restored.vmdk');
  t.same(file, { from: 'vms/.snapshots/nightly/web01.vmdk', to: 'vms/web01-restored.vmdk', type: 'file', files: 1, directories: 0, logicalBytes: disk.length });
  t.equal(sha(await readFile(ns, '/vms/web01-restored.vmdk')), sha(disk), 'the restored file holds the snapshot\'s bytes');
  t.equal((await ns.shares.get('vms')).logicalBytes, shareBytes + disk.length, "the share's logical bytes grow by the file");

  // A directory tree into another share.
  const dirCopy = await ns.fastcopy.copy('vms/.snapshots/nightly/cfg', 'restore/cfg');
  t.match(dirCopy, { type: 'directory', files: 2, directories: 2, logicalBytes: 16 + 300 * 1024 });
  const want = Object.fromEntries(Object.entries(snapTree).filter(([k]) => k.startsWith('cfg')));
  t.same(await tree(ns, '/restore'), want, 'the tree, contents, modes, the hard link pair and the symlink as in the snapshot');
  t.same((await ns.shares.get('restore')).files, 2, 'restore counts the two files (hard links once)');

  // Across shares from a share's live tree, and the whole snapshot into a directory.
  await ns.fastcopy.copy('vms/web01-restored.vmdk', 'restore/web01.vmdk');
  const whole = await ns.fastcopy.copy('vms/.snapshots/nightly', 'restore/nightly');
  t.match(whole, { type: 'directory', files: 3, directories: 3 });
  t.same(await tree(ns, '/restore/nightly'), snapTree, 'a whole snapshot copies as a tree');

  await store.commit();
  const after = await store.stats();
  t.equal(after.storedBytes, before.storedBytes, `stored bytes unchanged (${after.storedBytes}) after copying ${(disk.length * 3) / MiB} MiB of files`);
  t.same(await tree(ns, '/vms/.snapshots/nightly'), snapTree, 'the snapshot is unchanged');

  // A copy is independent of its source.
  const w = await ns.fs.open('/restore/web01.vmdk', 2);
  await ns.write(w, 0, Buffer.from('edited copy'));
  await ns.fs.release(w);
  t.equal(sha(await readFile(ns, '/vms/web01-restored.vmdk')), sha(disk), 'editing the copy leaves the source');

  // The copies hold their segments: drop the snapshot, collect, restart, verify.
  await ns.snapshots.remove('vms', 'nightly');
  await runGc(ns);
  await ns.close();
  await store.close();
  ({ store, ns } = await open(t, dir));
  t.equal(sha(await readFile(ns, '/vms/web01-restored.vmdk')), sha(disk), 'the restored file reads back after GC and a restart');
  t.same(
    Object.fromEntries(Object.entries(await tree(ns, '/restore')).filter(([k]) => k.startsWith('cfg'))),
    want,
    'so does the restored tree',
  );
  const v = await runVerify(ns, { full: true });
  t.same(v.problems, [], 'a full verify finds nothing wrong');
});

t.test('fastcopy refusals name the path and change nothing', async (t) => {
  const { ns } = await open(t, tmpDir(t));
  await ns.shares.create('vms');
  await ns.shares.create('other');
  await ns.fs.mkdir('/vms/dir', 0o755);
  await writeFile(ns, '/vms/dir/f', Buffer.from('f'));
  await writeFile(ns, '/other/taken', Buffer.from('t'));
  await ns.snapshots.create('vms', 'snap');
  const cases: Array<[string, string, string]> = [
    ['vms/nosuch', 'vms/y', 'NOT_FOUND: vms/nosuch does not exist'],
    ['vms/dir/nosuch/x', 'vms/y', 'NOT_FOUND: vms/dir/nosuch does not exist'],
    ['vms/.snapshots/snap/nosuch', 'vms/y', 'NOT_FOUND: vms/.snapshots/snap/nosuch does not exist'],
    ['vms/.snapshots/nosnap/f', 'vms/y', 'NOT_FOUND: share vms has no snapshot named nosnap'],
    ['nosuch/f', 'vms/y', 'NOT_FOUND: no share named nosuch'],
    ['vms/dir/f', 'nosuch/y', 'NOT_FOUND: no share named nosuch'],
    ['vms/dir/f', 'vms/nodir/y', 'NOT_FOUND: vms/nodir does not exist'],
    ['vms/dir/f', 'other/taken', 'ALREADY_EXISTS: other/taken already exists'],
    ['vms/dir', 'vms/dir/inside', 'INVALID_ARGUMENT: cannot copy vms/dir into itself (vms/dir/inside)'],
    ['vms/dir/f', 'vms/.snapshots/snap/g', "INVALID_ARGUMENT: target \"vms/.snapshots/snap/g\" is inside .snapshots/, which is read-only: copy into the share itself"],
    ['vms', 'other/x', 'INVALID_ARGUMENT: source "vms" names a whole share; name a file or directory in it (<share>/<path> or <share>/.snapshots/<snapshot>[/<path>])'],
    ['vms/../etc/passwd', 'vms/y', `INVALID_ARGUMENT: source "../etc/passwd" has an empty, '.' or '..' component`],
    ['vms/dir/f', 'other', 'INVALID_ARGUMENT: target "other" is not <share>/<path>'],
  ];
  for (const [from, to, want] of cases) t.equal(await failure(ns.fastcopy.copy(from, to)), want, `${from} -> ${to}`);
  t.same((await ns.fs.readdir('/vms')).map((e) => e.name).filter((n) => !n.startsWith('.')).sort(), ['dir'], 'vms holds what it held');
  t.same((await ns.fs.readdir('/other')).map((e) => e.name).filter((n) => !n.startsWith('.')).sort(), ['taken'], 'other too');
});
