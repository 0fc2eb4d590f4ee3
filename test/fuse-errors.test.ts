// The errnos a caller of the mount sees, from the caller's side of the kernel: ENOENT, EEXIST,
// ENOTEMPTY, EISDIR, ENOTDIR, EXDEV, EROFS, EPERM, ENAMETOOLONG, EINVAL; that a refused
// operation changed nothing; statfs (df) totals; and the `vmvault` CLI against the real
// appliance, whose changes show in the mount.

import t from 'tap';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAppliance } from './helpers/appliance.js';
import { describeRun, runTool } from './helpers/run-tool.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(repo, 'bin', 'vmvault.js');
const cliBuilt = path.join(repo, 'dist', 'src', 'cli', 'main.js');

async function errno(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(
    () => true,
    () => false,
  );
}

t.test('errnos through the mount, statfs and the CLI', async (t) => {
  const dir = tmpDir(t);
  const app = await startAppliance(t, dir);
  for (const name of ['vms', 'other']) t.equal((await app.api('POST', '/shares', { name })).status, 201, `share ${name} created`);
  const m = (...rel: string[]) => path.join(app.mount, ...rel);

  await fs.mkdir(m('vms', 'full', 'sub'), { recursive: true });
  await fs.writeFile(m('vms', 'full', 'f'), 'in full');
  await fs.mkdir(m('vms', 'full2'));
  await fs.writeFile(m('vms', 'full2', 'g'), 'in full2');
  await fs.mkdir(m('vms', 'empty'));
  await fs.writeFile(m('vms', 'file'), 'a file');
  await fs.symlink('file', m('vms', 'link'));
  t.equal((await app.api('POST', '/shares/vms/snapshots', { name: 'snap' })).status, 201, 'snapshot vms/snap created');

  const cases: Array<[string, string, () => Promise<unknown>]> = [
    ['ENOENT', 'stat of a missing file', () => fs.stat(m('vms', 'missing'))],
    ['ENOENT', 'open of a missing file', () => fs.open(m('vms', 'missing'), 'r')],
    ['ENOENT', 'create in a missing directory', () => fs.writeFile(m('vms', 'nodir', 'x'), 'x')],
    ['ENOENT', 'a missing share', () => fs.readdir(m('noshare'))],
    ['ENOENT', 'a missing snapshot', () => fs.readdir(m('vms', '.snapshots', 'nosnap'))],
    ['ENOENT', 'unlink of a missing file', () => fs.unlink(m('vms', 'missing'))],
    ['ENOENT', 'rename of a missing file', () => fs.rename(m('vms', 'missing'), m('vms', 'x'))],
    ['EEXIST', 'mkdir over a directory', () => fs.mkdir(m('vms', 'full'))],
    ['EEXIST', 'mkdir over a file', () => fs.mkdir(m('vms', 'file'))],
    ['EEXIST', 'O_CREAT|O_EXCL over a file', () => fs.open(m('vms', 'file'), 'wx')],
    ['EEXIST', 'symlink over a file', () => fs.symlink('x', m('vms', 'file'))],
    ['EEXIST', 'link over a file', () => fs.link(m('vms', 'file'), m('vms', 'link'))],
    ['EEXIST', 'mkdir of an existing share', () => fs.mkdir(m('vms'))],
    ['EEXIST', 'mkdir .snapshots', () => fs.mkdir(m('vms', '.snapshots'))],
    ['ENOTEMPTY', 'rmdir of a non-empty directory', () => fs.rmdir(m('vms', 'full'))],
    ['ENOTEMPTY', 'rename a directory over a non-empty directory', () => fs.rename(m('vms', 'empty'), m('vms', 'full'))],
    ['ENOTEMPTY', 'rename a non-empty directory over a non-empty one', () => fs.rename(m('vms', 'full2'), m('vms', 'full'))],
    ['ENOTEMPTY', 'rmdir of a share with files', () => fs.rmdir(m('vms'))],
    ['EISDIR', 'open a directory for writing', () => fs.open(m('vms', 'full'), 'r+')],
    ['EISDIR', 'read a directory as a file', () => fs.readFile(m('vms', 'full'))],
    ['EISDIR', 'unlink a directory', () => fs.unlink(m('vms', 'full'))],
    ['EISDIR', 'rename a file over a directory', () => fs.rename(m('vms', 'file'), m('vms', 'empty'))],
    ['ENOTDIR', 'a file used as a directory', () => fs.stat(m('vms', 'file', 'x'))],
    ['ENOTDIR', 'mkdir under a file', () => fs.mkdir(m('vms', 'file', 'x'))],
    ['ENOTDIR', 'rmdir of a file', () => fs.rmdir(m('vms', 'file'))],
    ['ENOTDIR', 'readdir of a file', () => fs.readdir(m('vms', 'file'))],
    ['ENOTDIR', 'rename a directory over a file', () => fs.rename(m('vms', 'empty'), m('vms', 'file'))],
    ['EXDEV', 'rename across shares', () => fs.rename(m('vms', 'file'), m('other', 'file'))],
    ['EXDEV', 'rename a directory across shares', () => fs.rename(m('vms', 'empty'), m('other', 'empty'))],
    ['EXDEV', 'link across shares', () => fs.link(m('vms', 'file'), m('other', 'file'))],
    ['EROFS', 'mkdir directly in .snapshots', () => fs.mkdir(m('vms', '.snapshots', 'new'))],
    ['EROFS', 'create directly in .snapshots', () => fs.writeFile(m('vms', '.snapshots', 'new'), 'x')],
    ['EROFS', 'symlink directly in .snapshots', () => fs.symlink('x', m('vms', '.snapshots', 'new'))],
    ['EROFS', 'rename a file into .snapshots', () => fs.rename(m('vms', 'file'), m('vms', '.snapshots', 'new'))],
    ['EROFS', 'mkdir inside a snapshot', () => fs.mkdir(m('vms', '.snapshots', 'snap', 'new'))],
    ['EROFS', 'create inside a snapshot', () => fs.writeFile(m('vms', '.snapshots', 'snap', 'new'), 'x')],
    ['EROFS', 'open a snapshot file for writing', () => fs.open(m('vms', '.snapshots', 'snap', 'file'), 'r+')],
    ['EROFS', 'truncate a snapshot file', () => fs.truncate(m('vms', '.snapshots', 'snap', 'file'), 0)],
    ['EROFS', 'unlink in a snapshot', () => fs.unlink(m('vms', '.snapshots', 'snap', 'file'))],
    ['EROFS', 'rmdir in a snapshot', () => fs.rmdir(m('vms', '.snapshots', 'snap', 'empty'))],
    ['EROFS', 'rename out of a snapshot (read-only comes before cross-share)', () => fs.rename(m('vms', '.snapshots', 'snap', 'file'), m('other', 'moved'))],
    ['EROFS', 'rename in a snapshot', () => fs.rename(m('vms', '.snapshots', 'snap', 'file'), m('vms', '.snapshots', 'snap', 'file2'))],
    ['EROFS', 'chmod in a snapshot', () => fs.chmod(m('vms', '.snapshots', 'snap', 'file'), 0o600)],
    ['EROFS', 'utimes in a snapshot', () => fs.utimes(m('vms', '.snapshots', 'snap', 'file'), 1, 1)],
    ['EPERM', 'create a file at the top of the mount', () => fs.writeFile(m('topfile'), 'x')],
    ['EPERM', 'symlink at the top of the mount', () => fs.symlink('vms', m('toplink'))],
    ['EPERM', 'link at the top of the mount', () => fs.link(m('vms', 'file'), m('toplink'))],
    ['EPERM', 'rename a file to the top of the mount', () => fs.rename(m('vms', 'file'), m('topfile'))],
    ['EPERM', 'rename a share', () => fs.rename(m('other'), m('renamed'))],
    ['EPERM', 'rename .snapshots', () => fs.rename(m('vms', '.snapshots'), m('vms', 'snaps'))],
    ['EPERM', 'rename a directory over .snapshots', () => fs.rename(m('vms', 'empty'), m('vms', '.snapshots'))],
    ['EPERM', 'rmdir .snapshots', () => fs.rmdir(m('vms', '.snapshots'))],
    ['EPERM', 'rmdir a snapshot (the API deletes snapshots)', () => fs.rmdir(m('vms', '.snapshots', 'snap'))],
    ['EPERM', 'link of a directory', () => fs.link(m('vms', 'full'), m('vms', 'dirlink'))],
    ['ENAMETOOLONG', 'create with a 256-byte name', () => fs.writeFile(m('vms', 'n'.repeat(256)), 'x')],
    ['ENAMETOOLONG', 'mkdir with a 256-byte name', () => fs.mkdir(m('vms', 'd'.repeat(256)))],
    ['ENAMETOOLONG', 'rename to a 256-byte name', () => fs.rename(m('vms', 'file'), m('vms', 'r'.repeat(256)))],
    ['ENAMETOOLONG', 'a 256-byte name of 2-byte characters', () => fs.writeFile(m('vms', 'é'.repeat(128)), 'x')],
    ['EINVAL', 'readlink of a file', () => fs.readlink(m('vms', 'file'))],
    ['EINVAL', 'rename a directory into itself', () => fs.rename(m('vms', 'full'), m('vms', 'full', 'sub', 'x'))],
  ];
  for (const [want, label, op] of cases) t.equal(await errno(op), want, `${label}: ${want}`);

  // Refused operations changed nothing.
  t.same((await fs.readdir(m('vms'))).sort(), ['.snapshots', 'empty', 'file', 'full', 'full2', 'link'], 'the share holds what it held');
  t.same((await fs.readdir(m('vms', 'full'))).sort(), ['f', 'sub'], 'full still holds f and sub');
  t.equal(await fs.readFile(m('vms', 'file'), 'utf8'), 'a file', 'file still holds its bytes');
  t.same((await fs.readdir(m('other'))).sort(), ['.snapshots'], 'nothing crossed into the other share');
  t.same((await fs.readdir(m())).sort(), ['other', 'vms'], 'the top of the mount lists the two shares only');
  t.same((await fs.readdir(m('vms', '.snapshots'))).sort(), ['snap'], '.snapshots lists the one snapshot');
  t.equal(await fs.readFile(m('vms', '.snapshots', 'snap', 'file'), 'utf8'), 'a file', 'the snapshot file is unchanged');
  // The edges of the limits are accepted.
  await fs.writeFile(m('vms', 'n'.repeat(255)), '255');
  t.equal(await fs.readFile(m('vms', 'n'.repeat(255)), 'utf8'), '255', 'a 255-byte name works');
  await fs.rename(m('vms', 'empty'), m('vms', 'full2', 'moved'));
  t.equal(await errno(() => fs.stat(m('vms', 'full2', 'moved'))), 'ok', 'rename of an empty directory into another directory works');

  // statfs: the data disk's totals, through the mount.
  const [mst, dst] = await Promise.all([fs.statfs(m()), fs.statfs(app.data)]);
  const mb = (n: number) => `${(n / 1e9).toFixed(1)} GB`;
  const total = (s: { blocks: number; bsize: number }) => s.blocks * s.bsize;
  const avail = (s: { bavail: number; bsize: number }) => s.bavail * s.bsize;
  t.ok(Math.abs(total(mst) - total(dst)) <= total(dst) * 0.001, `df total through the mount ${mb(total(mst))} = the data disk's ${mb(total(dst))}`);
  t.ok(Math.abs(avail(mst) - avail(dst)) <= total(dst) * 0.01, `df available through the mount ${mb(avail(mst))} ~ the data disk's ${mb(avail(dst))}`);
  t.ok(mst.bfree >= mst.bavail && mst.blocks >= mst.bfree && mst.blocks > 0, 'blocks >= free >= available > 0');
  const df = await runTool('df', ['-B1', '--output=size,avail', m()]);
  t.equal(df.code, 0, describeRun(df));
  const [size] = df.stdout.trim().split('\n')[1].trim().split(/\s+/).map(Number);
  t.ok(Math.abs(size - total(dst)) <= total(dst) * 0.001, `df(1) reports size ${mb(size)}`);

  await cliChecks(t, app.url, app.token, app.mount);
  t.equal(await app.stop(), 0, 'the appliance stops cleanly');
});

