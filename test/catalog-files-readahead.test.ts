// Reading a file through `<image>.files/` streams (issue 15): on a raw disk, a request inside
// one extent of the file is answered straight from the store's read-ahead window
// (CatalogService.readWith: no buffer of the view's, no copy), so a sequential reader on a real
// libfuse3 mount makes (almost) no buffered catalog read, where each 128 KiB kernel request
// used to be its own read (8 per MiB) and then one 1 MiB window per MiB. A request across a
// hole or an extent's edge is put together from the same read-ahead (filesread2: it took the
// buffered path, which read beside the read-ahead while the reader waited; the holey file's
// check below fails on that code: 4 buffered reads, 1 from the read-ahead) and reads zeros in the hole. The bytes
// are the source file's; a random reader still gets exactly its bytes.
// The counters wrap the real CatalogService.read and readWith (spies, no double): namespace,
// catalog and mount are real.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { CatalogFilesView } from '../src/catalog/files-view.js';
import { LlMount } from '../src/fuse/ll-mount.js';
import { makeExtDisk, makeTree, seeded } from './helpers/ext-image.js';
import { catalogedPoint } from './helpers/catalog-point.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

t.test('a sequential read through .files/ is answered from the store\'s read-ahead, not per kernel request', async (t) => {
  // tap runs teardowns last registered first: the temporary directory is registered before the
  // undo list, so the mount, catalog, namespace and store are stopped (in that order, even on
  // failure) before it is removed. The other order left the mount busy and the test hung.
  const dir = tmpDir(t);
  const undo: Array<() => unknown> = [];
  t.teardown(async () => {
    for (const fn of undo.reverse()) await fn();
  });
  const tree = path.join(dir, 'tree');
  const size = 6 * MiB + 12345;
  makeTree(tree, { 'var/lib/big.bin': size, 'etc/hostname': 'web01\n' });
  // A file with a 1 MiB hole in the middle: mkfs.ext4 -d leaves zero blocks unallocated, so the
  // file has two extents and a gap, and a 1 MiB request lies across each edge.
  const holey = Buffer.concat([seeded('holey:a', MiB + 5000), Buffer.alloc(MiB), seeded('holey:b', MiB - 3000)]);
  fs.writeFileSync(path.join(tree, 'var/lib/holey.bin'), holey);
  const disk = path.join(dir, 'd.raw');
  makeExtDisk(disk, tree, 24);

  const { ns, cat } = await catalogedPoint(dir, disk, undo);

  let reads = 0;
  let direct = 0;
  const real = cat.read.bind(cat);
  cat.read = (loc, offset, length) => {
    reads++;
    return real(loc, offset, length);
  };
  const realWith = cat.readWith.bind(cat);
  cat.readWith = (loc, offset, length, use) => {
    const r = realWith(loc, offset, length, use);
    if (r !== false) direct++;
    return r;
  };
  const mnt = path.join(dir, 'mnt');
  const mount = new LlMount(mnt, ns, { mkdir: true, log: () => {}, virtual: new CatalogFilesView(ns, cat) });
  await mount.mount();
  undo.push(() => mount.unmount());

  const file = path.join(mnt, 'web01/.snapshots/p1/vda.raw.files/p1/var/lib/big.bin');
  const want = seeded('tree:var/lib/big.bin', size);
  const got = await fs.promises.readFile(file);
  t.ok(got.equals(want), 'the bytes read through .files/ are the source file');
  const perMiB = reads / (size / MiB);
  t.ok(perMiB <= 0.5, `buffered catalog reads per MiB read: ${perMiB.toFixed(2)} (was 8, one per 128 KiB request, then 1.16 with 1 MiB windows)`);
  t.ok(direct >= size / MiB, `requests answered from the store's window without a copy: ${direct}`);

  reads = 0;
  direct = 0;
  const row = cat.locate('web01', 'p1', '/var/lib/holey.bin');
  const ext = row.reader.extents(row.row.id);
  t.ok(ext.length >= 2 && ext.every((x) => x.logical + x.length <= MiB + 8192 || x.logical >= 2 * MiB), `holey.bin has a hole in the catalog (extents ${JSON.stringify(ext)})`);
  t.ok((await fs.promises.readFile(path.join(mnt, 'web01/.snapshots/p1/vda.raw.files/p1/var/lib/holey.bin'))).equals(holey), 'a file with a hole reads back whole, zeros in the hole');
  t.equal(reads, 0, `no request across the hole's edges took the buffered path (${reads}), the image being open`);
  t.ok(direct >= 3, `every request, those across the edges too, answered from the store's read-ahead (${direct})`);

  // A random reader: a 4 KiB read in the middle gets its bytes (kernel cache dropped first).
  fs.writeFileSync('/proc/sys/vm/drop_caches', '1');
  const f = await fs.promises.open(file, 'r');
  try {
    const b = Buffer.alloc(4096);
    const at = 3 * MiB + 777;
    const { bytesRead } = await f.read(b, 0, 4096, at);
    t.equal(bytesRead, 4096, 'a 4 KiB read in the middle');
    t.ok(b.equals(want.subarray(at, at + 4096)), 'returns the source bytes at that offset');
    const tail = Buffer.alloc(65536);
    const r2 = await f.read(tail, 0, 65536, size - 100);
    t.equal(r2.bytesRead, 100, 'a read across the end stops at the end of the file');
    t.ok(tail.subarray(0, 100).equals(want.subarray(size - 100)), 'with the last bytes');
  } finally {
    await f.close();
  }
  // Asynchronous only: a synchronous read would block this process's event loop on its own mount.
  t.equal(await fs.promises.readFile(path.join(mnt, 'web01/.snapshots/p1/vda.raw.files/p1/etc/hostname'), 'utf8'), 'web01\n', 'a small file reads back');
});
