// Stand-in ext2/3/4 walker until catalog-read's walkers land (source.ts): superblock, group
// descriptors, inodes, extent trees and block maps, linear directory blocks (an htree's index
// blocks look like one empty entry, so a linear read sees every name). Journals are not replayed.
// A damaged structure ends the walk of that directory or file with an error naming it.

import type { FileEntry, Volume } from './source.js';

const EXTENTS_FL = 0x80000;
const INLINE_FL = 0x10000000;
const S_IFMT = 0o170000;

function damaged(msg: string): Error {
  return Object.assign(new Error(msg), { code: 'CORRUPT' });
}

interface Sb {
  bs: number;
  inodeSize: number;
  ipg: number;
  inodes: number;
  tables: number[];
  fileType: boolean;
}

const sbs = new WeakMap<Volume, Promise<Sb>>();

function superblock(vol: Volume): Promise<Sb> {
  let p = sbs.get(vol);
  if (!p) {
    p = readSb(vol);
    sbs.set(vol, p);
  }
  return p;
}

async function readSb(vol: Volume): Promise<Sb> {
  const s = await vol.read(1024, 1024);
  if (s.length < 1024 || s.readUInt16LE(56) !== 0xef53) throw damaged(`${vol.name}: no ext superblock`);
  const logBs = s.readUInt32LE(24);
  if (logBs > 6) throw damaged(`${vol.name}: block size 2^${10 + logBs} in the superblock`);
  const bs = 1024 << logBs;
  const inodes = s.readUInt32LE(0);
  const ipg = s.readUInt32LE(40);
  const rev = s.readUInt32LE(76);
  const inodeSize = rev >= 1 ? s.readUInt16LE(88) : 128;
  const incompat = s.readUInt32LE(96);
  const descSize = incompat & 0x80 ? s.readUInt16LE(254) : 32;
  if (ipg === 0 || inodes === 0 || inodeSize < 128 || inodeSize > bs || descSize < 32 || descSize > 1024) throw damaged(`${vol.name}: the ext superblock is damaged (inodes ${inodes}, per group ${ipg}, inode size ${inodeSize})`);
  const groups = Math.ceil(inodes / ipg);
  const gdt = await vol.read(bs === 1024 ? 2048 : bs, groups * descSize);
  if (gdt.length < groups * descSize) throw damaged(`${vol.name}: the group descriptors lie past the end of the volume`);
  const tables: number[] = [];
  for (let g = 0; g < groups; g++) {
    const d = gdt.subarray(g * descSize);
    tables.push(d.readUInt32LE(8) + (descSize >= 64 ? d.readUInt32LE(0x28) * 2 ** 32 : 0));
  }
  return { bs, inodeSize, ipg, inodes, tables, fileType: (incompat & 0x2) !== 0 };
}

interface Inode {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  flags: number;
  block: Buffer;
  blocks: number;
}

async function readInode(vol: Volume, sb: Sb, ino: number): Promise<Inode> {
  if (ino < 1 || ino > sb.inodes) throw damaged(`${vol.name}: inode ${ino} is out of range`);
  const g = Math.floor((ino - 1) / sb.ipg);
  const at = sb.tables[g] * sb.bs + ((ino - 1) % sb.ipg) * sb.inodeSize;
  const b = await vol.read(at, sb.inodeSize);
  if (b.length < 128) throw damaged(`${vol.name}: inode ${ino} lies past the end of the volume`);
  let mtime = b.readInt32LE(16) * 1000;
  if (sb.inodeSize > 128 && b.readUInt16LE(128) >= 12) {
    const extra = b.readUInt32LE(0x88);
    mtime += (extra & 3) * 2 ** 32 * 1000 + Math.floor((extra >>> 2) / 1e6);
  }
  return {
    mode: b.readUInt16LE(0),
    uid: b.readUInt16LE(2) | (b.readUInt16LE(120) << 16),
    gid: b.readUInt16LE(24) | (b.readUInt16LE(122) << 16),
    size: b.readUInt32LE(4) + b.readUInt32LE(108) * 2 ** 32,
    mtimeMs: mtime,
    flags: b.readUInt32LE(32),
    block: Buffer.from(b.subarray(40, 100)),
    blocks: b.readUInt32LE(28),
  };
}