async function cliChecks(t: TestT, url: string, token: string, mount: string): Promise<void> {
  // The CLI is part of the product: missing, it is a failure, not a skip.
  t.ok((await exists(cli)) && (await exists(cliBuilt)), `the CLI is built (${cli}, ${cliBuilt})`);
  const vmvault = (...args: string[]) => runTool(process.execPath, [cli, ...args, '--url', url, '--token', token], { timeoutMs: 60_000 });
  let r = await vmvault('share', 'list', '--json');
  t.equal(r.code, 0, describeRun(r));
  const shares = JSON.parse(r.stdout) as Array<{ name: string; files: number }>;
  t.same(shares.map((s) => s.name).sort(), ['other', 'vms'], 'vmvault share list --json names both shares');
  r = await vmvault('share', 'create', 'fromcli');
  t.equal(r.code, 0, describeRun(r));
  t.ok((await fs.readdir(mount)).includes('fromcli'), 'a share created with the CLI is a directory of the mount');
  await fs.writeFile(path.join(mount, 'fromcli', 'x'), 'made in fromcli');
  r = await vmvault('snapshot', 'create', 'fromcli', 's1');
  t.equal(r.code, 0, describeRun(r));
  t.equal(await fs.readFile(path.join(mount, 'fromcli', '.snapshots', 's1', 'x'), 'utf8'), 'made in fromcli', 'a snapshot made with the CLI shows in .snapshots with the file');
  r = await vmvault('share', 'delete', 'fromcli');
  t.equal(r.code, 6, `deleting a share with files is refused with exit 6 (conflict): ${describeRun(r)}`);
  r = await vmvault('share', 'get', 'nope');
  t.equal(r.code, 5, `a missing share: exit 5: ${describeRun(r)}`);
  r = await runTool(process.execPath, [cli, 'share', 'list', '--url', url, '--token', 'not-the-token'], { timeoutMs: 60_000 });
  t.equal(r.code, 4, `a wrong token: exit 4: ${describeRun(r)}`);
  r = await vmvault('share', 'create', '.hidden');
  t.equal(r.code, 2, `a reserved share name: exit 2: ${describeRun(r)}`);
  r = await vmvault('stats', '--json');
  t.equal(r.code, 0, describeRun(r));
  const stats = JSON.parse(r.stdout) as { shares: number; snapshots: number };
  t.same([stats.shares, stats.snapshots], [3, 2], 'vmvault stats counts 3 shares and 2 snapshots');
  r = await vmvault('verify', '--json');
  t.equal(r.code, 0, describeRun(r));
  const job = JSON.parse(r.stdout) as { state: string; result: { problems: unknown[] } };
  t.same([job.state, job.result.problems], ['succeeded', []], 'vmvault verify: succeeded, no problems');

  // Restore from a snapshot through the CLI: the file in the mount holds the snapshot's bytes.
  await fs.writeFile(path.join(mount, 'fromcli', 'x'), 'changed after s1');
  r = await vmvault('fastcopy', 'fromcli/.snapshots/s1/x', 'other/x-restored');
  t.equal(r.code, 0, describeRun(r));
  t.equal(r.stdout, 'copied fromcli/.snapshots/s1/x to other/x-restored (15 B; no new space)\n', 'fastcopy says what it copied');
  t.equal(await fs.readFile(path.join(mount, 'other', 'x-restored'), 'utf8'), 'made in fromcli', 'the restored file shows in the mount with the snapshot bytes');
  r = await vmvault('fastcopy', 'fromcli/nosuch', 'fromcli/y');
  t.same([r.code, r.stderr], [5, 'vmvault: fromcli/nosuch does not exist\n'], 'a missing source names its share path');

  r = await vmvault('share', 'delete', 'fromcli', '--force');
  t.equal(r.code, 6, `--force alone does not delete snapshots: ${describeRun(r)}`);
  t.match(r.stderr, /share fromcli has 1 snapshot \(s1\); --force deletes files, not snapshots; .*--force --delete-snapshots/, 'the refusal names the snapshot');
  t.ok((await fs.readdir(mount)).includes('fromcli'), 'the share is still there');
  r = await vmvault('share', 'delete', 'fromcli', '--force', '--delete-snapshots');
  t.equal(r.code, 0, describeRun(r));
  t.notOk((await fs.readdir(mount)).includes('fromcli'), 'a share deleted with the CLI leaves the mount');
  r = await vmvault('share', 'create', '-dash');
  t.equal(r.code, 0, `a share name that starts with a dash: ${describeRun(r)}`);
  t.ok((await fs.readdir(mount)).includes('-dash'), 'and it is a directory of the mount');
}
