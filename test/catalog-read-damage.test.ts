// Damaged filesystems: seeded random bytes written over the metadata of real ext4 and XFS images
// (superblock excepted, which the bad-input test covers) must never crash, hang or allocate
// wildly: each walk ends with entries and notes, or with a typed error, in bounded time.
// VMVAULT_DAMAGE_ROUNDS=N for more rounds (default 12 per filesystem).

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from './helpers/tmpdir.js';
import { makeExt, makeTree, makeXfs, sh } from './helpers/guest-images.js';
import { openFileSource } from '../src/catalog/file-source.js';
import { findVolumes, openDisk, readFileRange, walkFilesystem } from '../src/catalog/source.js';
import { isVmvaultError } from '../src/errors.js';

const rounds = Number(process.env.VMVAULT_DAMAGE_ROUNDS ?? 12);
const work = tmpDir(t, 'vmvault-catalog-damage-');
const tree = path.join(work, 'tree');
makeTree(tree, { posix: true, many: 400 });
const ext4 = path.join(work, 'ext4.img');
const xfs = path.join(work, 'xfs.img');
makeExt(ext4, tree, 32);
makeXfs(xfs, tree, path.join(work, 'mnt'));

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 2 ** 32; };
}

/**
 * Where metadata lies: the image's non-zero 4 KiB blocks that hold no file data (the pristine
 * image's walk gives the data extents), past the first 4 KiB (the superblock).
 */
async function metadataBlocks(img: string): Promise<number[]> {
  const src = await openFileSource(img);
  const data = new Set<number>();
  try {
    for (const v of await findVolumes(await openDisk(src))) {
      for await (const e of walkFilesystem(v)) {
        for (const x of e.extents ?? []) for (let b = Math.floor(x.physical / 4096); b * 4096 < x.physical + x.length; b++) data.add(b);
      }
    }
  } finally {
    await src.close();
  }
  const buf = fs.readFileSync(img);
  const out: number[] = [];
  for (let b = 1; b * 4096 < buf.length; b++) {
    if (data.has(b)) continue;
    const blk = buf.subarray(b * 4096, (b + 1) * 4096);
    if (blk.some((x) => x !== 0)) out.push(b);
  }
  return out;
}

async function damage(src: string, out: string, seed: number, blocks: number[]): Promise<void> {
  sh('cp', ['--sparse=always', src, out]);
  const r = rng(seed);
  const fd = fs.openSync(out, 'r+');
  try {
    for (let i = 0; i < 200; i++) {
      const at = blocks[Math.floor(r() * blocks.length)] * 4096 + Math.floor(r() * 4096);
      const len = 1 + Math.floor(r() * 16);
      const junk = Buffer.alloc(len);
      for (let k = 0; k < len; k++) junk[k] = Math.floor(r() * 256);
      fs.writeSync(fd, junk, 0, len, at);
    }
  } finally {
    fs.closeSync(fd);
  }
}

for (const [name, img] of [['ext4', ext4], ['xfs', xfs]] as const) {
  t.test(`${name}: ${rounds} rounds of damaged metadata`, async (t) => {
    const blocks = await metadataBlocks(img);
    t.ok(blocks.length > 10, `${blocks.length} metadata blocks to damage`);
    const out = path.join(work, `${name}-damaged.img`);
    for (let i = 0; i < rounds; i++) {
      await damage(img, out, 1000 + i, blocks);
      const src = await openFileSource(out);
      const started = Date.now();
      let entries = 0, notes = 0, error = '';
      try {
        const vols = await findVolumes(await openDisk(src));
        for (const v of vols) {
          try {
            for await (const e of walkFilesystem(v, { onNote: () => notes++ })) {
              entries++;
              // Reading what was listed must not throw anything untyped either.
              if (e.type === 'file' && e.extents) await readFileRange(v, e, 0, Math.min(e.size, 65536)).catch((err) => {
                if (!isVmvaultError(err)) throw err;
              });
            }
          } catch (err) {
            if (!isVmvaultError(err)) throw err;
            error = (err as Error).message;
          }
        }
      } finally {
        await src.close();
      }
      t.ok(Date.now() - started < 60_000, `round ${i}: ${entries} entries, ${notes} notes${error ? `, error: ${error}` : ''}`);
    }
  });
}
