// The ext walker's synchronous path (catalog7): a day-1 build parses most inodes and their
// extents without a promise each (ExtFs.inodeNow, entryOfNow) and takes a directory's entries
// as one batch (walkFilesystemBatches). Held to the asynchronous path it replaces: on images
// made by mkfs from a tree with a sparse file of 100 extents (an extent tree below the inode),
// short and long symlinks, a multi-block directory, inline data (ext4 -O inline_data) and block
// maps (ext2), every entry the batched walk gives equals what inode() + entryOf() give for it,
// the flat walk gives the same entries in the same order, and the fast path answered for most.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from './helpers/tmpdir.js';
import { listTree, makeExt, makeTree } from './helpers/guest-images.js';
import { openFileSource } from '../src/catalog/file-source.js';
import { ExtFs, entryOf, entryOfNow } from '../src/catalog/fs/ext.js';
import { findVolumes, openDisk, walkFilesystem, walkFilesystemBatches, type FileEntry } from '../src/catalog/source.js';

const work = tmpDir(t, 'vmvault-catalog-ext-walk-');
const tree = path.join(work, 'tree');
makeTree(tree, { posix: true, many: 400, sparse: true });
const ref = listTree(tree);

for (const [name, type, features, fastShare] of [
  ['ext4', 'ext4', [], 0.9],
  ['ext4 inline_data', 'ext4', ['inline_data'], 0.9],
  ['ext2 (block maps)', 'ext2', [], 0],
] as const) {
  t.test(`${name}: the batched walk with the synchronous path equals the asynchronous one`, async (t) => {
    const img = path.join(work, `${name.replace(/\W+/g, '-')}.img`);
    makeExt(img, tree, 48, type, [...features]);
    t.teardown(() => fs.rmSync(img, { force: true }));
    const src = await openFileSource(img);
    t.teardown(() => src.close());
    const [vol] = await findVolumes(await openDisk(src));
    t.equal(vol.fs, 'ext');

    const batches: FileEntry[][] = [];
    for await (const b of walkFilesystemBatches(vol)) batches.push(b);
    const batched = batches.flat();
    const flat: FileEntry[] = [];
    for await (const e of walkFilesystem(vol)) flat.push(e);
    t.same(flat, batched, 'the flat walk gives the same entries in the same order');
    t.equal(batched.length, ref.length + 1, `every entry of the tree (${ref.length}) and lost+found`);
    t.ok(batches.length < batched.length / 4, `a directory's entries at a time (${batches.length} batches)`);

    // Each entry against the asynchronous path, from a fresh reader with its tables read.
    const fsx = await ExtFs.open(vol);
    const bad: string[] = [];
    let now = 0;
    const notes: string[] = [];
    for (const e of batched) {
      const ino = await fsx.inode(e.inode);
      const slow = await entryOf(fsx, ino, e.path, (n) => notes.push(n));
      if (JSON.stringify(slow.entry) !== JSON.stringify(e)) bad.push(`${e.path}: walk ${JSON.stringify(e)} vs entryOf ${JSON.stringify(slow.entry)}`);
      const parsed = fsx.inodeNow(e.inode);
      if (parsed && JSON.stringify(parsed) !== JSON.stringify(ino)) bad.push(`${e.path}: inodeNow differs from inode()`);
      const fast = entryOfNow(fsx, ino, e.path);
      if (fast) {
        now++;
        if (JSON.stringify(fast) !== JSON.stringify(slow)) bad.push(`${e.path}: entryOfNow ${JSON.stringify(fast)} vs entryOf ${JSON.stringify(slow)}`);
      }
    }
    t.same(bad.slice(0, 5), [], 'every entry as inode() + entryOf() give it');
    t.same(notes, [], 'no notes');
    const sparse = batched.find((e) => e.path === '/sparse.img')!;
    if (type === 'ext4') {
      t.ok(sparse.extents!.length >= 100 && sparse.deps && sparse.deps.length > 0, `the sparse file: 100 islands as extents from a tree below the inode (deps recorded): ${sparse.extents!.length}, ${JSON.stringify(sparse.deps)}`);
      t.equal(entryOfNow(fsx, await fsx.inode(sparse.inode), sparse.path), undefined, 'which the synchronous path leaves to entryOf');
    }
    t.ok(now >= fastShare * batched.length, `the synchronous path answered ${now} of ${batched.length}`);
  });
}

// catalog9: a directory's data in one extent from 0 (nearly all of them) is the read of that
// extent itself, not a copy into a zeroed buffer of its own (an ArrayBuffer per directory was
// ~2% of a day-1 build's samples, and external memory that brought the collector sooner); a
// directory in several extents is still put together, and both give the bytes the image holds.
t.test('ext4: a directory in one extent is read without a copy; the bytes are the same either way', async (t) => {
  const img = path.join(work, 'readdata.img');
  makeExt(img, tree, 48, 'ext4');
  t.teardown(() => fs.rmSync(img, { force: true }));
  const src = await openFileSource(img);
  t.teardown(() => src.close());
  const [vol] = await findVolumes(await openDisk(src));
  // The buffers the volume handed out: a result that is one of them was not copied.
  const given = new Set<ArrayBufferLike>();
  const watched = { ...vol, read: async (offset: number, length: number) => {
    const b = await vol.read(offset, length);
    given.add(b.buffer);
    return b;
  } };
  const fsx = await ExtFs.open(watched);
  let one = 0;
  let several = 0;
  for await (const batch of walkFilesystemBatches(vol)) {
    for (const e of batch) {
      if (e.type !== 'dir') continue;
      const ino = await fsx.inode(e.inode);
      const ext = await fsx.extents(ino);
      const data = await fsx.readData(ino, ext);
      // The image's own bytes, extent by extent, from the file itself.
      const want = Buffer.alloc(ino.size);
      for (const x of ext) (await vol.read(x.physical, Math.min(x.length, ino.size - x.logical))).copy(want, x.logical);
      t.ok(data.equals(want), `${e.path}: the directory's bytes`);
      if (ext.length === 1 && ext[0].logical === 0) {
        one++;
        t.ok(given.has(data.buffer), `${e.path}: one extent, the read itself (no copy)`);
      } else several++;
    }
  }
  t.ok(one >= 5, `directories in one extent: ${one} (in several: ${several})`);
});
