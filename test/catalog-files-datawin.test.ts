// Reads through `<image>.files/` answered by the addon (issue 15): a file of a raw disk's
// partition is mapped at open onto its image's stored version (CatalogService.mapping), and the
// store's read-ahead windows of the image are registered with the addon in the file's own offsets
// (fuse/ll-datawin.ts `map`), so its sequential reads are answered on libfuse's threads as the
// image's own are. Through the real kernel over a real store, namespace, catalog and mount, a
// file of several extents with holes between them is read (1) in order, (2) in order with reads
// at random offsets and sizes ahead of the reader, inside the windows the addon holds, each
// after its pages were dropped from the kernel's cache, (3) at random alone; every read is
// compared with the source file (the model) and the file's extents in the image with it too.
// This process serves the mount, so every read of it is a child process.
//
// Checked to fail: without the mapping (withVirtualTree given no DataWindows, as on main) no
// `.files/` read is answered by the addon ('answered' 0); with the mapping's file offsets shifted
// by 4 KiB in CatalogService.mapping, the sequential passes read wrong bytes. The count of
// requests that reached JavaScript is noted, not asserted (it depends on timing).

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { CatalogFilesView } from '../src/catalog/files-view.js';
import { LlMount } from '../src/fuse/ll-mount.js';
import { fuse3Available, type LlSession } from '../src/fuse/ll/session.js';
import { makeExtDisk, makeTree, seeded } from './helpers/ext-image.js';
import { catalogedPoint } from './helpers/catalog-point.js';
import { tmpDir } from './helpers/tmpdir.js';
import { shScript } from './helpers/sh-script.js';

const MiB = 1024 * 1024;

// argv: the file through .files/, the source file (the model). Prints "<pass> <reads> <bad>".
const PY = `
import os, sys, random
MiB = 1 << 20
f, src = sys.argv[1], sys.argv[2]
model = open(src, 'rb').read()
size = len(model)
rnd = random.Random(15)
def check(r, off, n):
    return os.pread(r, n, off) == model[off:off + n]
def seq(what, ahead):
    r = os.open(f, os.O_RDONLY)
    os.posix_fadvise(r, 0, 0, os.POSIX_FADV_DONTNEED)
    reads = bad = 0
    for off in range(0, size, 64 * 1024):
        if ahead and off % (2 * MiB) == MiB:
            for _ in range(3):
                at = min(size - 1, off + rnd.randrange(0, 6 * MiB))
                n = min(size - at, rnd.randrange(1, 300000))
                os.posix_fadvise(r, at, n, os.POSIX_FADV_DONTNEED)
                reads += 1
                if not check(r, at, n): bad += 1
        reads += 1
        if not check(r, off, min(64 * 1024, size - off)): bad += 1
    os.close(r)
    print(what, reads, bad)
def scattered(what):
    r = os.open(f, os.O_RDONLY)
    os.posix_fadvise(r, 0, 0, os.POSIX_FADV_DONTNEED)
    reads = bad = 0
    for _ in range(200):
        at = rnd.randrange(0, size)
        n = min(size - at, rnd.randrange(1, 2 * MiB))
        os.posix_fadvise(r, at, n, os.POSIX_FADV_DONTNEED)
        reads += 1
        if not check(r, at, n): bad += 1
    os.close(r)
    print(what, reads, bad)
seq('seq', False)
seq('ahead', True)
seq('ahead2', True)
scattered('random')
sys.stdout.flush()
`;

const why = !fs.existsSync('/dev/fuse') ? 'no /dev/fuse' : process.getuid?.() !== 0 ? 'needs root' : !fuse3Available() ? 'the fuse3 addon is not built (libfuse3-dev)' : '';
if (why) {
  t.plan(0, `.files/ reads answered by the addon: ${why}`);
} else {
  t.test('.files/ reads answered from the image\'s read-ahead windows in C read as the source file', async (t) => {
    // Teardowns run last registered first: the directory goes after the mount and the store.
    const dir = tmpDir(t);
    const undo: Array<() => unknown> = [];
    t.teardown(async () => {
      for (const fn of undo.reverse()) await fn();
    });
    const tree = path.join(dir, 'tree');
    makeTree(tree, { 'etc/hostname': 'web01\n' });
    // Zero runs of whole blocks stay unallocated (mkfs.ext4 -d): three extents with two holes,
    // each extent longer than the store's 4 MiB read-ahead windows.
    const big = Buffer.concat([seeded('big:a', 10 * MiB + 5000), Buffer.alloc(2 * MiB), seeded('big:b', 12 * MiB), Buffer.alloc(MiB), seeded('big:c', 9 * MiB - 3000)]);
    fs.mkdirSync(path.join(tree, 'var/lib'), { recursive: true });
    fs.writeFileSync(path.join(tree, 'var/lib/big.bin'), big);
    const disk = path.join(dir, 'd.raw');
    makeExtDisk(disk, tree, 64);

    const { ns, cat } = await catalogedPoint(dir, disk, undo);

    // The catalog's extents, applied to the image, are the source file: the model the addon's
    // mapping must follow.
    const loc = cat.locate('web01', 'p1', '/var/lib/big.bin');
    const ext = loc.reader.extents(loc.row.id);
    t.ok(ext.length >= 3, `big.bin has ${ext.length} extents with holes between them`);
    const image = fs.readFileSync(disk);
    const byExtents = Buffer.alloc(big.length);
    for (const x of ext) image.copy(byExtents, x.logical, MiB + x.physical, MiB + x.physical + Math.min(x.length, big.length - x.logical));
    t.ok(byExtents.equals(big), 'the extents read from the image are the source file');

    // Requests that reach JavaScript (spy on the real readWith, no double).
    let toJs = 0;
    const realWith = cat.readWith.bind(cat);
    cat.readWith = (l, offset, length, use) => {
      toJs++;
      return realWith(l, offset, length, use);
    };
    const mnt = path.join(dir, 'mnt');
    const mount = new LlMount(mnt, ns, { mkdir: true, log: (l) => t.comment(l), virtual: new CatalogFilesView(ns, cat) });
    await mount.mount();
    undo.push(() => mount.unmount());
    const session = (mount as unknown as { session: LlSession }).session;

    fs.writeFileSync(path.join(dir, 't.py'), PY);
    const file = path.join(mnt, 'web01/.snapshots/p1/vda.raw.files/p1/var/lib/big.bin');
    const r = await shScript(`python3 ${dir}/t.py ${file} ${path.join(tree, 'var/lib/big.bin')}`);
    t.equal(r.code, 0, `python ran (${r.stderr.trim().slice(-400)})`);
    const lines = r.stdout.trim().split('\n').map((l) => l.split(' '));
    t.same(lines.map(([what]) => what), ['seq', 'ahead', 'ahead2', 'random'], 'every pass ran');
    for (const [what, reads, bad] of lines) t.equal(bad, '0', `${what}: ${reads} reads, every one equal to the source file`);
    const st = session.dataWindows;
    t.comment(`requests to JavaScript: ${toJs}, answered by the addon: ${st.answered}`);
    t.ok(st.answered >= 20, `${st.answered} reads of .files/ answered by the addon from the image's windows (none before)`);
    t.equal(st.bytes, 0, 'every window was given back once the file was closed');
    t.equal(st.windows, 0, 'no window entry left');
  });
}
