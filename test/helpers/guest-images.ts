// Guest disk images built from real tools for the catalog tests (catalog-read's and catalog-db's):
// a source tree on the host, filesystems made from it (mkfs.ext4 -d, mkfs.xfs + a root loop
// mount, mkfs.ntfs + ntfs-3g, mkfs.vfat + mtools, mkfs.exfat empty), laid out in MBR/GPT disks
// (sfdisk) and an LVM2 PV (pvcreate/vgcreate on a loop device; device-mapper is absent here,
// so the LVs are written into the metadata with vgcfgrestore from a vgcfgbackup text).
// Every step is a real tool; failures throw with the tool's stderr.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export function sh(cmd: string, args: string[], opts: { input?: string } = {}): string {
  try {
    return execFileSync(cmd, args, {
      encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], input: opts.input, timeout: 120_000,
      env: { ...process.env, LC_ALL: 'C', TZ: 'UTC', LVM_SUPPRESS_FD_WARNINGS: '1' },
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

/** A seeded byte stream (xorshift), so trees are the same every run. */
function bytes(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

export interface TreeOptions {
  /** Symlinks, modes and owners (ext, XFS); FAT and NTFS trees go without. */
  posix: boolean;
  /** How many small files in /many (a few hundred by default). */
  many?: number;
  /** A sparse file (100 data islands with holes between them). */
  sparse?: boolean;
}

/**
 * Writes a tree under `root`: nested dirs, files of sizes around block and inline limits,
 * random bytes, a directory of many small files (a multi-block/htree/leaf directory), and with
 * `posix` symlinks (short and long), modes and owners. Mtimes are set on every file, in even
 * seconds plus a millisecond part (FAT keeps 2 s, NTFS 100 ns, ext and XFS ns).
 */
export function makeTree(root: string, opts: TreeOptions): void {
  fs.mkdirSync(root, { recursive: true });
  const when = (i: number) => new Date((1_700_000_000 + i * 2) * 1000 + (opts.posix ? 123 : 0));
  let k = 0;
  const file = (rel: string, data: Buffer, mode?: number, owner?: [number, number]) => {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data);
    if (opts.posix && mode !== undefined) fs.chmodSync(p, mode);
    if (opts.posix && owner) fs.chownSync(p, owner[0], owner[1]);
    fs.utimesSync(p, when(k), when(k));
    k++;
  };
  const sizes = [0, 1, 59, 60, 61, 100, 4095, 4096, 4097, 65536, 70001, 300_000];
  sizes.forEach((n, i) => file(`sizes/s${n}.bin`, bytes(i + 1, n), 0o644));
  file('etc/app/app.conf', Buffer.from('listen 80;\nroot /srv;\n'), 0o640, [0, 4]);
  file('home/user/notes.txt', Buffer.from('hello from the guest\n'), 0o600, [1000, 1001]);
  file('home/user/deep/er/still/file.dat', bytes(99, 12345), 0o755, [1000, 1001]);
  file('bin/tool', bytes(7, 20000), 0o755);
  const many = opts.many ?? 300;
  for (let i = 0; i < many; i++) file(`many/file-with-a-longer-name-${String(i).padStart(4, '0')}.txt`, Buffer.from(`file ${i}\n`.repeat(i % 7)), 0o644);
  fs.mkdirSync(path.join(root, 'empty-dir'));
  if (opts.sparse) {
    const p = path.join(root, 'sparse.img');
    const fd = fs.openSync(p, 'w');
    // 100 islands of 4 KiB, 64 KiB apart: more extents than an XFS inode holds (btree format).
    for (let i = 0; i < 100; i++) fs.writeSync(fd, bytes(500 + i, 4096), 0, 4096, i * 65536);
    fs.ftruncateSync(fd, 7 * 1024 * 1024);
    fs.closeSync(fd);
    fs.utimesSync(p, when(k), when(k));
  }
  if (opts.posix) {
    fs.symlinkSync('../etc/app/app.conf', path.join(root, 'bin/conf-link'));
    fs.symlinkSync(`/a/long/target/${'x'.repeat(100)}/end`, path.join(root, 'bin/long-link'));
  }
  // Directories' mtimes change as entries are added: set them last, deepest first.
  const dirs: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) { walk(path.join(d, e.name)); dirs.push(path.join(d, e.name)); }
  };
  walk(root);
  for (const d of dirs) fs.utimesSync(d, when(k), when(k));
}

export interface SourceEntry {
  path: string; type: 'file' | 'dir' | 'symlink'; size: number; mtimeMs: number;
  mode: number; uid: number; gid: number; target?: string; data?: Buffer;
}

