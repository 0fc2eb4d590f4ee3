// tools/setup.sh's package choice, in its dry mode (apt only simulated, nothing changed), with
// the installed set given by VMVAULT_SETUP_ASSUME_INSTALLED (issue 10): fuse3 is kept rather
// than replaced by fuse; what apt would remove is refused, found by apt's own simulation on this
// machine; apt's output is shown when apt fails; every apt-get waits for the dpkg lock.

import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = path.join(root, 'tools', 'setup.sh');

function dry(args: string[], env: Record<string, string>): Promise<{ code: number; err: string }> {
  return new Promise((resolve) => {
    execFile(script, ['--dry-run', ...args], { env: { PATH: process.env.PATH ?? '', LC_ALL: 'C', ...env } }, (error, _stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? -1) : 0, err: stderr });
    });
  });
}

function installedHere(pkg: string): boolean {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' }).includes('install ok installed');
  } catch {
    return false;
  }
}

let hasApt = true;
try {
  execFileSync('apt-get', ['--version'], { stdio: 'ignore' });
} catch {
  hasApt = false;
}
const skip = hasApt ? false : 'no apt-get on this machine';

t.test('nothing of FUSE installed: fuse3 and libfuse3-dev (the libfuse3 binding; no libfuse2 since fuse-native went)', { skip }, async (t) => {
  const r = await dry([], { VMVAULT_SETUP_ASSUME_INSTALLED: '' });
  t.equal(r.code, 0, r.err);
  t.match(r.err, /^vmvault setup: would install: liblz4-dev python3 make g\+\+ fuse3 libfuse3-dev sleuthkit nfs-ganesha nfs-ganesha-vfs samba$/m);
  t.notMatch(r.err, /libfuse2|would link/, 'nothing for libfuse 2');
  t.match(r.err, /would run: npm ci --no-audit --no-fund/);
});

t.test('fuse3 installed: kept, not replaced by fuse', { skip }, async (t) => {
  const r = await dry([], { VMVAULT_SETUP_ASSUME_INSTALLED: 'fuse3' });
  t.equal(r.code, 0, r.err);
  t.match(r.err, /^vmvault setup: would install: liblz4-dev python3 make g\+\+ libfuse3-dev sleuthkit nfs-ganesha nfs-ganesha-vfs samba$/m, 'fuse is not installed over fuse3');
  const all = await dry([], { VMVAULT_SETUP_ASSUME_INSTALLED: 'fuse3 liblz4-dev python3 make g++ libfuse3-dev sleuthkit nfs-ganesha nfs-ganesha-vfs samba' });
  t.match(all.err, /would install: nothing \(all present\)/);
});

t.test('fuse (2.9) installed without fuse3: kept; libfuse3-dev without fuse3, which would remove it', { skip }, async (t) => {
  const r = await dry([], { VMVAULT_SETUP_ASSUME_INSTALLED: 'fuse' });
  t.equal(r.code, 0, r.err);
  t.match(r.err, /^vmvault setup: would install: liblz4-dev python3 make g\+\+ libfuse3-dev sleuthkit nfs-ganesha nfs-ganesha-vfs samba$/m, 'fuse3 is not asked for');
  t.match(r.err, /keeping fuse, installing libfuse3-dev without fuse3/);
});

t.test('--test adds the tools the tests drive', { skip }, async (t) => {
  const r = await dry(['--test'], { VMVAULT_SETUP_ASSUME_INSTALLED: 'fuse3 libfuse3-dev liblz4-dev python3 make g++ sleuthkit nfs-ganesha nfs-ganesha-vfs samba' });
  t.equal(r.code, 0, r.err);
  t.match(r.err, /^vmvault setup: would install: qemu-utils fio rsync e2fsprogs tar clang libclang-rt-14-dev qemu-system-x86 qemu-guest-agent busybox-static linux-image-amd64 postgresql-15 cpio xfsprogs ntfs-3g lvm2 dosfstools exfatprogs mtools fdisk smbclient libnfs-utils libnfs-dev pacemaker pacemaker-cli-utils corosync libxml2-utils openssl$/m);
});

t.test('--appliance adds what building and checking the appliance image needs', { skip }, async (t) => {
  const r = await dry(['--appliance'], { VMVAULT_SETUP_ASSUME_INSTALLED: 'fuse3 libfuse3-dev liblz4-dev python3 make g++ sleuthkit nfs-ganesha nfs-ganesha-vfs samba' });
  t.equal(r.code, 0, r.err);
  t.match(r.err, /^vmvault setup: would install: debootstrap mtools dosfstools grub-pc-bin grub-efi-amd64-bin binutils qemu-utils qemu-system-x86 libxml2-utils genisoimage openssl ovmf$/m);
});

t.test("a package whose installation would remove one of the user's is refused", { skip: skip || (!installedHere('fuse') || installedHere('fuse3') ? 'needs fuse installed and fuse3 not (Debian 12)' : false) }, async (t) => {
  // Real apt simulation on this machine: fuse3 Breaks fuse.
  const r = await dry([], { VMVAULT_SETUP_EXTRA: 'fuse3' });
  t.equal(r.code, 1);
  t.match(r.err, /^vmvault setup: installing fuse3 would remove: fuse$/m);
  t.match(r.err, /refusing: vmvault setup never removes installed packages/);
  t.notMatch(r.err, /would run: npm ci/, 'stops there');
});

t.test("when apt fails, its own output is shown", { skip }, async (t) => {
  const r = await dry([], { VMVAULT_SETUP_EXTRA: 'vmvault-no-such-package' });
  t.equal(r.code, 1);
  t.match(r.err, /apt cannot install vmvault-no-such-package:/);
  t.match(r.err, /E: Unable to locate package vmvault-no-such-package/);
});

t.test('every apt-get waits for the dpkg lock', async (t) => {
  const text = fs.readFileSync(script, 'utf8');
  const code = text.split('\n').filter((l) => !l.trim().startsWith('#'));
  t.match(text, /^APT=\(apt-get -o DPkg::Lock::Timeout=600\)$/m);
  t.same(code.filter((l) => /\bapt-get\b/.test(l) && !l.startsWith('APT=(') && !/^\s*say /.test(l)), [], 'apt-get is only run through APT');
  t.ok(code.some((l) => /"\$\{APT\[@\]\}" update/.test(l)));
  t.ok(code.some((l) => /"\$\{APT\[@\]\}" install -y/.test(l)));
});