type Extent = { logical: number; physical: number; length: number };

async function extentsOf(vol: Volume, sb: Sb, ino: number, n: Inode): Promise<Extent[]> {
  const out: Extent[] = [];
  if (n.flags & INLINE_FL) return out;
  if (n.flags & EXTENTS_FL) await extentNode(vol, sb, ino, n.block, out, 0);
  else await blockMap(vol, sb, ino, n, out);
  // Adjacent runs merge: fewer rows in the catalog, larger reads.
  const merged: Extent[] = [];
  for (const e of out) {
    const last = merged[merged.length - 1];
    if (last && last.logical + last.length === e.logical && last.physical + last.length === e.physical) last.length += e.length;
    else merged.push({ ...e });
  }
  return merged;
}

async function extentNode(vol: Volume, sb: Sb, ino: number, node: Buffer, out: Extent[], level: number): Promise<void> {
  if (node.readUInt16LE(0) !== 0xf30a || level > 6) throw damaged(`${vol.name}: inode ${ino}: a damaged extent tree`);
  const entries = node.readUInt16LE(2);
  const depth = node.readUInt16LE(6);
  if (12 + entries * 12 > node.length) throw damaged(`${vol.name}: inode ${ino}: an extent node claims ${entries} entries`);
  for (let i = 0; i < entries; i++) {
    const e = node.subarray(12 + i * 12);
    if (depth === 0) {
      let len = e.readUInt16LE(4);
      if (len > 32768) continue; // uninitialized: reads as zeros
      const start = e.readUInt16LE(6) * 2 ** 32 + e.readUInt32LE(8);
      out.push({ logical: e.readUInt32LE(0) * sb.bs, physical: start * sb.bs, length: len * sb.bs });
    } else {
      const leaf = e.readUInt32LE(4) + e.readUInt16LE(8) * 2 ** 32;
      const child = await vol.read(leaf * sb.bs, sb.bs);
      if (child.length < sb.bs) throw damaged(`${vol.name}: inode ${ino}: an extent node lies past the end of the volume`);
      await extentNode(vol, sb, ino, child, out, level + 1);
    }
  }
}

async function blockMap(vol: Volume, sb: Sb, ino: number, n: Inode, out: Extent[]): Promise<void> {
  const per = sb.bs / 4;
  const nblocks = Math.ceil(n.size / sb.bs);
  let logical = 0;
  const add = (blk: number) => {
    if (blk !== 0) out.push({ logical: logical * sb.bs, physical: blk * sb.bs, length: sb.bs });
    logical++;
  };
  const indirect = async (blk: number, depth: number): Promise<void> => {
    if (blk === 0) {
      logical += per ** depth;
      return;
    }
    const b = await vol.read(blk * sb.bs, sb.bs);
    if (b.length < sb.bs) throw damaged(`${vol.name}: inode ${ino}: an indirect block lies past the end of the volume`);
    for (let i = 0; i < per && logical < nblocks; i++) {
      const x = b.readUInt32LE(i * 4);
      if (depth === 1) add(x);
      else await indirect(x, depth - 1);
    }
  };
  for (let i = 0; i < 12 && logical < nblocks; i++) add(n.block.readUInt32LE(i * 4));
  for (let d = 1; d <= 3 && logical < nblocks; d++) await indirect(n.block.readUInt32LE((11 + d) * 4), d);
}

function typeOf(mode: number): FileEntry['type'] {
  const t = mode & S_IFMT;
  return t === 0o100000 ? 'file' : t === 0o040000 ? 'dir' : t === 0o120000 ? 'symlink' : 'other';
}