/** What the host sees of a tree (or of a mounted filesystem): the reference a walk is compared with. */
export function listTree(root: string): SourceEntry[] {
  const out: SourceEntry[] = [];
  const walk = (dir: string, rel: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      const r = `${rel}/${name}`;
      const st = fs.lstatSync(p, { bigint: true });
      const base = { path: r, mtimeMs: Number(st.mtimeNs / 1_000_000n), mode: Number(st.mode) & 0o7777, uid: Number(st.uid), gid: Number(st.gid) };
      if (st.isSymbolicLink()) out.push({ ...base, type: 'symlink', size: Number(st.size), target: fs.readlinkSync(p) });
      else if (st.isDirectory()) { out.push({ ...base, type: 'dir', size: 0 }); walk(p, r); }
      else if (st.isFile()) out.push({ ...base, type: 'file', size: Number(st.size), data: fs.readFileSync(p) });
    }
  };
  walk(root, '');
  return out;
}

const MiB = 1024 * 1024;

export function makeExt(img: string, tree: string, sizeMiB: number, type: 'ext4' | 'ext2' = 'ext4', features: string[] = []): void {
  sh(`mkfs.${type}`, ['-q', '-F', ...(features.length ? ['-O', features.join(',')] : []), '-d', tree, '-L', type, img, `${sizeMiB}M`]);
}

/** mkfs.xfs (300 MiB is its minimum) and the tree copied in through a root loop mount. */
export function makeXfs(img: string, tree: string, mnt: string): void {
  fs.closeSync(fs.openSync(img, 'w'));
  fs.truncateSync(img, 300 * MiB);
  sh('mkfs.xfs', ['-q', '-f', '-L', 'xfs', img]);
  fs.mkdirSync(mnt, { recursive: true });
  sh('mount', ['-o', 'loop', img, mnt]);
  try {
    sh('cp', ['-a', `${tree}/.`, mnt]);
  } finally {
    sh('umount', [mnt]);
  }
}

export function makeFat(img: string, tree: string, sizeMiB: number): void {
  fs.closeSync(fs.openSync(img, 'w'));
  fs.truncateSync(img, sizeMiB * MiB);
  sh('mkfs.vfat', ['-n', 'FATVOL', img]);
  const names = fs.readdirSync(tree).map((n) => path.join(tree, n));
  sh('mcopy', ['-s', '-m', '-Q', '-i', img, ...names, '::/'], {});
}

/** mkfs.ntfs and the tree copied in through ntfs-3g (a FUSE mount of the image file). */
export function makeNtfs(img: string, tree: string, sizeMiB: number, mnt: string): void {
  fs.closeSync(fs.openSync(img, 'w'));
  fs.truncateSync(img, sizeMiB * MiB);
  sh('mkfs.ntfs', ['-q', '-F', '-Q', '-L', 'ntfsvol', img]);
  fs.mkdirSync(mnt, { recursive: true });
  sh('ntfs-3g', [img, mnt]);
  try {
    sh('cp', ['-r', '--preserve=timestamps', `${tree}/.`, mnt]);
  } finally {
    sh('fusermount', ['-u', mnt]);
  }
}

export function makeExfat(img: string, sizeMiB: number): void {
  fs.closeSync(fs.openSync(img, 'w'));
  fs.truncateSync(img, sizeMiB * MiB);
  sh('mkfs.exfat', ['-L', 'exfatvol', img]);
}

export interface PartSpec { sizeMiB: number; type: string; image?: string }

/**
 * A disk of `totalMiB` with the partitions laid out by sfdisk (label 'gpt' or 'dos'; with 'dos',
 * more than 3 partitions go into an extended partition as logical ones), each filled from its
 * image. Returns each partition's start byte as sfdisk placed it.
 */
export function makeDisk(img: string, label: 'gpt' | 'dos', totalMiB: number, parts: PartSpec[]): number[] {
  fs.closeSync(fs.openSync(img, 'w'));
  fs.truncateSync(img, totalMiB * MiB);
  let script = `label: ${label}\n`;
  if (label === 'dos' && parts.length > 3) {
    script += `size=${parts[0].sizeMiB}MiB, type=${parts[0].type}\n`;
    script += 'type=5\n';
    for (const p of parts.slice(1)) script += `size=${p.sizeMiB}MiB, type=${p.type}\n`;
  } else {
    for (const p of parts) script += `size=${p.sizeMiB}MiB, type=${p.type}\n`;
  }
  sh('sfdisk', ['-q', img], { input: script });
  const dump = JSON.parse(sh('sfdisk', ['-J', img])) as { partitiontable: { partitions: Array<{ node: string; start: number; size: number; type: string }> } };
  const starts = dump.partitiontable.partitions
    .filter((p) => !(label === 'dos' && ['5', 'f', '85'].includes(String(p.type))))
    .map((p) => p.start * 512);
  parts.forEach((p, i) => {
    if (p.image) sh('dd', [`if=${p.image}`, `of=${img}`, 'bs=1M', `seek=${starts[i]}`, 'oflag=seek_bytes', 'conv=notrunc,sparse', 'status=none']);
  });
  return starts;
}

