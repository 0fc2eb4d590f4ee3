// The libfuse3 low-level binding (native/src/fuse3/, src/fuse/ll/), driven through the real
// kernel by real processes against a small in-memory low-level file system (helpers/ll-memfs.ts).
// This process serves the mount, so it never touches the mount itself: every access is a child
// process, spawned asynchronously, with a deadline.
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fuse3Available, LlSession } from '../src/fuse/ll/session.js';
import { LlMemfs, mountLlMemfs } from './helpers/ll-memfs.js';

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

// `cwd` is entered by the shell, never given to spawn: libuv's spawn waits (on the JS thread) for
// the child to exec, and a child whose chdir lands in our own mount waits for this thread to
// answer: a deadlock.
function sh(script: string, opts: { cwd?: string; uid?: number; gid?: number; timeout?: number } = {}): Promise<Ran> {
  return new Promise((done) => {
    execFile(
      'sh',
      ['-c', opts.cwd ? `cd "$0" || exit 99\n${script}` : script, ...(opts.cwd ? [opts.cwd] : [])],
      { env: { ...process.env, LC_ALL: 'C' }, timeout: opts.timeout ?? 60_000, uid: opts.uid, gid: opts.gid },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
        done({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

function mounted(dir: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === dir);
}

const why = !existsSync('/dev/fuse') ? 'no /dev/fuse' : process.getuid?.() !== 0 ? 'needs root' : !fuse3Available() ? 'the fuse3 addon is not built (libfuse3-dev)' : '';
if (why) {
  t.test('libfuse3 binding', { skip: why }, async () => {});
} else {
  t.test('create, write, read, readdir, rename, unlink, links through the kernel', async (t) => {
    const m = new LlMemfs();
    const { dir } = await mountLlMemfs(t, m);
    const r = await sh(
      [
        'set -e',
        'printf hello > a',
        'mkdir d',
        'cat a',
        'mv a d/b',
        'ln d/b c',
        'ln -s d/b s',
        'readlink s',
        'cat s',
        'stat -c "%h %s" c',
        'ls -1 . d | tr "\\n" " "',
        'rm c s',
        'echo; ls -1a',
      ].join('\n'),
      { cwd: dir },
    );
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, 'hellod/b\nhello2 5\n.: c d s  d: b \n.\n..\nd\n');
    t.equal(m.contents('d/b')?.toString(), 'hello', 'the file system holds what was written');
    t.equal(m.contents('a'), undefined, 'renamed away');
    t.equal((await sh('rm d/b && rmdir d && ls -A', { cwd: dir })).stdout, '');
  });

  t.test('a directory of 2,000 names reads back whole over several readdir pages', async (t) => {
    const m = new LlMemfs();
    const { dir } = await mountLlMemfs(t, m);
    const r = await sh('mkdir big && cd big && for i in $(seq 1 2000); do : > "file-with-a-longish-name-$i"; done && ls -1 | wc -l && ls -l | tail -n +2 | wc -l', { cwd: dir, timeout: 120_000 });
    t.equal(r.code, 0, r.stderr);
    t.same(r.stdout.split('\n').filter(Boolean), ['2000', '2000']);
  });

  t.test('a 1 MiB write() arrives as one request, and reads back identical', async (t) => {
    const m = new LlMemfs();
    const { dir } = await mountLlMemfs(t, m);
    const r = await sh('head -c 8388608 /dev/urandom > /tmp/vv-ll-src-$$ && dd if=/tmp/vv-ll-src-$$ of=f bs=1M status=none && cmp f /tmp/vv-ll-src-$$ && sha256sum < f; rm -f /tmp/vv-ll-src-$$', { cwd: dir });
    t.equal(r.code, 0, r.stderr);
    t.ok(m.writeSizes.includes(1 << 20), `write sizes seen: ${[...new Set(m.writeSizes)].join(', ')}`);
    t.ok(m.writeSizes.every((n) => n <= 1 << 20));
    t.equal(m.contents('f')?.length, 8 << 20);
  });

  t.test('page-cache reads reach the file system as 1 MiB requests (the mount read-ahead is raised)', async (t) => {
    const m = new LlMemfs();
    const { dir, session } = await mountLlMemfs(t, m);
    // Written with O_DIRECT (no page cache), then read through the page cache: the kernel's
    // read-ahead decides the request sizes. Its default (128 KiB) split every read eightfold.
    const r = await sh('head -c 16777216 /dev/urandom > /tmp/vv-ll-ra-$$ && dd if=/tmp/vv-ll-ra-$$ of=f bs=1M oflag=direct status=none && dd if=f of=/dev/null bs=1M status=none && cmp f /tmp/vv-ll-ra-$$; rc=$?; rm -f /tmp/vv-ll-ra-$$; exit $rc', { cwd: dir });
    t.equal(r.code, 0, r.stderr);
    const ra = readFileSync(`/sys/class/bdi/0:${session.connection}/read_ahead_kb`, 'utf8').trim();
    t.equal(ra, '4096', 'the mount read-ahead is 4 MiB');
    const big = m.readSizes.filter((n) => n === 1 << 20).length;
    t.ok(big >= 8, `most of 16 MiB came in 1 MiB requests (sizes seen: ${[...new Set(m.readSizes)].join(', ')}; ${big} of 1 MiB)`);
  });

  t.test("the caller's uid and gid reach the handlers; a file made by uid 1000 is owned by it", async (t) => {
    const m = new LlMemfs();
    const { dir } = await mountLlMemfs(t, m, { allowOther: true });
    const r = await sh('echo x > by-user && stat -c "%u %g" by-user', { cwd: dir, uid: 1000, gid: 1000 });
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout.trim(), '1000 1000');
    const create = m.callers.find((c) => c.op === 'create');
    t.match(create, { uid: 1000, gid: 1000 });
    t.ok(create!.pid > 0, 'and the pid');
  });

  t.test('ENOSYS for an op the file system lacks, ENOTSUP for xattrs, EIO for a handler that throws', async (t) => {
    const m = new LlMemfs({ without: ['mknod', 'fallocate'], throwOnName: 'boom' });
    const { dir, session } = await mountLlMemfs(t, m);
    const fifo = await sh('mkfifo p', { cwd: dir });
    t.not(fifo.code, 0);
    t.match(fifo.stderr, /Function not implemented/);
    const fa = await sh(': > f && fallocate -l 4096 f', { cwd: dir });
    t.not(fa.code, 0);
    t.match(fa.stderr, /Operation not supported/, 'fallocate: the kernel turns ENOSYS into EOPNOTSUPP');
    const xa = await sh(`python3 -c 'import os; os.setxattr("f", "user.a", b"1")'`, { cwd: dir });
    t.match(xa.stderr, /Operation not supported/);
    const boom = await sh('stat boom', { cwd: dir });
    t.not(boom.code, 0);
    t.match(boom.stderr, /Input\/output error/);
    const after = await sh('echo still > g && cat g', { cwd: dir });
    t.equal(after.stdout, 'still\n', 'the mount still serves after a throwing handler');
    t.ok(session.stats.requests > 0);
  });

  t.test('copy_file_range, SEEK_HOLE/SEEK_DATA and fallocate reach the file system', async (t) => {
    const m = new LlMemfs();
    const { dir } = await mountLlMemfs(t, m);
    const py = [
      'import os',
      'fd = os.open("a", os.O_CREAT | os.O_RDWR); os.write(fd, b"x" * 100000)',
      'out = os.open("b", os.O_CREAT | os.O_RDWR)',
      'print(os.copy_file_range(fd, out, 100000, 0, 0))',
      'print(os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 0, os.SEEK_HOLE))',
      'os.posix_fallocate(out, 0, 200000); print(os.fstat(out).st_size)',
    ].join('\n');
    const r = await sh(`python3 -c '${py}'`, { cwd: dir });
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, '100000\n0 100000\n200000\n');
    t.equal(m.contents('b')?.subarray(0, 100000).toString(), 'x'.repeat(100000));
  });

  t.test('POSIX locks reach the file system: a second process cannot take a lock the first holds', async (t) => {
    const m = new LlMemfs();
    const { dir } = await mountLlMemfs(t, m);
    t.equal((await sh(': > img', { cwd: dir })).code, 0);
    const py = 'import fcntl, sys; f = open(sys.argv[1], "r+"); fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print("locked", flush=True); sys.stdin.readline()';
    const holder = spawn('python3', ['-c', py, join(dir, 'img')], { stdio: ['pipe', 'pipe', 'pipe'] });
    t.teardown(() => void holder.kill('SIGKILL'));
    await new Promise<void>((res, rej) => {
      holder.stdout.once('data', () => res());
      holder.once('exit', (code) => rej(new Error(`holder exited ${code}`)));
    });
    const second = await sh(`python3 -c 'import fcntl; f = open("img", "r+"); fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)'`, { cwd: dir });
    t.not(second.code, 0, 'refused while held');
    t.match(second.stderr, /Resource temporarily unavailable|Permission denied/);
    const probe = await sh(`python3 -c 'import fcntl, struct; f = open("img", "r+"); r = fcntl.fcntl(f, fcntl.F_GETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0)); print(struct.unpack("hhqqi", r)[0])'`, { cwd: dir });
    t.equal(probe.stdout.trim(), '1', 'F_GETLK reports the holder\'s write lock');
    const exited = new Promise<void>((res) => holder.once('exit', () => res()));
    holder.stdin.end('\n');
    await exited;
    const third = await sh(`python3 -c 'import fcntl; f = open("img", "r+"); fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print("ok")'`, { cwd: dir });
    t.equal(third.stdout.trim(), 'ok', 'free once the holder is gone (its close released the lock)');
  });

  t.test('many requests in flight arrive in batches of more than one', async (t) => {
    const m = new LlMemfs({ delayMs: 30 });
    const { dir, session } = await mountLlMemfs(t, m, { maxThreads: 8 });
    const r = await sh('for i in 1 2 3 4 5 6 7 8; do (dd if=/dev/zero of=f$i bs=128k count=16 status=none; cat f$i > /dev/null) & done; wait; ls | wc -l', { cwd: dir });
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout.trim(), '8');
    const st = session.stats;
    t.ok(st.maxBatch > 1, `largest batch ${st.maxBatch} (${st.requests} requests in ${st.batches} batches)`);
  });

  t.test('unmount with a file held open elsewhere: returns, the mount is gone, the holder sees an error', async (t) => {
    const m = new LlMemfs();
    const { dir, session } = await mountLlMemfs(t, m);
    t.equal((await sh('echo held > h', { cwd: dir })).code, 0);
    // Holds h open, then (after the unmount) tries to read through the held descriptor.
    const holder = spawn('sh', ['-c', 'cd "$0" && exec 3<h; echo open; read line; cat <&3; echo "rc=$?"', dir], { stdio: ['pipe', 'pipe', 'pipe'] });
    t.teardown(() => void holder.kill('SIGKILL'));
    let out = '';
    holder.stdout.on('data', (b: Buffer) => (out += b.toString()));
    holder.stderr.on('data', (b: Buffer) => (out += b.toString()));
    await new Promise<void>((res) => holder.stdout.once('data', () => res()));
    const started = Date.now();
    await session.unmount();
    t.ok(Date.now() - started < 10_000, `unmount took ${Date.now() - started} ms`);
    t.notOk(mounted(dir), 'no longer in mountinfo');
    holder.stdin.end('go\n');
    await new Promise<void>((res) => holder.once('exit', () => res()));
    t.match(out, /rc=1/, `the holder's read failed: ${out}`);
    t.equal(session.replyErr(1, 0), false, 'a reply after unmount is refused, not a crash');
    await session.unmount();
  });

  t.test('an onBatch that throws answers its whole batch EIO, and the process lives on', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'vmvault-ll-raw-'));
    const errors: unknown[] = [];
    const s = await LlSession.mount(dir, {}, () => {
      throw new Error('this onBatch always throws');
    }, (err) => errors.push(err));
    t.teardown(async () => {
      await s.unmount();
      rmSync(dir, { recursive: true, force: true });
    });
    const r = await sh(`stat "${dir}/x"`);
    t.not(r.code, 0);
    t.match(r.stderr, /Input\/output error/);
    t.ok(errors.length > 0, 'the error was reported');
  });

  for (const how of ['exit', 'throw']) {
    t.test(`a process that ends by ${how} without unmount() leaves no mount behind`, async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'vmvault-ll-exit-'));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      const child = spawn(process.execPath, [fileURLToPath(new URL('./helpers/ll-exit-child.js', import.meta.url)), dir, how], { stdio: ['pipe', 'pipe', 'pipe'] });
      t.teardown(() => void child.kill('SIGKILL'));
      await new Promise<void>((res, rej) => {
        child.stdout.once('data', () => res());
        child.once('exit', (code) => rej(new Error(`child exited ${code} before mounting`)));
      });
      t.ok(mounted(dir), 'mounted by the child');
      const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
      child.stdin.write('go\n');
      t.not(await exited, 0);
      t.notOk(mounted(dir), 'no dead mount left');
    });
  }

  t.test('a bad mount point is a typed error, and nothing is left mounted', async (t) => {
    await t.rejects(LlSession.mount('/nonexistent/vmvault-ll', {}, () => {}), { code: 'NOT_FOUND' });
    await t.rejects(LlSession.mount('/tmp', { maxWrite: 3 }, () => {}), { code: 'INVALID_ARGUMENT' });
  });
}