async function readData(vol: Volume, ext: Extent[], size: number): Promise<Buffer> {
  const out = Buffer.alloc(size);
  for (const e of ext) {
    if (e.logical >= size) continue;
    const n = Math.min(e.length, size - e.logical);
    (await vol.read(e.physical, n)).copy(out, e.logical);
  }
  return out;
}

export async function* walkExt(vol: Volume, opts: { signal?: AbortSignal; onProgress?: (files: number) => void } = {}): AsyncGenerator<FileEntry> {
  const sb = await superblock(vol);
  const seenDirs = new Set<number>([2]);
  const stack: Array<{ ino: number; path: string }> = [{ ino: 2, path: '' }];
  let files = 0;
  const root = await readInode(vol, sb, 2);
  yield { path: '/', type: 'dir', size: root.size, mtimeMs: root.mtimeMs, mode: root.mode & 0o7777, uid: root.uid, gid: root.gid, inode: 2 };
  while (stack.length > 0) {
    if (opts.signal?.aborted) throw Object.assign(new Error('the walk was cancelled'), { code: 'CANCELLED' });
    const dir = stack.pop()!;
    const dn = await readInode(vol, sb, dir.ino);
    const data = await readData(vol, await extentsOf(vol, sb, dir.ino, dn), dn.size);
    const children: Array<{ ino: number; name: string }> = [];
    for (let blk = 0; blk < data.length; blk += sb.bs) {
      let at = blk;
      const end = Math.min(blk + sb.bs, data.length);
      while (at + 8 <= end) {
        const ino = data.readUInt32LE(at);
        const rec = data.readUInt16LE(at + 4);
        const nameLen = sb.fileType ? data[at + 6] : data.readUInt16LE(at + 6);
        if (rec < 8 || at + rec > end || 8 + nameLen > rec) break; // damaged block: the rest of it is skipped
        const name = data.toString('utf8', at + 8, at + 8 + nameLen);
        if (ino !== 0 && name !== '.' && name !== '..' && nameLen > 0) children.push({ ino, name });
        at += rec;
      }
    }
    for (const c of children) {
      const path = `${dir.path}/${c.name}`;
      let n: Inode;
      try {
        n = await readInode(vol, sb, c.ino);
      } catch {
        continue; // a name pointing at an impossible inode: not listed
      }
      const type = typeOf(n.mode);
      const e: FileEntry = { path, type, size: n.size, mtimeMs: n.mtimeMs, mode: n.mode & 0o7777, uid: n.uid, gid: n.gid, inode: c.ino };
      if (type === 'file') e.extents = await extentsOf(vol, sb, c.ino, n);
      else if (type === 'symlink') {
        if (n.size < 60 && !(n.flags & (EXTENTS_FL | INLINE_FL))) e.target = n.block.toString('utf8', 0, n.size);
        else if (n.size <= 4096) e.target = (await readData(vol, await extentsOf(vol, sb, c.ino, n), n.size)).toString('utf8');
      } else if (type === 'dir' && !seenDirs.has(c.ino)) {
        seenDirs.add(c.ino);
        stack.push({ ino: c.ino, path });
      }
      yield e;
      if (++files % 1000 === 0) opts.onProgress?.(files);
    }
  }
  opts.onProgress?.(files);
}

/** Reads `length` bytes at `offset` of a file by its extents; what no extent covers is zeros. */
export async function readExtRange(vol: Volume, entry: FileEntry, offset: number, length: number): Promise<Buffer> {
  const end = Math.min(entry.size, offset + length);
  if (end <= offset) return Buffer.alloc(0);
  const out = Buffer.alloc(end - offset);
  await Promise.all(
    (entry.extents ?? []).map(async (e) => {
      const s = Math.max(offset, e.logical);
      const t = Math.min(end, e.logical + e.length);
      if (t <= s) return;
      (await vol.read(e.physical + (s - e.logical), t - s)).copy(out, s - offset);
    }),
  );
  return out;
}