/**
 * An LVM2 PV image of `sizeMiB` holding VG `vg` (1 MiB extents) with the given LVs, each a list
 * of [first PE, PE count] segments; each LV's bytes are filled from its image, segment by
 * segment (the PE start is read back from `pvs`). Returns the PV's first-PE byte.
 */
export function makeLvmPv(img: string, sizeMiB: number, vg: string, lvs: Array<{ name: string; segments: Array<[number, number]>; image?: string }>, work: string): number {
  fs.closeSync(fs.openSync(img, 'w'));
  fs.truncateSync(img, sizeMiB * MiB);
  const conf = 'devices{obtain_device_list_from_udev=0 scan_lvs=0} activation{udev_sync=0 udev_rules=0} backup{backup=0 archive=0}';
  const loop = sh('losetup', ['-f', '--show', img]).trim();
  let peStart: number;
  try {
    sh('pvcreate', ['--config', conf, '-q', loop]);
    sh('vgcreate', ['--config', conf, '-q', '-s', '1M', vg, loop]);
    const backup = path.join(work, `${vg}.vg`);
    sh('vgcfgbackup', ['--config', conf, '-q', '-f', backup, vg]);
    let text = fs.readFileSync(backup, 'utf8');
    let block = '\n\tlogical_volumes {\n';
    lvs.forEach((lv, n) => {
      const id = `LvTest-${String(n).padStart(4, '0')}-aaaa-bbbb-cccc-dddd-eeeeee`;
      block += `\t\t${lv.name} {\n\t\t\tid = "${id}"\n\t\t\tstatus = ["READ", "WRITE", "VISIBLE"]\n\t\t\tflags = []\n\t\t\tsegment_count = ${lv.segments.length}\n`;
      let start = 0;
      lv.segments.forEach(([pe, count], i) => {
        block += `\t\t\tsegment${i + 1} {\n\t\t\t\tstart_extent = ${start}\n\t\t\t\textent_count = ${count}\n\t\t\t\ttype = "striped"\n\t\t\t\tstripe_count = 1\n\t\t\t\tstripes = [\n\t\t\t\t\t"pv0", ${pe}\n\t\t\t\t]\n\t\t\t}\n`;
        start += count;
      });
      block += '\t\t}\n';
    });
    block += '\t}\n';
    const end = text.lastIndexOf('}');
    text = text.slice(0, end) + block + text.slice(end);
    fs.writeFileSync(backup, text);
    sh('vgcfgrestore', ['--config', conf, '-q', '-f', backup, vg]);
    peStart = Number(sh('pvs', ['--config', conf, '--noheadings', '--units', 'b', '--nosuffix', '-o', 'pe_start', loop]).trim());
    sh('vgchange', ['--config', conf, '-q', '-an', vg]);
  } finally {
    sh('losetup', ['-d', loop]);
  }
  for (const lv of lvs) {
    if (!lv.image) continue;
    let done = 0;
    for (const [pe, count] of lv.segments) {
      sh('dd', [`if=${lv.image}`, `of=${img}`, 'bs=1M', `skip=${done}`, `seek=${peStart + pe * MiB}`, `count=${count * MiB}`,
        'iflag=skip_bytes,count_bytes', 'oflag=seek_bytes', 'conv=notrunc', 'status=none']);
      done += count * MiB;
    }
  }
  return peStart;
}

export function convert(raw: string, out: string, format: 'qcow2' | 'qcow2-compressed' | 'vmdk-sparse' | 'vmdk-stream'): void {
  const args = format === 'qcow2' ? ['-O', 'qcow2']
    : format === 'qcow2-compressed' ? ['-O', 'qcow2', '-c']
      : format === 'vmdk-sparse' ? ['-O', 'vmdk', '-o', 'subformat=monolithicSparse']
        : ['-O', 'vmdk', '-o', 'subformat=streamOptimized'];
  sh('qemu-img', ['convert', '-f', 'raw', ...args, raw, out]);
}
