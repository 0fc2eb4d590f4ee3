// Our own read-only ext2/3/4 reader: superblock, group descriptors, inode tables, extent trees
// and block maps, linear and htree directories (read linearly: htree index blocks look like
// empty entries), inline data, fast and slow symlinks. It walks paths, attributes AND extents
// in one pass, from any ByteSource (a qcow2 disk or a multi-segment LV as well as a plain file),
// which Sleuth Kit cannot (fls gives no extents; tsk_loaddb does but is ~18x slower than fls).
// The journal is never replayed (like `-o noload`). Layout: the kernel's
// Documentation/filesystems/ext4/ (ondisk).

import type { FileEntry, Volume, WalkOptions } from '../source.js';
import { vmError } from '../../errors.js';
import { Lru } from '../image/lru.js';
import { checkAbort, joinPath, pushExtent, typeOfMode, type Extent } from './entry.js';

const INCOMPAT_64BIT = 0x80;
const EXTENTS_FL = 0x80000;
const INLINE_DATA_FL = 0x10000000;
const MAX_META_BYTES = 256 * 1024 * 1024;

export interface Inode {
  ino: number; mode: number; uid: number; gid: number; size: number; mtimeMs: number;
  flags: number; links: number; iblock: Buffer; blocks: number;
  /** Inline data (INLINE_DATA_FL): the first 60 bytes in i_block, the rest in the system.data xattr. */
  inline?: Buffer;
}

/**
 * An inode parsed where its record lies (a group's cached table, at `at`): i_block is read in
 * place (extentsNow, the fast symlink's target) and made a Buffer view only when asked for. A
 * day-1 walk parsed 15,000 records into two views each (the record, then i_block): a
 * FastBuffer per view was ~5% of the build's samples, and garbage for the collector.
 */
class ParsedInode implements Inode {
  inline?: Buffer;
  constructor(
    readonly ino: number, readonly mode: number, readonly uid: number, readonly gid: number, readonly size: number,
    readonly mtimeMs: number, readonly flags: number, readonly links: number, readonly blocks: number,
    /** The buffer holding the record, and where the record starts in it. */
    readonly rec: Buffer, readonly at: number,
  ) {}

  get iblock(): Buffer {
    return this.rec.subarray(this.at + 40, this.at + 100);
  }

  /** The fields (what a plain Inode holds), not the buffer the record lies in. */
  toJSON(): Inode {
    const { ino, mode, uid, gid, size, mtimeMs, flags, links, blocks, inline } = this;
    return { ino, mode, uid, gid, size, mtimeMs, flags, links, iblock: this.iblock, blocks, ...(inline ? { inline } : {}) };
  }
}

/** i_block of `ino` as a buffer and the offset where it starts, without a view when it can. */
function iblockOf(ino: Inode): [Buffer, number] {
  return ino instanceof ParsedInode ? [ino.rec, ino.at + 40] : [ino.iblock, 0];
}

/** The in-inode extended attribute system.data (index 7, name "data"): inline data past 60 bytes. */
function inlineXattr(raw: Buffer, extra: number): Buffer {
  const base = 128 + extra;
  if (base + 4 > raw.length || raw.readUInt32LE(base) !== 0xea020000) return Buffer.alloc(0);
  const first = base + 4;
  let at = first;
  while (at + 16 <= raw.length) {
    const nameLen = raw[at];
    const index = raw[at + 1];
    if (nameLen === 0 && index === 0 && raw.readUInt16LE(at + 2) === 0 && raw.readUInt32LE(at + 4) === 0) break;
    const valueOff = raw.readUInt16LE(at + 2);
    const valueSize = raw.readUInt32LE(at + 8);
    if (index === 7 && raw.toString('latin1', at + 16, at + 16 + nameLen) === 'data') {
      return raw.subarray(first + valueOff, Math.min(raw.length, first + valueOff + valueSize));
    }
    at += (16 + nameLen + 3) & ~3;
  }
  return Buffer.alloc(0);
}

export class ExtFs {
  private readonly groupTables = new Lru<number, TablePromise>(32);
  private constructor(
    private readonly vol: Volume,
    readonly blockSize: number,
    private readonly inodesPerGroup: number,
    private readonly inodeSize: number,
    private readonly inodeTables: number[],
    private readonly usedPerGroup: number[],
    readonly inodeCount: number,
  ) {}

