// The catalog end to end through a real appliance on the libfuse3 binding: an ext4 image made
// by mkfs.ext4 -d is copied into a share through the mount, snapshotted and cataloged (a job);
// `<image>.files/` in the snapshot lists and reads the source tree byte for byte, refuses
// changes; find, find --changed and restore-file through the CLI; bad input on every new route
// and command; an image that is not a disk shows a note, no crash.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startAppliance, type Appliance } from './helpers/appliance.js';
import { runCli } from './helpers/cli-run.js';
import { listTree, makeExtDisk, makeTree, seeded } from './helpers/ext-image.js';
import { tmpDir } from './helpers/tmpdir.js';

async function job(app: Appliance, res: { status: number; body: any }): Promise<any> {
  if (res.status !== 202) throw new Error(`expected 202, got ${res.status}: ${JSON.stringify(res.body)}`);
  for (let i = 0; i < 600; i++) {
    const j = await app.api('GET', `/jobs/${res.body.job}`);
    if (j.body.state === 'succeeded' || j.body.state === 'failed') return j.body;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the job did not end');
}

t.test('catalog, .files/, find and restore-file through a running appliance (--fuse 3)', async (t) => {
  const dir = tmpDir(t);
  const tree1 = path.join(dir, 'tree1');
  const spec: Record<string, string | number> = { 'etc/nginx/nginx.conf': 'worker_processes 2;\n', 'etc/passwd': 'root:x:0:0::/root:/bin/sh\n', 'var/lib/big.bin': 3_000_000, 'opt/empty/': '' };
  for (let i = 0; i < 1000; i++) spec[`srv/many/f${String(i).padStart(4, '0')}.txt`] = `file ${i}\n`;
  makeTree(tree1, spec);
  fs.symlinkSync('nginx/nginx.conf', path.join(tree1, 'etc/link'));
  fs.chmodSync(path.join(tree1, 'etc/passwd'), 0o600);
  const disk1 = path.join(dir, 'd1.raw');
  makeExtDisk(disk1, tree1, 40);
  const tree2 = path.join(dir, 'tree2');
  fs.cpSync(tree1, tree2, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  fs.writeFileSync(path.join(tree2, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\nweb:x:1000:1000::/srv:/bin/sh\n');
  fs.utimesSync(path.join(tree2, 'etc/passwd'), 1_750_000_000, 1_750_000_000);
  const disk2 = path.join(dir, 'd2.raw');
  makeExtDisk(disk2, tree2, 40);

  const app = await startAppliance(t, dir); // the libfuse3 binding shows .files/
  t.match(app.log(), /mounted at .*\(libfuse3 low-level/, 'the appliance mounts on the libfuse3 binding');
  const cli = (...args: string[]) => runCli([...args, '--url', app.url, '--token', app.token]);
  fs.mkdirSync(path.join(app.mount, 'web01'));
  fs.copyFileSync(disk1, path.join(app.mount, 'web01/vda.raw'));
  fs.writeFileSync(path.join(app.mount, 'web01/junk.img'), seeded('junk', 1 << 20));
  t.equal((await app.api('POST', '/shares/web01/snapshots', { name: 'p1' })).status, 201, 'snapshot p1');
  fs.rmSync(path.join(app.mount, 'web01/vda.raw'));
  fs.copyFileSync(disk2, path.join(app.mount, 'web01/vda.raw'));
  t.equal((await app.api('POST', '/shares/web01/snapshots', { name: 'p2' })).status, 201, 'snapshot p2');

  const snap = path.join(app.mount, 'web01/.snapshots/p1');
  t.notOk(fs.readdirSync(snap).includes('vda.raw.files'), 'no .files before the point is cataloged');
  for (const p of ['p1', 'p2']) {
    const j = await job(app, await app.api('POST', '/catalog/builds', { share: 'web01', point: p }));
    t.equal(j.state, 'succeeded', `catalog job of ${p}: ${JSON.stringify(j.error ?? j.result?.notes)}`);
  }
  t.same(fs.readdirSync(snap).sort(), ['junk.img', 'junk.img.files', 'vda.raw', 'vda.raw.files'], 'each cataloged image gets a .files directory');
  t.same(fs.readdirSync(path.join(snap, 'vda.raw.files')), ['p1'], 'its volumes');
  t.same(fs.readdirSync(path.join(snap, 'junk.img.files')), ['disk'], 'an image that is not a disk: its one unknown volume');
  t.same(fs.readdirSync(path.join(snap, 'junk.img.files/disk')), [], 'listed as an empty directory (its note is in catalog status)');

  // The tree, as the kernel sees it, against the source.
  const files = path.join(snap, 'vda.raw.files/p1');
  const want = listTree(tree1);
  const got = listTree(files);
  got.delete('/lost+found');
  t.same([...got.keys()].sort(), [...want.keys()].sort(), 'ls -R of .files/p1 is the source tree');
  const bad: string[] = [];
  for (const [p, w] of want) {
    const g = got.get(p)!;
    // mkfs.ext4 -d keeps whole seconds; the view shows no write bits (read-only).
    if (g.type !== w.type || g.size !== w.size || Math.floor(g.mtimeMs / 1000) !== Math.floor(w.mtimeMs / 1000) || (w.type !== 'symlink' && g.mode !== (w.mode & ~0o222))) bad.push(`${p}: ${JSON.stringify(g)} vs ${JSON.stringify(w)}`);
  }
  t.same(bad, [], 'types, sizes, mtimes and modes (less write bits) match');
  const copy = path.join(dir, 'copy');
  execFileSync('cp', ['-a', files, copy]);
  try {
    execFileSync('diff', ['-r', '--no-dereference', '-x', 'lost+found', tree1, copy], { stdio: 'pipe' });
  } catch (err) {
    t.fail(`diff -r: ${(err as { stdout?: Buffer }).stdout?.toString().slice(0, 2000)}`);
  }
  t.pass('cp -a of .files/p1 is byte-identical to the source tree (diff -r)');
  t.equal(fs.readlinkSync(path.join(files, 'etc/link')), 'nginx/nginx.conf', 'symlinks read back');
  t.throws(() => fs.writeFileSync(path.join(files, 'etc/new'), 'x'), { code: 'EROFS' }, 'creating a file is refused: EROFS');
  t.throws(() => fs.appendFileSync(path.join(files, 'etc/passwd'), 'x'), { code: 'EROFS' }, 'writing a file is refused: EROFS');
  t.throws(() => fs.rmSync(path.join(files, 'etc/passwd')), { code: 'EROFS' }, 'unlink is refused: EROFS');

  // find and versions through the CLI.
  const f = await cli('find', 'nginx.conf', '--share', 'web01', '--json');
  t.equal(f.code, 0, f.stderr);
  t.same(JSON.parse(f.stdout).map((h: any) => `${h.point} ${h.path} ${h.size}`), ['p1 /etc/nginx/nginx.conf 20', 'p2 /etc/nginx/nginx.conf 20'], 'find: both points');
  const c = await cli('find', '--changed', '/etc/passwd', '--share', 'web01', '--json');
  t.same(JSON.parse(c.stdout).map((v: any) => [v.point, v.change]), [['p1', 'new'], ['p2', 'size']], 'find --changed');
  const st = await cli('catalog', 'status', '--share', 'web01');
  t.match(st.stdout, /junk\.img/, `catalog status names the junk image: ${st.stdout}`);

  // restore-file: identical bytes, the file's mtime.
  const out = path.join(dir, 'out');
  fs.mkdirSync(out);
  const r = await cli('restore-file', '/var/lib/big.bin', '--share', 'web01', '--point', 'p1', '--to', out);
  t.equal(r.code, 0, r.stderr);
  t.ok(fs.readFileSync(path.join(out, 'big.bin')).equals(fs.readFileSync(path.join(tree1, 'var/lib/big.bin'))), 'restore-file: identical bytes');
  t.equal(Math.floor(fs.statSync(path.join(out, 'big.bin')).mtimeMs / 1000), Math.floor(fs.statSync(path.join(tree1, 'var/lib/big.bin')).mtimeMs / 1000), 'and mtime');
  const again = await cli('restore-file', '/var/lib/big.bin', '--share', 'web01', '--point', 'p1', '--to', out);
  t.not(again.code, 0, `an existing target is refused: ${again.stderr.trim()}`);
  const p2 = await fetch(`${app.url}/api/v1/shares/web01/snapshots/p2/files?path=/etc/passwd`, { headers: { authorization: `Bearer ${app.token}` } });
  t.equal(p2.status, 200, 'GET .../files streams a file');
  t.equal(await p2.text(), fs.readFileSync(path.join(tree2, 'etc/passwd'), 'utf8'), 'the bytes of that point');

  // Through a VM whose share it is (its QMP socket need not answer for the catalog). vm add
  // refuses a share of other files (a backup would write vda.raw over them); a VM's backups
  // leave vm.json at the share's top, which marks it as theirs.
  const refused = await app.api('POST', '/vms', { name: 'web01', qmp: `unix:${path.join(dir, 'none.qmp')}` });
  t.equal(refused.status, 409, 'a share of plain images is not taken for a VM');
  await fs.promises.writeFile(path.join(app.mount, 'web01/vm.json'), '{"name":"web01"}\n');
  const vm = await app.api('POST', '/vms', { name: 'web01', qmp: `unix:${path.join(dir, 'none.qmp')}` });
  t.equal(vm.status, 201, `a VM over the share: ${JSON.stringify(vm.body)}`);
  const fv = await cli('find', 'passwd', '--vm', 'web01', '--path-prefix', '/etc', '--json');
  t.same(JSON.parse(fv.stdout).map((h: any) => `${h.vm} ${h.point} ${h.path}`), ['web01 p1 /etc/passwd', 'web01 p2 /etc/passwd'], 'find --vm names the VM');
  const out2 = path.join(dir, 'out2');
  fs.mkdirSync(out2);
  const rv = await cli('restore-file', 'web01', '/etc/passwd', '--to', out2);
  t.equal(rv.code, 0, rv.stderr);
  t.equal(fs.readFileSync(path.join(out2, 'passwd'), 'utf8'), fs.readFileSync(path.join(tree2, 'etc/passwd'), 'utf8'), 'restore-file VM PATH: the newest cataloged point (p2)');
  const b = await cli('catalog', 'build', 'web01', '--point', 'p1');
  t.equal(b.code, 0, `catalog build VM --point rebuilds: ${b.stderr}`);

  // Bad input on the routes and commands.
  const bads: Array<[string, string, unknown, number]> = [
    ['GET', '/catalog/find', undefined, 400],
    ['GET', '/catalog/find?pattern=a/b', undefined, 400],
    ['GET', '/catalog/find?pattern=x&since=yesterday', undefined, 400],
    ['GET', '/catalog/find?pattern=x&minSize=lots', undefined, 400],
    ['GET', '/catalog/find?pattern=x&vm=a&share=b', undefined, 400],
    ['GET', '/catalog/find?pattern=x&vm=nosuchvm', undefined, 404],
    ['GET', '/catalog/versions?path=/etc/passwd', undefined, 400],
    ['GET', '/catalog/versions?path=etc&share=web01', undefined, 400],
    ['GET', '/catalog?share=nosuch', undefined, 404],
    ['POST', '/catalog/builds', {}, 400],
    ['POST', '/catalog/builds', { share: 'web01', point: 'p9' }, 404],
    ['POST', '/catalog/builds', { share: 'nosuch' }, 404],
    ['POST', '/catalog/builds', { share: 'web01', images: ['../x'] }, 400],
    ['POST', '/catalog/builds', { share: 'web01', extra: 1 }, 400],
    ['GET', '/shares/web01/snapshots/p1/files?path=etc/passwd', undefined, 400],
    ['GET', '/shares/web01/snapshots/p1/files?path=/nope', undefined, 404],
    ['GET', '/shares/web01/snapshots/p1/files?path=/etc', undefined, 409],
    ['GET', '/shares/web01/snapshots/p9/files?path=/etc/passwd', undefined, 404],
    ['GET', '/vms/nosuchvm/points/latest/files?path=/etc/passwd', undefined, 404],
  ];
  for (const [m, route, body, status] of bads) {
    const res = await app.api(m, route, body);
    t.equal(res.status, status, `${m} ${route} ${body === undefined ? '' : JSON.stringify(body)}: ${status} (${res.body?.error?.message})`);
  }
  for (const args of [['find'], ['find', 'x', '--size', 'big'], ['find', '--changed', '/etc/passwd'], ['restore-file', 'web01', 'etc/passwd', '--to', out], ['restore-file', 'web01', '/etc/passwd'], ['catalog', 'fly'], ['catalog', 'build']]) {
    const res = await cli(...args);
    t.equal(res.code, 2, `vmvault ${args.join(' ')}: usage error (${res.stderr.trim().split('\n')[0]})`);
  }
  t.notMatch(app.log(), /failed unexpectedly|EIO/, 'no internal errors in the appliance log');
});
