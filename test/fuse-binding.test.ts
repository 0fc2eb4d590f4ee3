// The edges of the FUSE binding (libfuse3, src/fuse/ll/) and of mount-util.ts, driven the way a
// hypervisor drives them: real processes (touch, cp, dd, df, node) against a real mount of an
// in-memory path-addressed file system (helpers/memfs.ts on helpers/path-mount.ts). This process
// serves the mount, so it never touches the mount itself: every access is a child process,
// spawned asynchronously. (Until issue 16 this drove fuse-native; what it checked of the binding
// still holds here: single-time and both-time utimens, handles reaching attribute requests, a
// 100 TiB statfs, large writes arriving whole, errnos, lazy unmount, stale and hung mounts.)
import t from 'tap';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readlink, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { vmError, ERROR_CODES, type ErrorCode } from '../src/errors.js';
import { toErrno } from '../src/fuse/errno.js';
import { clearFuseMount, clearStaleMount, fuseMountsAt, probeMount } from '../src/fuse/mount-util.js';
import { Memfs } from './helpers/memfs.js';
import { PathMount, type PathMountOptions } from './helpers/path-mount.js';

const TiB = 2 ** 40;
const HELPER = fileURLToPath(new URL('./helpers/memfs-mount.js', import.meta.url));

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], opts: { cwd?: string; timeout?: number } = {}): Promise<Ran> {
  return new Promise((done) => {
    execFile(cmd, args, { env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' }, timeout: opts.timeout ?? 60_000, cwd: opts.cwd }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      done({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

async function statTimes(path: string): Promise<{ atime: number; mtime: number }> {
  const r = await sh('stat', ['-c', '%X %Y', path]);
  if (r.code !== 0) throw new Error(r.stderr);
  const [atime, mtime] = r.stdout.trim().split(' ').map(Number);
  return { atime: atime!, mtime: mtime! };
}

// All the helpers need of a tap test.
interface T {
  teardown(fn: () => unknown): void;
}

async function mountMemfs(tt: T, memfs: Memfs, options: PathMountOptions = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'vmv-fuse-'));
  const logs: string[] = [];
  const mount = new PathMount(dir, memfs, { log: (l) => logs.push(l), ...options });
  tt.teardown(async () => {
    if (mount.mounted) await mount.unmount().catch(() => undefined);
    await clearFuseMount(dir);
    await rm(dir, { recursive: true, force: true });
  });
  await mount.mount();
  return { dir, mount, logs };
}

function startServer(tt: T, dir: string, env: Record<string, string> = {}): Promise<{ child: ChildProcess; info: { mounted: string } }> {
  const child = spawn(process.execPath, [HELPER, dir], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  tt.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await clearFuseMount(dir);
    await rm(dir, { recursive: true, force: true });
  });
  return new Promise((ok, fail) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) ok({ child, info: JSON.parse(out.split('\n')[0]!) });
    });
    child.on('exit', (code) => fail(new Error(`mount helper exited with ${code} before mounting`)));
  });
}

const exited = (c: ChildProcess) => new Promise<void>((ok) => (c.exitCode !== null || c.signalCode !== null ? ok() : c.once('exit', () => ok())));

t.test('unit: errno table', async (t) => {
  const expected: Partial<Record<ErrorCode, string>> = {
    NOT_FOUND: 'ENOENT', ALREADY_EXISTS: 'EEXIST', NOT_EMPTY: 'ENOTEMPTY', IS_DIRECTORY: 'EISDIR',
    NOT_DIRECTORY: 'ENOTDIR', INVALID_ARGUMENT: 'EINVAL', NAME_TOO_LONG: 'ENAMETOOLONG', READ_ONLY: 'EROFS',
    CROSS_SHARE: 'EXDEV', NO_SPACE: 'ENOSPC', NOT_SUPPORTED: 'ENOTSUP', NOT_PERMITTED: 'EPERM',
    LOCKED: 'EPERM',
  };
  const { errno: E } = (await import('node:os')).constants;
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    const logs: string[] = [];
    const got = toErrno(vmError(code, `test ${code}`), 'op /p', (l) => logs.push(l));
    const want = expected[code];
    if (want) {
      t.equal(got, -E[want as keyof typeof E], `${code} -> ${want}`);
      t.same(logs, [], `${code} is not logged`);
    } else {
      t.equal(got, -E.EIO, `${code} -> EIO`);
      t.match(logs, [new RegExp(`op /p: ${code}: test ${code}`)], `${code} is logged with its name`);
    }
  }
  const logs: string[] = [];
  t.equal(toErrno(Object.assign(new Error('x'), { code: 'EACCES' }), 'op', (l) => logs.push(l)), -E.EACCES, 'Node error code maps to itself');
  t.equal(toErrno(new TypeError('bug'), 'op /q', (l) => logs.push(l)), -E.EIO, 'anything else is EIO');
  t.match(logs, [/op \/q: TypeError: bug/]);
});