  static async open(vol: Volume): Promise<ExtFs> {
    const sb = await vol.read(1024, 1024);
    if (sb.length < 1024 || sb.readUInt16LE(56) !== 0xef53) {
      throw vmError('CORRUPT_RECORD', `ext: no superblock on ${vol.name} (magic missing at byte 1080)`);
    }
    const logBlock = sb.readUInt32LE(24);
    if (logBlock > 6) throw vmError('CORRUPT_RECORD', `ext: superblock of ${vol.name} names block size 2^${10 + logBlock}: corrupt`);
    const blockSize = 1024 << logBlock;
    const inodesCount = sb.readUInt32LE(0);
    const blocksPerGroup = sb.readUInt32LE(32);
    const inodesPerGroup = sb.readUInt32LE(40);
    const rev = sb.readUInt32LE(76);
    const inodeSize = rev >= 1 ? sb.readUInt16LE(88) : 128;
    const incompat = sb.readUInt32LE(96);
    const is64 = (incompat & INCOMPAT_64BIT) !== 0;
    const descSize = is64 ? Math.max(32, sb.readUInt16LE(254)) : 32;
    const blocks = sb.readUInt32LE(4) + (is64 ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
    const firstData = sb.readUInt32LE(20);
    if (!blocksPerGroup || !inodesPerGroup || inodeSize < 128 || (inodeSize & (inodeSize - 1)) !== 0 || inodeSize > blockSize) {
      throw vmError('CORRUPT_RECORD', `ext: superblock of ${vol.name} is corrupt (blocks/group ${blocksPerGroup}, inodes/group ${inodesPerGroup}, inode size ${inodeSize})`);
    }
    const groups = Math.ceil((blocks - firstData) / blocksPerGroup);
    if (!(groups > 0) || groups > 1 << 24) throw vmError('CORRUPT_RECORD', `ext: superblock of ${vol.name} gives ${groups} block groups: corrupt`);
    const gdt = await vol.read((firstData + 1) * blockSize, groups * descSize);
    if (gdt.length < groups * descSize) throw vmError('CORRUPT_RECORD', `ext: group descriptors of ${vol.name} lie past the end of the volume (truncated)`);
    const tables: number[] = [];
    const used: number[] = [];
    const csum = (sb.readUInt32LE(100) & (0x10 | 0x400)) !== 0; // GDT_CSUM or METADATA_CSUM: itable_unused is kept
    for (let g = 0; g < groups; g++) {
      const d = gdt.subarray(g * descSize, (g + 1) * descSize);
      tables.push(d.readUInt32LE(8) + (descSize >= 64 ? d.readUInt32LE(0x28) * 2 ** 32 : 0));
      const flags = d.readUInt16LE(0x12);
      const unused = d.readUInt16LE(0x1c) + (descSize >= 64 ? d.readUInt16LE(0x32) << 16 : 0);
      used.push(csum ? ((flags & 1) ? 0 : Math.max(0, inodesPerGroup - unused)) : inodesPerGroup);
    }
    return new ExtFs(vol, blockSize, inodesPerGroup, inodeSize, tables, used, inodesCount);
  }

  /**
   * One group's used inode table. The promise is what is cached: the inodes of a directory are
   * asked for all at once, and each must wait on the one read, not start its own.
   */
  private groupTable(g: number): Promise<Buffer> {
    let t = this.groupTables.get(g);
    if (!t) {
      const p: TablePromise = this.vol.read(this.inodeTables[g] * this.blockSize, this.usedPerGroup[g] * this.inodeSize);
      p.then((b) => { p.value = b; }, () => this.groupTables.delete(g));
      this.groupTables.set(g, (t = p));
    }
    return t;
  }

  /**
   * Inode `ino` parsed at once when its group's table is read and cached (the walk's case for
   * almost every inode), else undefined (ask inode()). A walk has tens of thousands of inodes:
   * a promise and an await each were a measurable part of a day-1 build.
   */
  inodeNow(ino: number): Inode | undefined {
    if (this.changedTables || ino < 1 || ino > this.inodeCount) return undefined;
    const g = Math.floor((ino - 1) / this.inodesPerGroup);
    const idx = (ino - 1) % this.inodesPerGroup;
    if (idx >= this.usedPerGroup[g]) return undefined;
    const t = this.groupTables.get(g)?.value;
    if (!t || (idx + 1) * this.inodeSize > t.length) return undefined;
    return this.parse(ino, t, idx * this.inodeSize);
  }

  /** Reads (and caches) the tables of these inodes' groups: inodeNow() answers for them after. */
  async readTablesOf(inos: number[]): Promise<void> {
    const waits: Array<Promise<unknown>> = [];
    let last = -1;
    for (const ino of inos) {
      if (ino < 1 || ino > this.inodeCount) continue;
      const g = Math.floor((ino - 1) / this.inodesPerGroup);
      if (g === last || this.usedPerGroup[g] === 0) continue;
      last = g;
      const t = this.groupTable(g) as TablePromise;
      if (t.value === undefined) waits.push(t.catch(() => undefined));
    }
    if (waits.length > 0) await Promise.all(waits);
  }

  private readonly loaded: Array<Buffer | undefined> = [];

  /**
   * Reads every group's used inode table and keeps them all (not only the LRU's 32), so that
   * recordNow() answers without a promise; false (nothing kept) above `maxBytes` of tables.
   */
  async loadTables(want: (start: number, end: number) => boolean = () => true, maxBytes = 64 * 1024 * 1024): Promise<boolean> {
    const groups = this.inodeTables.map((t, g) => g).filter((g) => {
      const start = this.inodeTables[g] * this.blockSize;
      return this.usedPerGroup[g] > 0 && want(start, start + this.usedPerGroup[g] * this.inodeSize);
    });
    if (groups.reduce((a, g) => a + this.usedPerGroup[g] * this.inodeSize, 0) > maxBytes) return false;
    await Promise.all(groups.map(async (g) => {
      this.loaded[g] = await this.groupTable(g);
    }));
    return true;
  }

  /** Inode `ino`'s record when its group's table is kept (loadTables) and holds it, else undefined. */
  recordNow(ino: number): Buffer | undefined {
    if (ino < 1 || ino > this.inodeCount) return undefined;
    const g = Math.floor((ino - 1) / this.inodesPerGroup);
    const idx = (ino - 1) % this.inodesPerGroup;
    const t = this.loaded[g];
    if (!t || idx >= this.usedPerGroup[g] || (idx + 1) * this.inodeSize > t.length) return undefined;
    return t.subarray(idx * this.inodeSize, (idx + 1) * this.inodeSize);
  }

  /**
   * This point's inode-table bytes changedInodes() read, by group: the records an edit then
   * asks for (changed ones, mostly) come from them. Set, records outside them are read one by
   * one (one 4 KiB chunk of the source's cache), not as their group's whole table: an edit
   * wants a few hundred scattered records, and a group's table read again decoded again the
   * segments changedInodes() had just decoded (segments a read covers whole are not cached).
   */
  private changedTables: Array<Array<{ at: number; buf: Buffer }>> | undefined;

  /** Inode `ino`'s record as it lies in the volume. */
  async record(ino: number): Promise<Buffer> {
    if (ino < 1 || ino > this.inodeCount) throw new Error(`inode ${ino} out of range`);
    const g = Math.floor((ino - 1) / this.inodesPerGroup);
    const idx = (ino - 1) % this.inodesPerGroup;
    let raw: Buffer;
    if (this.changedTables) {
      const off = this.inodeTables[g] * this.blockSize + idx * this.inodeSize;
      const piece = this.changedTables[g]?.find((p) => p.at <= off && off + this.inodeSize <= p.at + p.buf.length);
      raw = piece ? piece.buf.subarray(off - piece.at, off - piece.at + this.inodeSize) : await this.vol.read(off, this.inodeSize);
    } else if (idx < this.usedPerGroup[g]) {
      const t = await this.groupTable(g);
      raw = t.subarray(idx * this.inodeSize, (idx + 1) * this.inodeSize);
    } else {
      raw = await this.vol.read(this.inodeTables[g] * this.blockSize + idx * this.inodeSize, this.inodeSize);
    }
    if (raw.length < 128) throw new Error(`inode ${ino} lies past the end of the volume`);
    return raw;
  }

  async inode(ino: number): Promise<Inode> {
    return this.parse(ino, await this.record(ino), 0);
  }

  /** The record of `ino` at `at` in `raw` (inodeSize bytes from there, at least 128). */
  private parse(ino: number, raw: Buffer, at: number): Inode {
    const mode = raw.readUInt16LE(at);
    const extra = this.inodeSize > 128 ? raw.readUInt16LE(at + 128) : 0;
    const flags = raw.readUInt32LE(at + 32);
    const size = raw.readUInt32LE(at + 4) + raw.readUInt32LE(at + 108) * 2 ** 32;
    let mtimeMs = raw.readInt32LE(at + 16) * 1000;
    if (extra >= 12) {
      const x = raw.readUInt32LE(at + 0x88);
      mtimeMs = (raw.readInt32LE(at + 16) + (x & 3) * 2 ** 32) * 1000 + Math.floor((x >>> 2) / 1e6);
    }
    const out = new ParsedInode(
      ino, mode,
      raw.readUInt16LE(at + 2) | (raw.readUInt16LE(at + 120) << 16),
      raw.readUInt16LE(at + 24) | (raw.readUInt16LE(at + 122) << 16),
      size, mtimeMs, flags, raw.readUInt16LE(at + 26), raw.readUInt32LE(at + 28),
      raw, at,
    );
    if (flags & INLINE_DATA_FL) {
      const rec = raw.subarray(at, at + this.inodeSize);
      out.inline = Buffer.from(Buffer.concat([rec.subarray(40, 100), inlineXattr(rec, extra)]).subarray(0, size));
    }
    return out;
  }

  /** Same block size, inode size and inode tables: an inode's record lies at the same place in both. */
  sameLayout(o: ExtFs): boolean {
    return this.blockSize === o.blockSize && this.inodesPerGroup === o.inodesPerGroup && this.inodeSize === o.inodeSize && this.inodeCount === o.inodeCount &&
      this.inodeTables.length === o.inodeTables.length && this.inodeTables.every((t, g) => t === o.inodeTables[g]);
  }

  /**
   * The inodes whose record gives another entry here than in `prev` (the same volume at an
   * earlier point, sameLayout): only the bytes `changed` names in each inode table are read and
   * compared (the store's answer, exact to the segment: the rest is the same bytes on both).
   * A record cut short by the volume's end counts as changed.
   */
  async changedInodes(prev: ExtFs, changed: (start: number, end: number) => Array<[number, number]>): Promise<Set<number>> {
    const out = new Set<number>();
    const isz = this.inodeSize;
    this.changedTables = [];
    await Promise.all(this.inodeTables.map(async (t, g) => {
      const base = t * this.blockSize;
      await Promise.all(changed(base, base + this.inodesPerGroup * isz).map(async ([a, b]) => {
        const first = Math.max(0, Math.floor((a - base) / isz));
        const last = Math.min(this.inodesPerGroup, Math.ceil((b - base) / isz));
        if (last <= first) return;
        const at = base + first * isz;
        const [x, y] = await Promise.all([prev.vol.read(at, (last - first) * isz), this.vol.read(at, (last - first) * isz)]);
        (this.changedTables![g] ??= []).push({ at, buf: y });
        // A segment the store calls changed mostly holds records that are not (one access time
        // dirties its 32); a record's fields are compared where it lies (no views made).
        const n = last - first;
        const whole = Math.min(n, Math.floor(Math.min(x.length, y.length) / isz));
        const xw = words(x, whole * isz);
        const yw = xw && words(y, whole * isz);
        if (xw && yw) {
          // Both 4-byte aligned (a build's reads are): the entry fields word by word in JS, no
          // call per record or run. Most runs of 8 records differ somewhere (access times), so
          // the native run compare below skipped little and each record then took a call of
          // its own: ~7 ms of a day-2 build's samples at load 7 for the sample's 12,738 records.
          for (let i = 0; i < whole; i++) {
            if (!sameEntryWords(xw, yw, (i * isz) >> 2, isz) && !sameEntryFieldsAt(x, y, i * isz, isz)) out.add(g * this.inodesPerGroup + first + i + 1);
          }
        } else for (let i = 0; i < whole; ) {
          // Unaligned: equal bytes skipped by a native compare, a run of records per call, then
          // record by record.
          const run = Math.min(RUN, whole - i);
          const o = i * isz;
          if (run > 1 && x.compare(y, o, o + run * isz, o, o + run * isz) === 0) {
            i += run;
            continue;
          }
          for (const stop = i + run; i < stop; i++) {
            const r = i * isz;
            if (x.compare(y, r, r + isz, r, r + isz) !== 0 && !sameEntryFieldsAt(x, y, r, isz)) out.add(g * this.inodesPerGroup + first + i + 1);
          }
        }
        // A record cut short by the volume's end counts as changed.
        for (let i = whole; i < n; i++) out.add(g * this.inodesPerGroup + first + i + 1);
      }));
    }));
    return out;
  }

  /** Where inode `ino`'s record lies in the volume: [offset, offset + recordBytes). */
  inodeOffset(ino: number): number {
    const g = Math.floor((ino - 1) / this.inodesPerGroup);
    return this.inodeTables[g] * this.blockSize + ((ino - 1) % this.inodesPerGroup) * this.inodeSize;
  }

  /** The inode tables' byte ranges [start, end) in the volume. */
  inodeTableRanges(): Array<[number, number]> {
    return this.inodeTables.map((t) => [t * this.blockSize, t * this.blockSize + this.inodesPerGroup * this.inodeSize]);
  }

  get recordBytes(): number {
    return this.inodeSize;
  }

  /**
   * The inode's data as byte extents of the volume (uninitialized extents are holes). `meta`
   * collects the blocks the map was read from besides the inode (extent-tree nodes, indirect blocks).
   */
  /**
   * The extents when no block must be read for them (inline data, or an extent tree whose root
   * in the inode is its only node: most files), else undefined (ask extents()).
   */
  extentsNow(ino: Inode): Extent[] | undefined {
    if (ino.flags & INLINE_DATA_FL) return [];
    if (!(ino.flags & EXTENTS_FL)) return undefined;
    const [node, b] = iblockOf(ino);
    if (node.readUInt16LE(b) !== 0xf30a || node.readUInt16LE(b + 6) !== 0) return undefined; // errors and deeper trees: the async path says it
    const out: Extent[] = [];
    const bs = this.blockSize;
    const n = node.readUInt16LE(b + 2);
    for (let i = 0; i < n; i++) {
      const e = b + 12 + i * 12;
      if (e + 12 > b + 60) break;
      const len = node.readUInt16LE(e + 4);
      if (len > 32768) continue; // uninitialized: reads as zeros
      pushExtent(out, node.readUInt32LE(e) * bs, (node.readUInt16LE(e + 6) * 2 ** 32 + node.readUInt32LE(e + 8)) * bs, len * bs);
    }
    return cutAtSize(out, ino.size);
  }

  async extents(ino: Inode, meta?: Array<{ physical: number; length: number }>): Promise<Extent[]> {
    const out: Extent[] = [];
    const bs = this.blockSize;
    if (ino.flags & INLINE_DATA_FL) return out;
    if (ino.flags & EXTENTS_FL) {
      let nodes = 0;
      const visit = async (node: Buffer, depthLeft: number): Promise<void> => {
        if (++nodes > 1 << 20) throw new Error(`inode ${ino.ino}: extent tree has implausibly many nodes`);
        if (node.readUInt16LE(0) !== 0xf30a) throw new Error(`inode ${ino.ino}: extent tree node has a bad magic`);
        const n = node.readUInt16LE(2);
        const depth = node.readUInt16LE(6);
        if (depth > depthLeft) throw new Error(`inode ${ino.ino}: extent tree deeper than it says`);
        for (let i = 0; i < n; i++) {
          const e = 12 + i * 12;
          if (e + 12 > node.length) break;
          if (depth === 0) {
            let len = node.readUInt16LE(e + 4);
            if (len > 32768) continue; // uninitialized: reads as zeros
            const start = node.readUInt16LE(e + 6) * 2 ** 32 + node.readUInt32LE(e + 8);
            len = Math.min(len, 32768);
            pushExtent(out, node.readUInt32LE(e) * bs, start * bs, len * bs);
          } else {
            const leaf = node.readUInt32LE(e + 4) + node.readUInt16LE(e + 8) * 2 ** 32;
            meta?.push({ physical: leaf * bs, length: bs });
            await visit(await this.vol.read(leaf * bs, bs), depth - 1);
          }
        }
      };
      await visit(ino.iblock, 5);
    } else {
      // ext2/3 block map: 12 direct, then single, double, triple indirect.
      const per = bs / 4;
      let logical = 0;
      const direct = (blk: number) => {
        if (blk) pushExtent(out, logical * bs, blk * bs, bs);
        logical++;
      };
      const indirect = async (blk: number, level: number): Promise<void> => {
        const span = per ** level;
        if (!blk) { logical += span; return; }
        meta?.push({ physical: blk * bs, length: bs });
        const b = await this.vol.read(blk * bs, bs);
        for (let i = 0; i < per && logical < maxBlocks; i++) {
          const child = b.readUInt32LE(i * 4);
          if (level === 1) direct(child);
          else await indirect(child, level - 1);
        }
      };
      const maxBlocks = Math.ceil(ino.size / bs);
      for (let i = 0; i < 12 && logical < maxBlocks; i++) direct(ino.iblock.readUInt32LE(i * 4));
      for (let lvl = 1; lvl <= 3 && logical < maxBlocks; lvl++) await indirect(ino.iblock.readUInt32LE((11 + lvl) * 4), lvl);
    }
    return cutAtSize(out, ino.size);
  }

  /**
   * A directory's or symlink's bytes (bounded: a corrupt size must not allocate gigabytes). May
   * be the source's own buffer (a view of the read cache's chunk): read it, never write into it.
   */
  async readData(ino: Inode, ext: Extent[]): Promise<Buffer> {
    if (ino.inline) return ino.inline;
    if (ino.size > MAX_META_BYTES) throw new Error(`size ${ino.size} is implausible for a directory or symlink`);
    // Mostly one extent from 0 (a directory of a block or a few): its read is the data. A
    // zeroed buffer and a copy per directory (1,725 of them in the sample, an ArrayBuffer each)
    // were ~2% of a day-1 build's samples, and external memory that brings the collector sooner.
    // The caller only reads it (the read cache's chunks are never written either).
    if (ext.length > 0 && ext[0].logical === 0 && ext[0].length >= ino.size) {
      const b = await this.vol.read(ext[0].physical, ino.size);
      if (b.length === ino.size) return b;
    }
    const out = Buffer.alloc(ino.size);
    await Promise.all(ext.filter((x) => x.logical < ino.size).map(async (x) => (await this.vol.read(x.physical, Math.min(x.length, ino.size - x.logical))).copy(out, x.logical)));
    return out;
  }
}

/** Extents past the size are preallocation: cut there (the list is in logical order). */
function cutAtSize(out: Extent[], size: number): Extent[] {
  let n = 0;
  while (n < out.length && out[n].logical < size) n++;
  if (n < out.length) out.length = n;
  for (let i = 0; i < n; i++) {
    const x = out[i];
    if (x.logical + x.length > size) out[i] = { logical: x.logical, physical: x.physical, length: size - x.logical };
  }
  return out;
}

type TablePromise = Promise<Buffer> & { value?: Buffer };

/**
 * Whether two records of an inode give the same entry: the fields inode() reads (mode, owner,
 * size, mtime, flags, block count, i_block, the in-inode xattrs holding inline data) are equal.
 * Access and change times, link counts and checksums may differ: a file read or chmod-ed back
 * keeps its entry.
 */
const ENTRY_FIELDS: Array<[number, number]> = [[0, 8], [16, 20], [24, 26], [28, 100], [108, 112], [120, 124]];

export function sameEntryFields(x: Buffer, y: Buffer): boolean {
  if (x.length !== y.length || x.length < 128) return false;
  return sameEntryFieldsAt(x, y, 0, x.length);
}

/** A little-endian machine: a record's 16-bit fields are the low halves of its 32-bit words. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** `b`'s first `bytes` bytes as 32-bit words, when it starts 4-byte aligned (and the machine is little-endian). */
function words(b: Buffer, bytes: number): Int32Array | undefined {
  return LITTLE_ENDIAN && b.byteOffset % 4 === 0 && bytes % 4 === 0 ? new Int32Array(b.buffer, b.byteOffset, bytes >> 2) : undefined;
}

/**
 * sameEntryFieldsAt for records starting at word `w` of both, compared a word at a time: true
 * when every entry field is equal. False may also mean "ask sameEntryFieldsAt" (inline data,
 * whose fields run to the record's end): a caller confirms a false with it, never a true.
 */
function sameEntryWords(x: Int32Array, y: Int32Array, w: number, len: number): boolean {
  // ENTRY_FIELDS in words: [0, 8) [16, 20) [24, 26) (the low half of word 6; links above it may
  // differ) [28, 100) [108, 112) [120, 124).
  if (x[w] !== y[w] || x[w + 1] !== y[w + 1] || x[w + 4] !== y[w + 4] || ((x[w + 6] ^ y[w + 6]) & 0xffff) !== 0) return false;
  for (let k = w + 7; k < w + 25; k++) if (x[k] !== y[k]) return false;
  if (x[w + 27] !== y[w + 27] || x[w + 30] !== y[w + 30]) return false;
  if (len <= 128) return true;
  // [128, 130): extra_isize, the low half of word 32 (the checksum's high half above it may differ).
  if (((x[w + 32] ^ y[w + 32]) & 0xffff) !== 0) return false;
  const extra = x[w + 32] & 0xffff;
  if (extra >= 12 && x[w + 34] !== y[w + 34]) return false;
  // Inline data past 60 bytes lives in the in-inode xattrs: the byte compare says it.
  return (x[w + 8] & INLINE_DATA_FL) === 0;
}

/** Records compared a run at a time by changedInodes (8 x 256 bytes: most of a changed segment's records are equal). */
const RUN = 8;

/** sameEntryFields of the records of `len` bytes at `at` in both buffers (len >= 128; both hold them). */
function sameEntryFieldsAt(x: Buffer, y: Buffer, at: number, len: number): boolean {
  // Byte loops: a Buffer.compare call per field costs more than the bytes.
  const eq = (a: number, b: number) => {
    for (let i = at + a; i < at + b; i++) if (x[i] !== y[i]) return false;
    return true;
  };
  for (const [a, b] of ENTRY_FIELDS) if (!eq(a, b)) return false;
  if (len <= 128) return true;
  if (!eq(128, 130)) return false;
  const extra = x.readUInt16LE(at + 128);
  if (extra >= 12 && !eq(136, 140)) return false;
  // Inline data past 60 bytes lives in the in-inode xattrs.
  if (x.readUInt32LE(at + 32) & INLINE_DATA_FL) return eq(128 + extra, len);
  return true;
}

function parseDir(data: Buffer, inlineData: boolean): Array<{ ino: number; name: string }> {
  const out: Array<{ ino: number; name: string }> = [];
  let at = inlineData ? 4 : 0; // inline dirs begin with the parent's inode number
  while (at + 8 <= data.length) {
    const ino = data.readUInt32LE(at);
    const rec = data.readUInt16LE(at + 4);
    const nlen = data[at + 6];
    if (rec < 8 || at + rec > data.length) break;
    if (ino !== 0 && nlen > 0 && at + 8 + nlen <= data.length) {
      const name = data.toString('utf8', at + 8, at + 8 + nlen);
      if (name !== '.' && name !== '..') out.push({ ino, name });
    }
    at += rec;
  }
  return out;
}

/** Volume ranges as the `deps` of an entry (their own order; `logical` only keeps the encoding's order). */
function asDeps(ranges: Array<{ physical: number; length: number }>): Extent[] | undefined {
  if (ranges.length === 0) return undefined;
  let logical = 0;
  return ranges.map((r) => {
    const d = { logical, physical: r.physical, length: r.length };
    logical += r.length;
    return d;
  });
}

/** A directory's entries from its data (already mapped to `ext`). */
export async function readDirEntries(fs: ExtFs, d: Inode, ext: Extent[]): Promise<Array<{ ino: number; name: string }>> {
  if (typeOfMode(d.mode) !== 'dir') throw new Error('not a directory');
  return parseDir(await fs.readData(d, ext), (d.flags & INLINE_DATA_FL) !== 0);
}

/**
 * The entry of inode `ino` at `path`, with the blocks it was read from besides its inode record
 * (`deps`). For a directory also its data's extents (to read its entries by). Problems reading
 * its map or target are noted and leave the entry without them, as the walk always did.
 */
export async function entryOf(fs: ExtFs, ino: Inode, path: string, note: (s: string) => void): Promise<{ entry: FileEntry; dirExtents?: Extent[] }> {
  const type = typeOfMode(ino.mode);
  const entry: FileEntry = {
    path, type, size: type === 'dir' ? 0 : ino.size, mtimeMs: ino.mtimeMs, mode: ino.mode & 0o7777,
    uid: ino.uid, gid: ino.gid, inode: ino.ino,
  };
  let dirExtents: Extent[] | undefined;
  try {
    if (type === 'file') {
      if (ino.inline) entry.inline = ino.inline;
      else {
        const meta: Extent[] = [];
        entry.extents = await fs.extents(ino, meta);
        const deps = asDeps(meta);
        if (deps) entry.deps = deps;
      }
    } else if (type === 'symlink') {
      const fast = ino.size < 60 && !(ino.flags & EXTENTS_FL) && !(ino.flags & INLINE_DATA_FL) && ino.blocks === 0;
      if (ino.inline ?? fast) entry.target = (ino.inline ?? ino.iblock.subarray(0, ino.size)).toString('utf8');
      else {
        const meta: Extent[] = [];
        const ext = await fs.extents(ino, meta);
        entry.target = (await fs.readData(ino, ext)).toString('utf8');
        const deps = asDeps([...ext, ...meta]);
        if (deps) entry.deps = deps;
      }
    } else if (type === 'dir') {
      const meta: Extent[] = [];
      dirExtents = await fs.extents(ino, meta);
      const deps = asDeps([...dirExtents, ...meta]);
      if (deps) entry.deps = deps;
    }
  } catch (err) {
    // A directory whose map cannot be read is noted once, where its entries are read.
    if (type !== 'dir') note(`${path}: ${(err as Error).message}`);
  }
  return dirExtents ? { entry, dirExtents } : { entry };
}

/**
 * entryOf() when nothing must be read for it (the inode's own extent tree or inline data, a fast
 * symlink), else undefined: entryOf() then reads what it needs. The same entry either way.
 */
export function entryOfNow(fs: ExtFs, ino: Inode, path: string): { entry: FileEntry; dirExtents?: Extent[] } | undefined {
  const type = typeOfMode(ino.mode);
  let ext: Extent[] | undefined;
  if (type === 'symlink') {
    const fast = ino.size < 60 && !(ino.flags & EXTENTS_FL) && !(ino.flags & INLINE_DATA_FL) && ino.blocks === 0;
    if (!(ino.inline ?? fast)) return undefined;
  } else if (type === 'file' && ino.inline) {
    // inline data: no extents
  } else if (type === 'file' || type === 'dir') {
    ext = fs.extentsNow(ino);
    if (!ext) return undefined;
  }
  const entry: FileEntry = {
    path, type, size: type === 'dir' ? 0 : ino.size, mtimeMs: ino.mtimeMs, mode: ino.mode & 0o7777,
    uid: ino.uid, gid: ino.gid, inode: ino.ino,
  };
  if (type === 'file') {
    if (ino.inline) entry.inline = ino.inline;
    else entry.extents = ext;
  } else if (type === 'symlink') {
    entry.target = (ino.inline ?? ino.iblock.subarray(0, ino.size)).toString('utf8');
  } else if (type === 'dir') {
    const deps = asDeps(ext!);
    if (deps) entry.deps = deps;
    return { entry, dirExtents: ext };
  }
  return { entry };
}

/**
 * The walk, one directory's entries at a time (parents before children): what a catalog build
 * consumes, without a promise per entry through the async generators.
 */
export async function* walkExtBatches(vol: Volume, opts: WalkOptions): AsyncGenerator<FileEntry[]> {
  const fs = await ExtFs.open(vol);
  const note = (s: string) => opts.onNote?.(`${vol.name}: ${s}`);
  let count = 0;
  const seenDirs = new Set<number>([2]);
  // Directories are read ahead: when a directory's subdirectories go on the stack, their
  // blocks are already being read (up to READ_AHEAD at once), so the walk rarely waits on I/O.
  const READ_AHEAD = 64;
  let inFlight = 0;
  type Kids = Array<{ ino: number; name: string }> | Error;
  const readKids = (d: Inode, ext?: Extent[]): Promise<Kids> => {
    inFlight++;
    return (async () => readDirEntries(fs, d, ext ?? await fs.extents(d)))().catch((err: Error) => err).finally(() => { inFlight--; });
  };
  type Dir = { ino: number; path: string; inode?: Inode; ext?: Extent[]; kids?: Promise<Kids> };
  const stack: Dir[] = [{ ino: 2, path: '/' }];
  while (stack.length) {
    checkAbort(opts);
    const dir = stack.pop()!;
    let children: Array<{ ino: number; name: string }>;
    try {
      const kids = await (dir.kids ?? readKids(dir.inode ?? await fs.inode(dir.ino), dir.ext));
      if (kids instanceof Error) throw kids;
      children = kids;
    } catch (err) {
      note(`directory ${dir.path} (inode ${dir.ino}) could not be read: ${(err as Error).message}`);
      continue;
    }
    // Inodes of one directory are read together: their tables are mostly in one group, read
    // (or found cached) once, then parsed without a promise each.
    await fs.readTablesOf(children.map((c) => c.ino));
    const inodes: Array<Inode | Error | undefined> = children.map((c) => fs.inodeNow(c.ino));
    if (inodes.includes(undefined)) {
      await Promise.all(inodes.map(async (x, i) => {
        if (x === undefined) inodes[i] = await fs.inode(children[i].ino).catch((err: Error) => err);
      }));
    }
    const subdirs: Dir[] = [];
    const out: FileEntry[] = [];
    for (let i = 0; i < children.length; i++) {
      const c = children[i];
      const ino = inodes[i]!;
      const path = joinPath(dir.path, c.name);
      if (ino instanceof Error) { note(`${path}: ${ino.message}`); continue; }
      const { entry, dirExtents } = entryOfNow(fs, ino, path) ?? await entryOf(fs, ino, path, note);
      if (entry.type === 'dir' && !seenDirs.has(ino.ino)) {
        seenDirs.add(ino.ino);
        subdirs.push({ ino: ino.ino, path, inode: ino, ext: dirExtents });
      }
      count++;
      out.push(entry);
    }
    for (const sd of subdirs) if (inFlight < READ_AHEAD) sd.kids = readKids(sd.inode!, sd.ext);
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]);
    if (out.length > 0) yield out;
    if (count % 1024 < children.length) opts.onProgress?.(count);
  }
  opts.onProgress?.(count);
}

export async function* walkExt(vol: Volume, opts: WalkOptions): AsyncGenerator<FileEntry> {
  for await (const batch of walkExtBatches(vol, opts)) yield* batch;
}
