// The mount for other local users (issue 10): allow_other with default_permissions, so the
// kernel lets any user in and checks the namespace's owners and modes. Run as the real
// unprivileged user `nobody` through setpriv against a real appliance: it reads a 0644 file,
// cannot write into a 0755 root-owned directory nor into the 0644 file, and can write where it
// owns the directory. With --no-allow-other only the appliance's user gets in.

import t from 'tap';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startAppliance } from './helpers/appliance.js';
import { tmpDir } from './helpers/tmpdir.js';

const run = promisify(execFile);

/** uid and gid of `nobody`/`nogroup` on this machine. */
function nobody(): { uid: number; gid: number } | undefined {
  const passwd = fs.readFileSync('/etc/passwd', 'utf8');
  const m = /^nobody:[^:]*:(\d+):(\d+):/m.exec(passwd);
  return m ? { uid: Number(m[1]), gid: Number(m[2]) } : undefined;
}

/** Runs `sh -c script` as nobody; resolves with exit code and output, never throws. */
async function asNobody(script: string): Promise<{ code: number; out: string }> {
  try {
    const r = await run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', 'sh', '-c', script], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, out: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

const who = nobody();
const skip = process.getuid?.() !== 0 ? 'needs root' : who === undefined ? 'no user nobody' : false;

t.test('another user gets what the modes allow, and no more', { skip }, async (t) => {
  // mkdtemp makes 0700 directories: nobody must be able to reach the mount point.
  const dir = tmpDir(t);
  fs.chmodSync(dir, 0o755);
  const app = await startAppliance(t, dir);
  t.match(fs.readFileSync('/proc/self/mountinfo', 'utf8'), new RegExp(`${app.mount} .* - fuse\\.vmvault vmvault rw,.*default_permissions,allow_other`), 'mounted with allow_other and default_permissions');
  const vms = path.join(app.mount, 'vms');
  fs.mkdirSync(vms);
  fs.chmodSync(vms, 0o755);
  fs.writeFileSync(path.join(vms, 'readme.txt'), 'for everyone to read\n');
  fs.chmodSync(path.join(vms, 'readme.txt'), 0o644);
  fs.mkdirSync(path.join(vms, 'root-only'));
  fs.chmodSync(path.join(vms, 'root-only'), 0o755);
  fs.mkdirSync(path.join(vms, 'nobodys'));
  fs.chownSync(path.join(vms, 'nobodys'), who!.uid, who!.gid);
  fs.writeFileSync(path.join(vms, 'secret.txt'), 'root only\n');
  fs.chmodSync(path.join(vms, 'secret.txt'), 0o600);

  const read = await asNobody(`cat ${vms}/readme.txt`);
  t.same(read, { code: 0, out: 'for everyone to read\n' }, 'nobody reads a 0644 file');
  const ls = await asNobody(`ls ${vms}`);
  t.equal(ls.code, 0);
  t.same(ls.out.split('\n').filter(Boolean).sort(), ['nobodys', 'readme.txt', 'root-only', 'secret.txt']);

  const intoRoot = await asNobody(`echo x > ${vms}/root-only/new.txt`);
  t.not(intoRoot.code, 0, 'nobody cannot create a file in a 0755 root-owned directory');
  t.match(intoRoot.out, /Permission denied/);
  t.notOk(fs.existsSync(path.join(vms, 'root-only', 'new.txt')));

  const overwrite = await asNobody(`echo x > ${vms}/readme.txt`);
  t.not(overwrite.code, 0, 'nor write into a 0644 root-owned file');
  t.match(overwrite.out, /Permission denied/);
  t.equal(fs.readFileSync(path.join(vms, 'readme.txt'), 'utf8'), 'for everyone to read\n', 'unchanged');

  const secret = await asNobody(`cat ${vms}/secret.txt`);
  t.not(secret.code, 0, 'nor read a 0600 root file');
  t.match(secret.out, /Permission denied/);

  const unlink = await asNobody(`rm -f ${vms}/readme.txt`);
  t.not(unlink.code, 0, 'nor delete from a directory it cannot write');
  t.ok(fs.existsSync(path.join(vms, 'readme.txt')));

  const own = await asNobody(`echo mine > ${vms}/nobodys/mine.txt && cat ${vms}/nobodys/mine.txt`);
  t.same(own, { code: 0, out: 'mine\n' }, 'nobody writes where it owns the directory');
  t.equal(fs.readFileSync(path.join(vms, 'nobodys', 'mine.txt'), 'utf8'), 'mine\n');
});

t.test('--no-allow-other keeps the mount to its own user', { skip }, async (t) => {
  const dir = tmpDir(t);
  fs.chmodSync(dir, 0o755);
  const app = await startAppliance(t, dir, ['--no-allow-other']);
  fs.mkdirSync(path.join(app.mount, 'vms'));
  fs.writeFileSync(path.join(app.mount, 'vms', 'readme.txt'), 'x\n');
  fs.chmodSync(path.join(app.mount, 'vms', 'readme.txt'), 0o644);
  t.notMatch(fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.includes(` ${app.mount} `)) ?? '', /allow_other/);
  const r = await asNobody(`cat ${app.mount}/vms/readme.txt`);
  t.not(r.code, 0);
  t.match(r.out, /Permission denied/);
  t.equal(os.userInfo().uid, 0);
});
