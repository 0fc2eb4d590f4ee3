// The vmvault file system on the libfuse3 low-level binding (src/fuse/ll-filesystem.ts), through
// the real kernel, over a real store and namespace. This process serves the mount, so every
// access is a child process (spawned asynchronously, with a deadline), never this process.
//
// What it checks beyond the path-based mount: one inode number per file through every hard
// link (a change shows at once), the caller's uid/gid and the kernel's permission checks,
// fallocate punch-hole, SEEK_DATA/SEEK_HOLE, copy_file_range as a fastcopy, POSIX/OFD/flock
// locks, and NFS-style file handles (name_to_handle_at) that still open after the kernel drops
// its caches and after the file system is mounted again by a new process (no ESTALE).

import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { LlFileSystem, type MountAuditEvent } from '../src/fuse/ll-filesystem.js';
import { dispatchOps, fuse3Available, type LlOps, LlSession } from '../src/fuse/ll/session.js';
import type { TestT } from './helpers/tap-types.js';

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a shell script in a child. `cwd` is entered by the script itself: spawn's own chdir runs
 * in the forked child while this thread waits for the exec, so a cwd inside the mount would
 * wait for an answer only this (waiting) thread can give.
 */
function sh(script: string, opts: { cwd?: string; uid?: number; gid?: number; timeout?: number } = {}): Promise<Ran> {
  const full = opts.cwd ? `cd '${opts.cwd}' || exit 99\n${script}` : script;
  return new Promise((done) => {
    execFile('sh', ['-c', full], { env: { ...process.env, LC_ALL: 'C' }, timeout: opts.timeout ?? 60_000, uid: opts.uid, gid: opts.gid }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      done({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** name_to_handle_at / open_by_handle_at through libc (Python's ctypes: no compiler needed). */
const HANDLES_PY = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class FH(ctypes.Structure):
    _fields_ = [('handle_bytes', ctypes.c_uint), ('handle_type', ctypes.c_int), ('f_handle', ctypes.c_ubyte * 128)]
if sys.argv[1] == 'make':
    fh = FH(); fh.handle_bytes = 128; mid = ctypes.c_int()
    if libc.name_to_handle_at(-100, sys.argv[2].encode(), ctypes.byref(fh), ctypes.byref(mid), 0) != 0:
        print('ERR', os.strerror(ctypes.get_errno())); sys.exit(1)
    print(fh.handle_type, bytes(fh.f_handle[:fh.handle_bytes]).hex())
else:
    mfd = os.open(sys.argv[2], os.O_RDONLY | os.O_DIRECTORY)
    raw = bytes.fromhex(sys.argv[4]); fh = FH(); fh.handle_bytes = len(raw); fh.handle_type = int(sys.argv[3])
    ctypes.memmove(fh.f_handle, raw, len(raw))
    fd = libc.open_by_handle_at(mfd, ctypes.byref(fh), os.O_RDONLY)
    if fd < 0:
        print('ERR', os.strerror(ctypes.get_errno())); sys.exit(1)
    if sys.argv[1] == 'read':
        print(os.read(fd, 100).decode())
    else:
        print(' '.join(sorted(os.listdir('/proc/self/fd/%d' % fd))))
`;

interface Mounted {
  mnt: string;
  ns: Namespace;
  llfs: LlFileSystem;
  session: LlSession;
  /** Lookups the kernel sent, by name. */
  lookups: Map<string, number>;
  stop(): Promise<void>;
}

/**
 * A temporary directory removed at the end of the test, after every mount in it is gone:
 * removing a directory that still holds this process's own mount would wait on itself.
 */
function workDir(t: TestT): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-llfs-'));
  fs.chmodSync(dir, 0o755); // other users reach the mount through it
  const stops: Array<() => Promise<void>> = [];
  dirs.set(dir, stops);
  t.teardown(async () => {
    for (const s of stops) await s();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

const dirs = new Map<string, Array<() => Promise<void>>>();

/** Opens the store in `data` and mounts it at `mnt` on the libfuse3 binding. */
async function mountAt(t: TestT, data: string, mnt: string, audit?: (e: MountAuditEvent) => void): Promise<Mounted> {
  const store = await SegmentStore.open(data);
  const ns = await Namespace.open(store, { log: (l) => t.comment(l) });
  const llfs = new LlFileSystem(ns, { log: (l) => t.comment(l), audit });
  let session: LlSession | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (session) await session.unmount();
    await ns.close();
    await store.close();
  };
  dirs.get(path.dirname(mnt))?.push(stop);
  const lookups = new Map<string, number>();
  const ops = llfs.ops();
  const lookup = ops.lookup!;
  ops.lookup = (r, s) => {
    lookups.set(r.name, (lookups.get(r.name) ?? 0) + 1);
    return lookup(r, s);
  };
  session = await LlSession.mount(mnt, { fsname: 'vmvault-test', allowOther: true, defaultPermissions: true, maxThreads: 4 }, dispatchOps(ops as Partial<LlOps>));
  return { mnt, ns, llfs, session, lookups, stop };
}

const why = !fs.existsSync('/dev/fuse') ? 'no /dev/fuse' : process.getuid?.() !== 0 ? 'needs root' : !fuse3Available() ? 'the fuse3 addon is not built (libfuse3-dev)' : '';
if (why) {
  t.plan(0, `vmvault on libfuse3: ${why}`);
} else {
  t.test('POSIX through the kernel: hard links are one inode, owners, permissions', async (t) => {
    const dir = workDir(t);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    const m = await mountAt(t, path.join(dir, 'data'), mnt);
    const r = await sh(
      [
        'set -e',
        'mkdir vms',
        'cd vms',
        'printf hello > a',
        'ln a b',
        'stat -c %i a b | uniq | wc -l',
        'printf " world" >> b',
        'cat a; echo',
        'stat -c %h a',
        'mkdir -p d/e && mv d/e e2 && ls -a d | tr "\\n" " "; echo',
        'ln -s a s && readlink s && cat s; echo',
        'chmod 600 a && stat -c %a a',
        'ls -a .snapshots | tr "\\n" " "; echo',
        'mkdir pub && chmod 777 pub',
      ].join('\n'),
      { cwd: mnt },
    );
    t.equal(r.code, 0, `shell ran (${r.stderr.trim()})`);
    t.same(r.stdout.split('\n').slice(0, 9), ['1', 'hello world', '2', '. .. ', 'a', 'hello world', '600', '. .. ', ''], 'one inode through both names, a change seen at once, rename, symlink, chmod');
    // Listings may be cached by the kernel: a change made beside the mount (the control plane's
    // fastcopy) shows once the directory's attributes time out (1 s).
    const before = await sh(`ls ${mnt}/vms`);
    await m.ns.fastcopy.copy('vms/a', 'vms/fastcopied');
    await new Promise((r) => setTimeout(r, 1500));
    const after = await sh(`ls ${mnt}/vms`);
    t.ok(!before.stdout.includes('fastcopied') && after.stdout.split('\n').includes('fastcopied'), `a fastcopy through the control plane shows in the listing (${after.stdout.trim().replace(/\n/g, ' ')})`);
    const nobody = await sh('set -e; cd vms/pub; printf x > mine; stat -c "%u %g" mine; cat ../a 2>/dev/null || echo denied', { cwd: mnt, uid: 65534, gid: 65534 });
    t.same(nobody.stdout.trim().split('\n'), ['65534 65534', 'denied'], "a file is made with the caller's uid/gid; a 0600 file of root's is refused to others");
  });

  t.test("the kernel keeps 'no such name'; a name the control plane makes shows at once, one the kernel makes needs no invalidation", async (t) => {
    const dir = workDir(t);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    const first = await mountAt(t, path.join(dir, 'data'), mnt);
    const made = await sh(`set -e; mkdir ${mnt}/s; printf hello > ${mnt}/s/a`);
    t.equal(made.code, 0, made.stderr);
    // A fresh process has no listing of s cached, so its absent names are not answered by the
    // addon (ll-names.ts) and the kernel keeps them (a negative entry).
    await first.stop();
    const m = await mountAt(t, path.join(dir, 'data'), mnt);
    // rsync's pattern: its generator stats the name, its receiver opens it, both absent.
    const absent = await sh(`for i in 1 2 3; do stat ${mnt}/s/nope >/dev/null 2>&1 || echo absent; done`);
    t.same(absent.stdout.trim().split('\n'), ['absent', 'absent', 'absent'], 'the name does not exist');
    t.equal(m.lookups.get('nope'), 1, 'asked once: the kernel kept the negative entry (three lookups without it)');
    t.equal(m.session.nameHits, 0, 'not answered by the addon: the listing of s was never read');
    // The control plane makes the name beside the kernel: the negative entry is invalidated.
    await m.ns.fastcopy.copy('s/a', 's/nope');
    t.equal(m.llfs.invalidations, 1, 'one invalidation asked for');
    for (let i = 0; i < 200 && m.session.notifyStats.sent < 1; i++) await new Promise((r) => setTimeout(r, 10));
    t.same(m.session.notifyStats, { queued: 0, sent: 1, failed: 0 }, "written to the kernel by the session's notification thread");
    const seen = await sh(`cat ${mnt}/s/nope`);
    t.equal(seen.stdout, 'hello', `the fastcopied file reads through the mount at once, not ${10} s later (${seen.stderr.trim()})`);
    // Names the kernel makes itself (create, mkdir, rename onto an absent name) replace its
    // own negative entries: nothing to invalidate, and each is visible at once.
    const own = await sh(
      `cd ${mnt}/s; for n in f d r; do stat $n >/dev/null 2>&1 || echo absent; done; printf x > f; mkdir d; printf y > t; mv t r; cat f r; ls -d d`,
    );
    t.equal(own.stdout, 'absent\nabsent\nabsent\nxyd\n', `made through the mount (${own.stderr.trim()})`);
    t.equal(m.llfs.invalidations, 1, 'no invalidation for names the kernel made');
    // Top of the mount and .snapshots are never cached negative: a share made by the control plane shows at once.
    const noShare = await sh(`stat ${mnt}/later >/dev/null 2>&1 || echo absent`);
    t.equal(noShare.stdout.trim(), 'absent');
    await m.ns.shares.create('later');
    const share = await sh(`stat -c %F ${mnt}/later`);
    t.equal(share.stdout.trim(), 'directory', 'a share made after a lookup of its name shows at once');
  });

  t.test('absent names of a directory the addon holds are answered without JavaScript; every name made beside the kernel shows at once', async (t) => {
    const dir = workDir(t);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    const m = await mountAt(t, path.join(dir, 'data'), mnt);
    // A directory made through the mount is held at once (empty); its share's top after the
    // first absent name looked up in it.
    const made = await sh(`set -e; mkdir ${mnt}/s; printf hello > ${mnt}/s/a; mkdir ${mnt}/s/d`);
    t.equal(made.code, 0, made.stderr);
    const hits0 = m.session.nameHits;
    // rsync's pattern: the generator's stat, the receiver's open, an O_EXCL create and a rename
    // onto an absent name (the kernel asks the last two whatever it caches).
    const rs = await sh(`set -e; cd ${mnt}/s/d; for i in 1 2 3; do stat x >/dev/null 2>&1 || echo absent; done; cat x 2>/dev/null || echo absent; printf y > .x.tmp; mv .x.tmp x; cat x; echo; ls -a | tr "\\n" " "`);
    t.equal(rs.stdout, 'absent\nabsent\nabsent\nabsent\ny\n. .. x ', `rsync's steps (${rs.stderr.trim()})`);
    t.equal(m.lookups.get('x') ?? 0, 0, 'no lookup of the absent name reached JavaScript');
    t.equal(m.lookups.get('.x.tmp') ?? 0, 0, 'nor of the temporary name');
    t.ok(m.session.nameHits - hits0 >= 3, `the addon answered them, the kernel kept the first stat's answer (${m.session.nameHits - hits0})`);
    t.equal(m.llfs.invalidations, 0, 'names the kernel made need no invalidation');
    // Names made beside the kernel show at once (the kernel keeps the addon's answers, so each is
    // invalidated): a fastcopy, a fastcopy onto a removed name, a restore from a snapshot (whose
    // raw records empty the table: the directory is still followed) and a second fastcopy.
    const absentNow = async (names: string[]) => (await sh(`cd ${mnt}/s/d; for n in ${names.join(' ')}; do stat $n >/dev/null 2>&1 && echo $n; done; true`)).stdout;
    t.equal(await absentNow(['f', 'x2', 'r', 'n']), '', 'none of them exist yet');
    await m.ns.fastcopy.copy('s/a', 's/d/f');
    t.equal((await sh(`cat ${mnt}/s/d/f`)).stdout, 'hello', 'a fastcopy into the held directory reads at once');
    t.equal(m.llfs.invalidations, 1, "the kernel's negative entry was invalidated");
    t.equal((await sh(`set -e; rm ${mnt}/s/d/x; stat ${mnt}/s/d/x 2>/dev/null || echo gone`)).stdout, 'gone\n', 'removed through the mount');
    await m.ns.fastcopy.copy('s/a', 's/d/x');
    t.equal((await sh(`cat ${mnt}/s/d/x`)).stdout, 'hello', 'a fastcopy onto the removed name reads at once');
    t.equal((await m.ns.snapshots.create('s', 'one')).name, 'one');
    t.equal(await absentNow(['r']), '', 'r absent after the snapshot');
    await m.ns.fastcopy.copy('s/.snapshots/one/a', 's/d/r');
    t.equal((await sh(`cat ${mnt}/s/d/r`)).stdout, 'hello', 'a restore from the snapshot reads at once');
    t.equal(await absentNow(['n']), '', 'n absent');
    await m.ns.fastcopy.copy('s/d/r', 's/d/n');
    t.equal((await sh(`cat ${mnt}/s/d/n`)).stdout, 'hello', 'a second fastcopy after the table was emptied and filled again reads at once');
    t.equal((await sh(`ls ${mnt}/s/.snapshots/one; stat -c %F ${mnt}/s/.snapshots`)).stdout, 'a\nd\ndirectory\n', '.snapshots is never answered absent');
  });

  t.test("a read-only descriptor's close is answered by the addon until a POSIX lock is asked for; then it drops the caller's locks", async (t) => {
    const dir = workDir(t);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    const m = await mountAt(t, path.join(dir, 'data'), mnt);
    const made = await sh(`set -e; mkdir ${mnt}/s; printf hello > ${mnt}/s/f; chmod 600 ${mnt}/s/f`);
    t.equal(made.code, 0, made.stderr);
    // rsync's last step per file: open read-only, fchmod, close.
    const before = m.session.quietFlushes;
    const ro = await sh(`set -e; cd ${mnt}/s; python3 -c "import os; fd = os.open('f', os.O_RDONLY); os.fchmod(fd, 0o644); os.close(fd)"; stat -c %a f; cat f`);
    t.equal(ro.stdout, '644\nhello', `fchmod through a read-only descriptor (${ro.stderr.trim()})`);
    t.equal(m.session.quietFlushes - before, 2, "its close's flush (and cat's) was answered by the addon");
    // A written file's close still commits through JavaScript: its bytes are there after a remount.
    const w = await sh(`set -e; cd ${mnt}/s; printf world > g`);
    t.equal(w.code, 0);
    t.equal(m.session.quietFlushes - before, 2, 'a writable descriptor\'s flush reached JavaScript');
    // POSIX locks: closing any descriptor of the file drops the caller's locks on it, also one
    // opened read-only after the lock was taken.
    fs.writeFileSync(
      path.join(dir, 'lk.py'),
      `import fcntl, os, subprocess, sys
fd = os.open('f', os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
probe = "import fcntl, os\\nfd = os.open('f', os.O_RDWR)\\ntry:\\n  fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0); print('got')\\nexcept OSError as e: print('refused')"
print(subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True).stdout.strip())
ro = os.open('f', os.O_RDONLY)
os.close(ro)
print(subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True).stdout.strip())
`,
    );
    const lk = await sh(`cd ${mnt}/s && python3 ${dir}/lk.py`);
    t.equal(lk.stdout, 'refused\ngot\n', `held, then dropped by the read-only descriptor's close (${lk.stderr.trim()})`);
    const after = m.session.quietFlushes;
    const ro2 = await sh(`set -e; cd ${mnt}/s; cat f >/dev/null`);
    t.equal(ro2.code, 0);
    t.equal(m.session.quietFlushes, after, 'once a lock was asked for, every flush reaches JavaScript');
    await m.stop();
    const again = await mountAt(t, path.join(dir, 'data'), mnt);
    t.equal((await sh(`cat ${mnt}/s/f ${mnt}/s/g; stat -c %a ${mnt}/s/f`)).stdout, 'helloworld644\n', 'the bytes and the mode after a remount');
    await again.stop();
  });

  t.test('1 MiB writes (payloads kept without a copy) and an overwrite inside them read back exactly', async (t) => {
    const dir = workDir(t);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    await mountAt(t, path.join(dir, 'data'), mnt);
    // Sources beside the mount (written by this process, never through its own mount).
    const src = path.join(dir, 'src');
    const patch = path.join(dir, 'patch');
    const want = path.join(dir, 'want');
    const data = crypto.randomBytes(24 << 20);
    const p = crypto.randomBytes(1 << 20);
    fs.writeFileSync(src, data);
    fs.writeFileSync(patch, p);
    const w = Buffer.from(data);
    p.copy(w, 5 << 20);
    p.copy(w, (9 << 20) + 4096, 0, 8192);
    fs.writeFileSync(want, w);
    // O_DIRECT: each dd block is one FUSE write of 1 MiB (the binding's max_write).
    const r = await sh(
      [
        'set -e',
        'mkdir -p s',
        `dd if=${src} of=s/f bs=1M oflag=direct status=none`,
        `dd if=${patch} of=s/f bs=1M seek=5 conv=notrunc oflag=direct status=none`,
        `dd if=${patch} of=s/f bs=4096 count=2 seek=${((9 << 20) + 4096) / 4096} conv=notrunc status=none`,
        'sync s/f',
        `cmp s/f ${want} && echo same`,
      ].join('\n'),
      { cwd: mnt, timeout: 300_000 },
    );
    t.equal(r.code, 0, `shell ran (${r.stderr.trim()})`);
    t.equal(r.stdout.trim(), 'same', 'the file reads back as written, overwrites included');
  });

  t.test("a snapshot's files stay in the page cache across opens; a share's do not", async (t) => {
    const dir = workDir(t);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    const m = await mountAt(t, path.join(dir, 'data'), mnt);
    const made = await sh('set -e; mkdir s; head -c 4194304 /dev/urandom > s/f; sync s/f', { cwd: mnt });
    t.equal(made.code, 0, made.stderr);
    await m.ns.snapshots.create('s', 'p');
    // Read once, then fincore opens the file again and counts its pages in memory: an open
    // without FOPEN_KEEP_CACHE drops them (a share's file may have changed beside the kernel).
    const resident = async (f: string) => {
      const r = await sh(`cat ${f} > /dev/null && fincore -b -n -o RES ${f}`, { cwd: mnt });
      t.equal(r.code, 0, r.stderr);
      return Number(r.stdout.trim());
    };
    t.equal(await resident('s/.snapshots/p/f'), 4 << 20, "the snapshot's file is read from the page cache at its next open");
    t.equal(await resident('s/f'), 0, "the share's file is not kept across opens");
  });

  t.test('fallocate, SEEK_DATA/SEEK_HOLE, copy_file_range, locks', async (t) => {
    const dir = workDir(t);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    const m = await mountAt(t, path.join(dir, 'data'), mnt);
    const py = `
import os, fcntl, sys
os.chdir(${JSON.stringify(mnt)} + '/s')
data = os.urandom(3 << 20)
with open('img', 'wb') as f: f.write(data)
fd = os.open('img', os.O_RDWR)
os.posix_fallocate(fd, 0, 1 << 20)
print(os.fstat(fd).st_size == (3 << 20))
print(os.lseek(fd, 4096, os.SEEK_DATA), os.lseek(fd, 4096, os.SEEK_HOLE))
z = os.open('sparse', os.O_RDWR | os.O_CREAT, 0o644)
os.write(z, os.urandom(1 << 20)); os.write(z, bytes(2 << 20)); os.write(z, os.urandom(1 << 20))
print(os.lseek(z, 0, os.SEEK_HOLE), os.lseek(z, (3 << 20) // 2, os.SEEK_DATA), os.lseek(z, 0, os.SEEK_DATA))
os.close(z)
out = os.open('copy', os.O_RDWR | os.O_CREAT, 0o644)
n = os.copy_file_range(fd, out, 3 << 20, 0, 0)
os.close(out)
print(n, open('copy', 'rb').read() == data)
fcntl.lockf(fd, fcntl.LOCK_EX, 100, 0)
import subprocess
other = subprocess.run([sys.executable, '-c', "import fcntl, os\\nfd = os.open('img', os.O_RDWR)\\ntry:\\n  fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 100, 0); print('got')\\nexcept OSError as e: print('refused', e.errno)"], capture_output=True, text=True)
print(other.stdout.strip())
fcntl.lockf(fd, fcntl.LOCK_UN, 100, 0)
f2 = os.open('img', os.O_RDONLY)
fcntl.flock(f2, fcntl.LOCK_EX)
other = subprocess.run(['flock', '-n', 'img', 'true'])
print('flock', other.returncode)
os.close(f2)
os.close(fd)
`;
    fs.writeFileSync(path.join(dir, 't.py'), py);
    const r = await sh(`mkdir ${mnt}/s && python3 ${dir}/t.py && fallocate -p -o 1048576 -l 1048576 ${mnt}/s/img && cmp -n 1048576 -i 1048576 ${mnt}/s/img /dev/zero && echo zeroed`, { timeout: 120_000 });
    t.equal(r.code, 0, `python ran (${r.stderr.trim().slice(-400)})`);
    const lines = r.stdout.trim().split('\n');
    t.equal(lines[0], 'True', 'fallocate inside the file keeps its size');
    t.equal(lines[1], `4096 ${3 << 20}`, 'SEEK_DATA at a data offset is that offset; SEEK_HOLE is the end');
    const [hole, data, first] = lines.splice(2, 1)[0].split(' ').map(Number);
    t.ok(hole >= 1 << 20 && hole < 1.25 * (1 << 20), `SEEK_HOLE finds the zero run that starts after 1 MiB of data (at ${hole})`);
    t.ok(data > 1.5 * (1 << 20) && data <= 3 << 20, `SEEK_DATA from inside the zeros finds the data after them (at ${data})`);
    t.equal(first, 0, 'SEEK_DATA at 0 of a file starting with data is 0');
    t.equal(lines[2], `${3 << 20} True`, 'copy_file_range of the whole file copies it all');
    t.match(lines[3], /^refused 11$/, 'a second process cannot take a conflicting POSIX lock');
    t.equal(lines[4], 'flock 1', 'flock -n fails while another open file holds an exclusive flock');
    t.equal(lines[5], 'zeroed', 'a punched hole reads as zeros');
    const attr = await m.ns.fs.getattr('/s/copy');
    t.equal(attr.size, 3 << 20, 'the copy has the full size');
    // 3 MiB + 4 MiB written, 1 MiB of zeros punched; the copy itself took the source's tree.
    t.equal((await m.ns.store.stats()).ingestedBytes, 8 << 20, 'the whole-file copy_file_range ingested nothing (a fastcopy)');
  });

  t.test('interrupts: a blocked flock or F_SETLKW gives up with EINTR when its caller gets a signal', async (t) => {
    const dir = workDir(t);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    const m = await mountAt(t, path.join(dir, 'data'), mnt);
    // One process holds an exclusive flock and a POSIX write lock; others wait for them with a
    // 1 s alarm (flock -w 1, and SIGALRM around fcntl(F_SETLKW); Python retries a call that
    // failed with EINTR unless the handler raises). Without interrupts the kernel waits for our
    // answer until the waiter is killed: the shell's timeout below would hit.
    const py = `
import fcntl, os, signal, subprocess, sys, time
os.chdir(${JSON.stringify(mnt)} + '/s')
fd = os.open('f', os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
t0 = time.time()
r = subprocess.run(['flock', '-w', '1', 'f', 'true'])
print('flock', r.returncode, round(time.time() - t0))
w = subprocess.run([sys.executable, '-c', '''
import fcntl, os, signal, time
class Alarm(Exception): pass
def ring(*a): raise Alarm()
signal.signal(signal.SIGALRM, ring)
fd = os.open("f", os.O_RDWR)
signal.alarm(1)
t0 = time.time()
try:
    fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0); print("got")
except Alarm:
    print("setlkw interrupted", round(time.time() - t0))
'''], capture_output=True, text=True)
print(w.stdout.strip())
fcntl.flock(fd, fcntl.LOCK_UN)
r = subprocess.run(['flock', '-w', '5', 'f', 'true'])
print('after', r.returncode)
`;
    fs.writeFileSync(path.join(dir, 'i.py'), py);
    const r = await sh(`mkdir ${mnt}/s && timeout -s KILL 30 python3 ${dir}/i.py`, { timeout: 60_000 });
    t.equal(r.code, 0, `python ran (${r.stderr.trim().slice(-400)})`);
    const lines = r.stdout.trim().split('\n');
    t.equal(lines[0], 'flock 1 1', 'flock -w 1 gives up after its 1 s (the interrupted flock answered EINTR)');
    t.equal(lines[1], 'setlkw interrupted 1', 'F_SETLKW returns to its caller when SIGALRM interrupts it after 1 s');
    t.equal(lines[2], 'after 0', 'an interrupted waiter left the queue: the next one gets the lock once it is free');
    const node = (await m.ns.nodes.lookup((await m.ns.nodes.lookup(1n, 's')).ino, 'f')).ino;
    t.equal(m.llfs.locks.waiting(node), 0, 'no waiter is left behind');
  });

  t.test("audited mount operations carry the caller's uid, gid and pid", async (t) => {
    const dir = workDir(t);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    const events: MountAuditEvent[] = [];
    await mountAt(t, path.join(dir, 'data'), mnt, (e) => events.push(e));
    // Each command is exec'd by the shell that printed its pid, so the pid is the caller's own.
    const r = await sh(
      `set -e; sh -c 'echo $$; exec mkdir ${mnt}/sh1'; head -c 300000 /dev/urandom > ${mnt}/sh1/a; ` +
        `sh -c 'echo $$; exec python3 -c "import os; i = os.open(\\"${mnt}/sh1/a\\", os.O_RDONLY); o = os.open(\\"${mnt}/sh1/b\\", os.O_WRONLY | os.O_CREAT, 0o644); print(os.copy_file_range(i, o, 1 << 20, 0, 0))"'; ` +
        `mkdir ${mnt}/sh1/inner; sh -c 'echo $$; exec rmdir ${mnt}/sh1' || true; ` +
        `mkdir ${mnt}/sh2; sh -c 'echo $$; exec rmdir ${mnt}/sh2'`,
      { uid: 0, gid: 0 },
    );
    t.equal(r.code, 0, `commands ran (${r.stderr.trim()})`);
    const [mkPid, cpPid, copied, rmFailPid, rmPid] = r.stdout.trim().split('\n').map(Number);
    t.equal(copied, 300000, 'the whole file was copied');
    const ops = events.map((e) => `${e.op} ${JSON.stringify(e.target.share ?? e.target.bytes)} ${e.error ?? 'ok'}`);
    t.same(ops, ['mkdir "sh1" ok', 'copy_file_range 300000 ok', 'rmdir "sh1" NOT_EMPTY', 'mkdir "sh2" ok', 'rmdir "sh2" ok'], 'shares made and removed and the fastcopy are audited, the failed rmdir with its code; plain mkdir inside a share is not');
    t.same(events.map((e) => e.pid), [mkPid, cpPid, rmFailPid, events[3]!.pid, rmPid], 'each record names the calling process');
    t.ok(events.every((e) => e.uid === 0 && e.gid === 0), 'and its uid and gid');
  });

  t.test('two QEMUs cannot open one image read-write (their OFD locks reach the mount)', { skip: fs.existsSync('/usr/bin/qemu-io') ? false : 'no qemu-io' }, async (t) => {
    const dir = workDir(t);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    await mountAt(t, path.join(dir, 'data'), mnt);
    const img = path.join(mnt, 'q', 'disk.raw');
    t.equal((await sh(`mkdir ${mnt}/q && qemu-img create -f raw ${img} 16M`)).code, 0, 'image made');
    // The first QEMU runs a guest (stopped: -S) with the image as its disk, which takes the
    // image's write permission unshared: OFD locks on QEMU's lock bytes.
    const holder = spawn('qemu-system-x86_64', ['-S', '-nodefaults', '-display', 'none', '-machine', 'accel=tcg', '-drive', `file=${img},format=raw,if=none,id=d0`, '-device', 'virtio-blk-pci,drive=d0'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let held = '';
    holder.stderr!.on('data', (d) => (held += d));
    const gone = new Promise((r) => holder.once('exit', r));
    t.teardown(async () => {
      holder.kill('SIGKILL');
      await gone;
    });
    // Until the guest has its disk open, a second writer still gets in: try for a while.
    let second: Ran = { code: 0, stdout: '', stderr: '' };
    for (let i = 0; i < 30 && second.code === 0; i++) {
      await new Promise((r) => setTimeout(r, 500));
      second = await sh(`qemu-io -f raw -c 'write 0 4k' ${img}`);
    }
    t.not(second.code, 0, `a second QEMU opening it read-write fails (${held.trim().slice(0, 200)})`);
    t.match(second.stdout + second.stderr, /lock/i, `because of the lock (${(second.stdout + second.stderr).trim().slice(0, 200)})`);
    holder.kill('SIGTERM');
    await gone;
    const third = await sh(`qemu-io -f raw -c 'write 0 4k' ${img}`);
    t.equal(third.code, 0, `once the first QEMU quit, the image opens read-write (${third.stderr.trim()})`);
  });

  t.test('file handles still open after drop_caches and after the store is reopened and mounted again (no ESTALE)', async (t) => {
    const dir = workDir(t);
    const mnt = path.join(dir, 'mnt');
    const data = path.join(dir, 'data');
    fs.mkdirSync(mnt);
    const py = path.join(dir, 'h.py');
    fs.writeFileSync(py, HANDLES_PY);
    const first = await mountAt(t, data, mnt);
    const made = await sh(
      `set -e; mkdir -p ${mnt}/nfs/a/b; printf content > ${mnt}/nfs/a/b/f; touch ${mnt}/nfs/a/b/g; sync; python3 ${py} make ${mnt}/nfs/a/b/f; python3 ${py} make ${mnt}/nfs/a/b`,
    );
    t.equal(made.code, 0, `handles made (${made.stderr.trim()} ${made.stdout.trim()})`);
    const [fileH, dirH] = made.stdout.trim().split('\n').map((l) => l.split(' '));
    const check = async (when: string) => {
      const f = await sh(`python3 ${py} read ${mnt} ${fileH[0]} ${fileH[1]}`);
      t.equal(f.stdout.trim(), 'content', `the file's handle opens ${when} (${f.stderr.trim()})`);
      const d = await sh(`python3 ${py} list ${mnt} ${dirH[0]} ${dirH[1]}`);
      t.equal(d.stdout.trim(), 'f g', `the directory's handle opens and lists ${when} (${d.stderr.trim()})`);
    };
    await check('at once');
    await sh('sync; echo 3 > /proc/sys/vm/drop_caches');
    await check('after drop_caches');
    await first.stop();
    await mountAt(t, data, mnt);
    await check('after the store was closed, reopened and mounted again');
  });
}