t.test('through a mount', async (t) => {
  const memfs = new Memfs({ readOnlyPrefix: '/ro', stats: { totalBytes: 100 * TiB, freeBytes: 40 * TiB, availableBytes: 30 * TiB } });
  const { dir, logs } = await mountMemfs(t, memfs);
  const p = (name: string) => join(dir, name);

  t.test('touch -m -d sets mtime only, touch -a -d atime only (single-time utimens)', async (t) => {
    t.equal((await sh('touch', [p('times')])).code, 0);
    const before = await statTimes(p('times'));
    const r = await sh('touch', ['-m', '-d', '2001-02-03 04:05:06', p('times')]);
    t.equal(r.code, 0, r.stderr);
    const mid = await statTimes(p('times'));
    t.equal(mid.mtime, Date.UTC(2001, 1, 3, 4, 5, 6) / 1000, 'mtime set');
    t.equal(mid.atime, before.atime, 'atime unchanged');
    t.match(memfs.calls.filter((c) => c.op === 'utimens').at(-1), { atime: null, mtime: Date.UTC(2001, 1, 3, 4, 5, 6) });

    t.equal((await sh('touch', ['-a', '-d', '2002-03-04 05:06:07', p('times')])).code, 0);
    const after = await statTimes(p('times'));
    t.equal(after.atime, Date.UTC(2002, 2, 4, 5, 6, 7) / 1000, 'atime set');
    t.equal(after.mtime, mid.mtime, 'mtime unchanged');
  });

  t.test('cp -p keeps atime and mtime (both-times utimens)', async (t) => {
    const src = join(await mkdtemp(join(tmpdir(), 'vmv-src-')), 'src');
    t.teardown(() => rm(join(src, '..'), { recursive: true, force: true }));
    await writeFile(src, 'payload');
    const atime = Date.UTC(2003, 0, 2, 3, 4, 5) / 1000;
    const mtime = Date.UTC(2004, 5, 6, 7, 8, 9) / 1000;
    await utimes(src, atime, mtime);
    const r = await sh('cp', ['-p', src, p('copied')]);
    t.equal(r.code, 0, r.stderr);
    t.same(await statTimes(p('copied')), { atime, mtime });
    t.match(memfs.calls.filter((c) => c.op === 'utimens').at(-1), { path: '/copied', atime: atime * 1000, mtime: mtime * 1000 });
  });

  t.test('fgetattr gets the open file handle, also once the file is unlinked', async (t) => {
    const script = `
      const fs = require('fs');
      const fd = fs.openSync(process.argv[1], 'w+');
      fs.writeSync(fd, Buffer.alloc(100, 1));
      fs.ftruncateSync(fd, 5);
      const a = fs.fstatSync(fd).size;
      fs.unlinkSync(process.argv[1]);
      fs.ftruncateSync(fd, 7);
      const b = fs.fstatSync(fd).size;
      fs.closeSync(fd);
      console.log(a, b);`;
    const r = await sh(process.execPath, ['-e', script, p('byfd')]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout.trim(), '5 7', 'fstat sizes before and after unlink');
    const fh = memfs.calls.find((c) => c.op === 'create-fh' && c.path === '/byfd')?.fh;
    t.ok(fh, 'create returned a handle');
    const byFd = memfs.calls.filter((c) => c.op === 'fgetattr' && c.fh === fh);
    t.ok(byFd.some((c) => c.path === '/byfd'), 'fgetattr(path, fh) while linked');
    const unlinked = memfs.calls.findIndex((c) => c.op === 'unlink' && c.path === '/byfd');
    t.ok(unlinked >= 0, 'unlinked at once (no .fuse_hidden rename)');
    t.ok(memfs.calls.slice(unlinked).some((c) => c.op === 'fgetattr' && c.fh === fh), 'fgetattr(last path, fh) after unlink');
    t.notOk(memfs.calls.some((c) => c.path.startsWith('/.fuse_hidden')), 'no hidden names');
  });

  t.test('df reports a 100 TiB store right (64-bit statfs)', async (t) => {
    const r = await sh('df', ['-B1', '--output=size,used,avail', dir]);
    t.equal(r.code, 0, r.stderr);
    const [size, used, avail] = r.stdout.trim().split('\n')[1]!.trim().split(/\s+/).map(Number);
    t.equal(size, 100 * TiB, 'size');
    t.equal(used, 60 * TiB, 'used');
    t.equal(avail, 30 * TiB, 'available');
  });

  t.test('dd bs=1M arrives as 1 MiB writes (max_write)', async (t) => {
    memfs.writeSizes.length = 0;
    const r = await sh('dd', ['if=/dev/zero', `of=${p('big')}`, 'bs=1M', 'count=8', 'status=none']);
    t.equal(r.code, 0, r.stderr);
    t.equal(memfs.writeSizes.length, 8, '8 writes for 8 MiB');
    t.ok(memfs.writeSizes.every((n) => n === 1024 * 1024), 'every write is 1 MiB');
    t.equal((await sh('stat', ['-c', '%s', p('big')])).stdout.trim(), String(8 * 2 ** 20));
  });

  t.test('errors reach callers as the right errno', async (t) => {
    t.equal((await sh('mkdir', [p('d')])).code, 0);
    t.match((await sh('mkdir', [p('d')])).stderr, /File exists/);
    t.equal((await sh('touch', [p('d/f')])).code, 0);
    t.match((await sh('rmdir', [p('d')])).stderr, /Directory not empty/);
    t.match((await sh('mkdir', [p('ro/x')])).stderr, /Read-only file system/, 'VmvaultError READ_ONLY');
    t.match((await sh('rm', [p('nothing')])).stderr, /No such file or directory/);

    memfs.failures.set('/denied', () => Promise.reject(Object.assign(new Error('no'), { code: 'EACCES' })));
    t.match((await sh('stat', [p('denied')])).stderr, /Permission denied/, 'Node error code');

    memfs.failures.set('/corrupt', () => Promise.reject(vmError('CORRUPT_SEGMENT', 'segment 3fa1 in container 000123 at offset 81920 failed verification')));
    t.match((await sh('stat', [p('corrupt')])).stderr, /Input\/output error/);
    t.ok(logs.some((l) => /lookup \/corrupt: CORRUPT_SEGMENT: segment 3fa1/.test(l)), 'EIO is logged with the error');
  });
});

