// Who owns a mount, and what the appliance does when it loses its own (issue 10), with real
// appliances in child processes and real umount/fusermount:
// - a second appliance (other data directory, same mount path) fails with a clear message and
//   leaves the first one's mount alone: mounted, answering, health ok;
// - /health reports the mount and the store;
// - the appliance notices its mount vanishing (umount -l, fusermount -u), says so in its log and
//   in /health, mounts again, and data written before and after reads back;
// - if it cannot mount again, it stops with a clear message and exit status 1.

import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { clearFuseMount, fuseMountsAt, probeMount } from '../src/fuse/mount-util.js';
import { type Appliance, startAppliance } from './helpers/appliance.js';
import { tmpDir } from './helpers/tmpdir.js';

const runner = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'run-appliance.js');

async function health(app: Appliance): Promise<{ status: number; body: any }> {
  const res = await fetch(`${app.url}/api/v1/health`);
  return { status: res.status, body: await res.json() };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function hasFusermount(): boolean {
  try {
    execFileSync('fusermount', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

t.test('a second appliance on the same mount path fails clearly and leaves the first mount alone', async (t) => {
  const dir = tmpDir(t);
  const first = await startAppliance(t, dir);
  fs.mkdirSync(path.join(first.mount, 'vms'));
  fs.writeFileSync(path.join(first.mount, 'vms', 'a.txt'), 'first appliance\n');

  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const second = spawn(process.execPath, [runner, '--data', path.join(dir, 'data2'), '--mount', first.mount, '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  t.teardown(() => {
    if (second.exitCode === null && second.signalCode === null) second.kill('SIGKILL');
  });
  let out = '';
  second.stdout!.on('data', (d) => (out += d));
  second.stderr!.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => second.on('exit', (c) => resolve(c)));
  t.equal(code, 1, 'the second appliance exits 1');
  t.match(out, /cannot start \(CONFLICT\): .*mnt is already in use: another FUSE file system \(another vmvault appliance\?\) is mounted there and answering; stop that one or choose another mount point \(--mount\)/);
  t.notMatch(out, /control plane at/, 'it never served');

  const mounts = await fuseMountsAt(first.mount);
  t.equal(mounts.length, 1, 'exactly one mount at the path');
  t.equal(await probeMount(first.mount), 'healthy', 'the first mount still answers');
  t.equal(fs.readFileSync(path.join(first.mount, 'vms', 'a.txt'), 'utf8'), 'first appliance\n');
  fs.writeFileSync(path.join(first.mount, 'vms', 'b.txt'), 'still writable\n');
  t.equal(fs.readFileSync(path.join(first.mount, 'vms', 'b.txt'), 'utf8'), 'still writable\n');
  const h = await health(first);
  t.equal(h.status, 200);
  t.match(h.body, { status: 'ok', mount: { path: first.mount, mounted: true, answering: true, remounts: 0 }, store: { open: true, writable: true } });
  t.notMatch(first.log(), /vanished/, 'the first appliance never lost its mount');
  t.equal(await first.stop(), 0);
  t.equal((await fuseMountsAt(first.mount)).length, 0, 'the first appliance unmounted its own mount on stop');
});

t.test('health says nothing secret and needs no token', async (t) => {
  const dir = tmpDir(t);
  const app = await startAppliance(t, dir);
  await app.api('POST', '/shares', { name: 'secret-share-name' });
  const h = await health(app);
  t.equal(h.status, 200);
  // exports: the NFS and SMB servers' state (issue 16), which names no share and no path.
  t.same(Object.keys(h.body).sort(), ['exports', 'mount', 'status', 'store', 'version']);
  const text = JSON.stringify(h.body);
  t.notMatch(text, /secret-share-name/);
  t.notMatch(text, new RegExp(app.token));
  t.notMatch(text, new RegExp(app.data.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'no data directory path');
});

for (const how of ['umount -l', 'fusermount -u'] as const) {
  t.test(`a mount taken away by ${how} is noticed, reported and made again`, { skip: how === 'fusermount -u' && !hasFusermount() ? 'no fusermount on this machine' : false }, async (t) => {
    const dir = tmpDir(t);
    const cfg = path.join(dir, 'config.json');
    fs.writeFileSync(cfg, JSON.stringify({ mountCheckMs: 2000 }));
    const app = await startAppliance(t, dir, ['--config', cfg]);
    fs.mkdirSync(path.join(app.mount, 'vms'));
    fs.writeFileSync(path.join(app.mount, 'vms', 'before.txt'), 'written before\n');
    const [cmd, ...args] = how.split(' ');
    execFileSync(cmd!, [...args, app.mount]);
    // Between the unmount and the next check (up to 2 s), health already sees it.
    const lost = await health(app);
    t.equal(lost.status, 503, 'health is not ok while the mount is gone');
    t.match(lost.body, { status: 'degraded', mount: { mounted: false, answering: false }, store: { open: true, writable: true } });
    t.match(lost.body.detail, /vanished|nothing is mounted/);

    await until('the remount', async () => ((await health(app)).body.mount.remounts === 1 ? true : undefined));
    const back = await health(app);
    t.equal(back.status, 200);
    t.match(back.body, { status: 'ok', mount: { mounted: true, answering: true, remounts: 1 } });
    t.match(app.log(), /the mount at .*mnt vanished \(unmounted by someone else\); mounting it again/);
    t.match(app.log(), /mounted .*mnt again/);
    t.equal(fs.readFileSync(path.join(app.mount, 'vms', 'before.txt'), 'utf8'), 'written before\n');
    fs.writeFileSync(path.join(app.mount, 'vms', 'after.txt'), 'written after\n');
    t.equal(fs.readFileSync(path.join(app.mount, 'vms', 'after.txt'), 'utf8'), 'written after\n');
    t.equal(await app.stop(), 0, 'a clean stop after a remount');
    t.equal((await fuseMountsAt(app.mount)).length, 0);
  });
}

t.test('a mount that cannot be made again stops the appliance with exit 1', async (t) => {
  const dir = tmpDir(t);
  const cfg = path.join(dir, 'config.json');
  fs.writeFileSync(cfg, JSON.stringify({ mountCheckMs: 200 }));
  const app = await startAppliance(t, dir, ['--config', cfg]);
  t.teardown(() => clearFuseMount(app.mount).catch(() => {}));
  execFileSync('umount', ['-l', app.mount]);
  // The mount point is replaced by a file: nothing can be mounted there.
  fs.rmdirSync(app.mount);
  fs.writeFileSync(app.mount, 'not a directory\n');
  const code = await app.proc.exitCode ?? (await new Promise<number | null>((resolve) => app.proc.on('exit', (c) => resolve(c))));
  t.equal(code, 1);
  t.match(app.log(), /remounting .*mnt \(attempt 3 of 3\) failed/);
  t.match(app.log(), /stopping: the mount at .*mnt vanished and could not be mounted again/);
  t.match(app.log(), /stopped cleanly/, 'the store was still closed cleanly');
  t.equal(fs.readFileSync(app.mount, 'utf8'), 'not a directory\n', 'the file at the path is untouched');
});

t.test('fuse-native is gone: --fuse 2 is refused, and without the libfuse3 addon nothing is mounted', async (t) => {
  const dir = tmpDir(t);
  const mount = path.join(dir, 'mnt');
  const start = (args: string[], env: Record<string, string>) =>
    new Promise<{ code: number | null; err: string }>((resolve) => {
      const child = spawn(process.execPath, [runner, '--data', path.join(dir, 'data'), '--mount', mount, '--listen', '127.0.0.1:0', ...args], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr!.on('data', (d) => (err += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, err });
      });
    });
  t.teardown(() => clearFuseMount(mount).catch(() => {}));

  const two = await start(['--fuse', '2'], {});
  t.not(two.code, 0, '--fuse 2 fails');
  t.match(two.err, /fuse 2 \(fuse-native on libfuse 2\) was removed: the mount runs on the libfuse3 binding only/);

  const none = await start([], { VMVAULT_FUSE3_ADDON: path.join(dir, 'no-such-addon.node') });
  t.not(none.code, 0, 'no addon: the appliance does not start');
  t.match(none.err, /cannot start \(NOT_SUPPORTED\): the libfuse3 binding is not built [^]*install libfuse3-dev and fuse3, then run node tools\/build-native\.js/);
  t.same(await fuseMountsAt(mount), [], 'nothing mounted');
});
