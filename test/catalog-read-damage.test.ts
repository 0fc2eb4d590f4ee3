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

/** A source over a buffer (these headers are made in memory, no file needed). */
function bufferSource(b: Buffer) {
  return { size: b.length, read: async (o: number, l: number) => b.subarray(o, Math.min(b.length, o + l)) };
}

t.test('random headers behind real magics: typed errors or notes, nothing else', async (t) => {
  const r = rng(77);
  const make = (kind: number): Buffer => {
    const b = Buffer.alloc(256 * 1024);
    for (let i = 0; i < 8192; i++) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
    for (let i = 0; i < 1024; i++) b[Math.floor(r() * 4096)] = Math.floor(r() * 256); // headers live up front
    switch (kind) {
      case 0: b.writeUInt32BE(0x514649fb, 0); b.writeUInt32BE(2 + (i2(r) ? 1 : 0), 4); b.writeUInt32BE(16, 20); b.writeBigUInt64BE(0n, 8); b.writeUInt32BE(0, 32); break;
      case 1: b.writeUInt32LE(0x564d444b, 0); b.writeBigUInt64LE(128n, 20); b.writeUInt32LE(512, 44); break;
      case 2: b[510] = 0x55; b[511] = 0xaa; b[446 + 4] = [0x83, 0x05, 0xee, 0x8e][Math.floor(r() * 4)]; break;
      case 3: b[510] = 0x55; b[511] = 0xaa; b[446 + 4] = 0xee; b.write('EFI PART', 512, 'latin1'); break;
      case 4: b.write('LABELONE', 512, 'latin1'); b.write('LVM2 001', 512 + 24, 'latin1'); b.writeUInt32LE(32, 512 + 20); break;
      case 5: b.writeUInt16LE(0xef53, 1024 + 56); b.writeUInt32LE(2, 1024 + 24); break;
      default: b.write('XFSB', 0, 'latin1'); b.writeUInt16BE(0xb4a5, 100); b.writeUInt32BE(4096, 4); break;
    }
    return b;
  };
  function i2(f: () => number) { return f() < 0.5; }
  const bad: string[] = [];
  let notes = 0, typed = 0;
  for (let i = 0; i < 7 * 40; i++) {
    try {
      const vols = await findVolumes(await openDisk(bufferSource(make(i % 7))));
      for (const v of vols) {
        if (v.note) notes++;
        let n = 0;
        for await (const _ of walkFilesystem(v, { onNote: () => notes++ })) if (++n > 100_000) throw new Error('walk does not end');
      }
    } catch (err) {
      if (isVmvaultError(err)) typed++;
      else bad.push(`kind ${i % 7}: ${(err as Error).stack}`);
    }
  }
  t.same(bad, [], `${notes} notes, ${typed} typed errors, no untyped error`);
});