t.test('unmount of a busy mount falls back to a lazy unmount', async (t) => {
  const { dir, mount } = await mountMemfs(t, new Memfs());
  // Not spawn(..., { cwd: dir }): libuv's spawn waits on this thread until the child has
  // exec'd, and the child's chdir is a request this thread must answer. The shell changes
  // directory after the spawn instead; wait until it is there (/proc's link names the path
  // without touching the mount).
  const busy = spawn('sh', ['-c', 'cd "$0" && exec sleep 60', dir], { stdio: 'ignore' });
  t.teardown(() => {
    busy.kill('SIGKILL');
  });
  await new Promise((ok) => busy.once('spawn', ok));
  for (let i = 0; i < 100 && (await readlink(`/proc/${busy.pid}/cwd`).catch(() => '')) !== dir; i++) await new Promise((ok) => setTimeout(ok, 50));
  t.same(await mount.unmount(), { how: 'lazy' });
  t.same(await fuseMountsAt(dir), [], 'no longer in mountinfo');
  busy.kill('SIGKILL');
  await exited(busy);
});

t.test('a mount whose server was SIGKILLed is detected as stale and cleared', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vmv-stale-'));
  const { child } = await startServer(t, dir);
  t.equal(await probeMount(dir), 'healthy');
  child.kill('SIGKILL');
  await exited(child);
  t.equal(await probeMount(dir), 'stale');
  t.equal(await clearStaleMount(dir), 'stale');
  t.same(await fuseMountsAt(dir), [], 'cleared');
  t.equal(await probeMount(dir), 'none');
});

t.test('a mount whose server is stopped is hung: left alone by clearStaleMount, freed by clearFuseMount', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vmv-hung-'));
  const { child } = await startServer(t, dir);
  child.kill('SIGSTOP');
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  t.equal(await probeMount(dir, 1000), 'hung');
  t.equal(await clearStaleMount(dir, { timeoutMs: 1000 }), 'hung');
  t.equal((await fuseMountsAt(dir)).length, 1, 'a live server keeps its mount');
  t.equal(await clearFuseMount(dir), 1);
  t.same(await fuseMountsAt(dir), []);
  child.kill('SIGKILL');
  await exited(child);
});
