// Our own read-only XFS reader (Sleuth Kit has no XFS; libfsxfs misreads bigtime timestamps).
// Walks from the root inode: inode cores (v2/v3; bigtime and nrext64), data forks in local,
// extents and btree format, directories in shortform, block, leaf and node form (data blocks
// are read linearly below the 32 GiB leaf offset, whatever indexes sit above it), local and
// remote symlinks. v4 (no CRC) headers are read too. The log is never replayed (like
// `-o norecovery`). Layout: the kernel's fs/xfs/libxfs/xfs_format.h, xfs_da_format.h.

import type { FileEntry, Volume, WalkOptions } from '../source.js';
import { vmError } from '../../errors.js';
import { Lru } from '../image/lru.js';
import { checkAbort, joinPath, pushExtent, typeOfMode, type Extent } from './entry.js';

const INCOMPAT_FTYPE = 1;
const INCOMPAT_BIGTIME = 8;
const INCOMPAT_NREXT64 = 32;
const DIFLAG2_BIGTIME = 1n << 3n;
const DIFLAG2_NREXT64 = 1n << 4n;
const LEAF_OFFSET = 2 ** 35; // directory data blocks live below this byte offset
const BIGTIME_EPOCH_OFFSET = 2 ** 31; // bigtime counts ns from 1901-12-13T20:45:52Z

interface XInode {
  ino: number; mode: number; uid: number; gid: number; size: number; mtimeMs: number;
  format: number; nextents: number; fork: Buffer;
}

class XfsFs {
  private readonly chunks = new Lru<number, Promise<Buffer>>(256);
  readonly v5: boolean;
  readonly ftype: boolean;
  readonly blockSize: number;
  readonly dirBlockSize: number;
  private readonly agBlocks: number;
  private readonly agBlkLog: number;
  private readonly inoPBLog: number;
  private readonly inodeSize: number;
  readonly rootIno: number;
  private readonly incompat: number;

  constructor(private readonly vol: Volume, sb: Buffer) {
    const version = sb.readUInt16BE(100) & 0xf;
    this.v5 = version === 5;
    this.blockSize = sb.readUInt32BE(4);
    this.agBlocks = sb.readUInt32BE(84);
    this.inodeSize = sb.readUInt16BE(104);
    this.agBlkLog = sb[124];
    this.inoPBLog = sb[123];
    this.rootIno = Number(sb.readBigUInt64BE(56));
    this.dirBlockSize = this.blockSize << sb[192];
    this.incompat = this.v5 ? sb.readUInt32BE(216) : 0;
    this.ftype = this.v5 ? (this.incompat & INCOMPAT_FTYPE) !== 0 : (sb.readUInt32BE(200) & 0x200) !== 0;
    const ok = (version === 4 || version === 5) && this.blockSize >= 512 && this.blockSize <= 65536 &&
      (this.blockSize & (this.blockSize - 1)) === 0 && this.inodeSize >= 256 && this.inodeSize <= 2048 &&
      this.agBlocks > 0 && this.agBlkLog > 0 && this.agBlkLog < 32 && 2 ** this.agBlkLog >= this.agBlocks &&
      this.rootIno > 0;
    if (!ok) throw vmError('CORRUPT_RECORD', `xfs: superblock of ${vol.name} is corrupt (version ${version}, block size ${this.blockSize}, inode size ${this.inodeSize}, agblocks ${this.agBlocks})`);
    const unknown = this.incompat & ~(1 | 2 | 4 | 8 | 16 | 32);
    if (unknown) throw vmError('UNSUPPORTED_FORMAT', `xfs: ${vol.name} uses incompatible features 0x${unknown.toString(16)} this reader does not know`);
  }

  /** Byte offset in the volume of a filesystem block number (AG number in the high bits). */
  fsbToByte(fsb: number): number {
    const ag = Math.floor(fsb / 2 ** this.agBlkLog);
    const agb = fsb % 2 ** this.agBlkLog;
    return (ag * this.agBlocks + agb) * this.blockSize;
  }

  private inoToByte(ino: number): number {
    const perBlock = 2 ** this.inoPBLog;
    const fsb = Math.floor(ino / perBlock);
    return this.fsbToByte(fsb) + (ino % perBlock) * this.inodeSize;
  }

  async inode(ino: number): Promise<XInode> {
    const at = this.inoToByte(ino);
    const CHUNK = 65536;
    const base = at - (at % CHUNK);
    // The promise is cached, so a directory's inodes asked for at once share one read.
    let pending = this.chunks.get(base);
    if (!pending) {
      pending = this.vol.read(base, CHUNK);
      this.chunks.set(base, pending);
      pending.catch(() => this.chunks.delete(base));
    }
    const chunk = await pending;
    const raw = chunk.subarray(at - base, at - base + this.inodeSize);
    if (raw.length < this.inodeSize) throw new Error(`inode ${ino} lies past the end of the volume`);
    if (raw.readUInt16BE(0) !== 0x494e) throw new Error(`inode ${ino} has a bad magic`);
    const v = raw[4];
    const flags2 = v >= 3 ? raw.readBigUInt64BE(120) : 0n;
    const ts = (o: number): number => {
      if ((flags2 & DIFLAG2_BIGTIME) && (this.incompat & INCOMPAT_BIGTIME)) {
        const ns = raw.readBigUInt64BE(o);
        return Number(ns / 1000000n) - BIGTIME_EPOCH_OFFSET * 1000;
      }
      return raw.readInt32BE(o) * 1000 + Math.floor(raw.readUInt32BE(o + 4) / 1e6);
    };
    const nrext64 = (flags2 & DIFLAG2_NREXT64) !== 0n && (this.incompat & INCOMPAT_NREXT64) !== 0;
    const lit = v >= 3 ? 176 : 100;
    const forkoff = raw[82];
    const forkEnd = forkoff ? lit + forkoff * 8 : this.inodeSize;
    return {
      ino,
      mode: raw.readUInt16BE(2),
      uid: raw.readUInt32BE(8),
      gid: raw.readUInt32BE(12),
      mtimeMs: ts(40),
      size: Number(raw.readBigUInt64BE(56)),
      format: raw[5],
      nextents: nrext64 ? Number(raw.readBigUInt64BE(24)) : raw.readUInt32BE(76),
      fork: Buffer.from(raw.subarray(lit, forkEnd)),
    };
  }

  private bmbtRecs(buf: Buffer, at: number, n: number, out: Extent[]): void {
    for (let i = 0; i < n; i++) {
      const o = at + i * 16;
      if (o + 16 > buf.length) break;
      const hi = buf.readBigUInt64BE(o);
      const lo = buf.readBigUInt64BE(o + 8);
      const unwritten = (hi >> 63n) !== 0n;
      const startoff = Number((hi >> 9n) & ((1n << 54n) - 1n));
      const startblock = Number(((hi & 0x1ffn) << 43n) | (lo >> 21n));
      const count = Number(lo & 0x1fffffn);
      if (unwritten || count === 0) continue; // unwritten: reads as zeros
      // Contiguous in fs blocks need not be contiguous in bytes across an AG end: split per block run.
      let done = 0;
      while (done < count) {
        const fsb = startblock + done;
        const inAg = 2 ** this.agBlkLog - (fsb % 2 ** this.agBlkLog);
        const n2 = Math.min(count - done, inAg);
        pushExtent(out, (startoff + done) * this.blockSize, this.fsbToByte(fsb), n2 * this.blockSize);
        done += n2;
      }
    }
  }

  /** The data fork as byte extents (sorted by logical offset), for extents and btree format. */
  async extents(ino: XInode): Promise<Extent[]> {
    const out: Extent[] = [];
    if (ino.format === 2) {
      this.bmbtRecs(ino.fork, 0, ino.nextents, out);
    } else if (ino.format === 3) {
      const level = ino.fork.readUInt16BE(0);
      const numrecs = ino.fork.readUInt16BE(2);
      const maxrecs = Math.floor((ino.fork.length - 4) / 16);
      const ptrs: number[] = [];
      for (let i = 0; i < numrecs; i++) ptrs.push(Number(ino.fork.readBigUInt64BE(4 + maxrecs * 8 + i * 8)));
      const hdr = this.v5 ? 72 : 24;
      let nodes = 0;
      const visit = async (fsb: number, lvl: number): Promise<void> => {
        if (++nodes > 1 << 20) throw new Error(`inode ${ino.ino}: bmap btree has implausibly many blocks`);
        const b = await this.vol.read(this.fsbToByte(fsb), this.blockSize);
        const magic = b.toString('latin1', 0, 4);
        if (magic !== 'BMA3' && magic !== 'BMAP') throw new Error(`inode ${ino.ino}: bmap btree block ${fsb} has a bad magic`);
        const l = b.readUInt16BE(4);
        const n = b.readUInt16BE(6);
        if (l !== lvl) throw new Error(`inode ${ino.ino}: bmap btree level ${l} where ${lvl} was expected`);
        if (l === 0) { this.bmbtRecs(b, hdr, n, out); return; }
        const max = Math.floor((this.blockSize - hdr) / 16);
        for (let i = 0; i < n; i++) await visit(Number(b.readBigUInt64BE(hdr + max * 8 + i * 8)), l - 1);
      };
      if (level < 1 || level > 9) throw new Error(`inode ${ino.ino}: bmap btree root level ${level}`);
      for (const p of ptrs) await visit(p, level - 1);
    }
    return out;
  }

  /** Directory entries (name, inode), '.' and '..' left out. */
  async readDir(d: XInode): Promise<Array<{ ino: number; name: string }>> {
    const out: Array<{ ino: number; name: string }> = [];
    if (d.format === 1) {
      // Shortform: count, i8count, parent (4 or 8 bytes), then entries.
      const f = d.fork;
      const count = f[0];
      const i8 = f[1] !== 0;
      const isz = i8 ? 8 : 4;
      let at = 2 + isz;
      for (let i = 0; i < (i8 ? f[1] : count) && at < f.length; i++) {
        const nlen = f[at];
        const name = f.toString('utf8', at + 3, at + 3 + nlen);
        at += 3 + nlen + (this.ftype ? 1 : 0);
        const ino = i8 ? Number(f.readBigUInt64BE(at)) : f.readUInt32BE(at);
        at += isz;
        out.push({ ino, name });
      }
      return out;
    }
    const ext = (await this.extents(d)).filter((x) => x.logical < LEAF_OFFSET);
    if (ext.reduce((n, x) => n + x.length, 0) > 1024 * 1024 * 1024) throw new Error(`directory inode ${d.ino}: implausibly large (corrupt extents)`);
    const dbs = this.dirBlockSize;
    for (const x of ext) {
      const data = await this.vol.read(x.physical, x.length);
      for (let off = 0; off + dbs <= data.length; off += dbs) {
        this.parseDataBlock(data.subarray(off, off + dbs), out, d.ino);
      }
    }
    return out;
  }

  private parseDataBlock(b: Buffer, out: Array<{ ino: number; name: string }>, dirIno: number): void {
    const magic = b.toString('latin1', 0, 4);
    let end = b.length;
    if (magic === 'XDB3' || magic === 'XD2B') {
      const count = b.readUInt32BE(b.length - 8);
      end = b.length - 8 - count * 8;
    } else if (magic !== 'XDD3' && magic !== 'XD2D') {
      throw new Error(`directory inode ${dirIno}: data block has a bad magic '${magic.replace(/[^\x20-\x7e]/g, '?')}'`);
    }
    let at = this.v5 ? 64 : 16;
    while (at + 8 <= end) {
      if (b.readUInt16BE(at) === 0xffff) { // unused space: freetag, length
        const len = b.readUInt16BE(at + 2);
        if (len < 8) break;
        at += len;
        continue;
      }
      const ino = Number(b.readBigUInt64BE(at));
      const nlen = b[at + 8];
      const name = b.toString('utf8', at + 9, at + 9 + nlen);
      if (name !== '.' && name !== '..') out.push({ ino, name });
      at += Math.ceil((8 + 1 + nlen + (this.ftype ? 1 : 0) + 2) / 8) * 8;
    }
  }

  async symlinkTarget(ino: XInode): Promise<string> {
    if (ino.size > 1024) throw new Error(`symlink inode ${ino.ino}: size ${ino.size} is over XFS's 1024-byte limit`);
    if (ino.format === 1) return ino.fork.toString('utf8', 0, ino.size);
    const ext = await this.extents(ino);
    const parts: Buffer[] = [];
    for (const x of ext) {
      const b = await this.vol.read(x.physical, x.length);
      for (let off = 0; off < b.length; off += this.blockSize) {
        if (this.v5) {
          if (b.toString('latin1', off, off + 4) !== 'XSLM') throw new Error(`symlink inode ${ino.ino}: remote block has a bad magic`);
          const n = b.readUInt32BE(off + 8);
          parts.push(b.subarray(off + 56, off + 56 + n));
        } else parts.push(b.subarray(off, off + this.blockSize));
      }
    }
    return Buffer.concat(parts).toString('utf8', 0, ino.size);
  }
}

export async function* walkXfs(vol: Volume, opts: WalkOptions): AsyncGenerator<FileEntry> {
  const sb = await vol.read(0, 512);
  if (sb.length < 512 || sb.toString('latin1', 0, 4) !== 'XFSB') throw vmError('CORRUPT_RECORD', `xfs: no superblock on ${vol.name}`);
  const fs = new XfsFs(vol, sb);
  const note = (s: string) => opts.onNote?.(`${vol.name}: ${s}`);
  let count = 0;
  const seen = new Set<number>([fs.rootIno]);
  // Directories are read ahead, as in the ext walker (up to READ_AHEAD at once).
  const READ_AHEAD = 64;
  let inFlight = 0;
  type Kids = Array<{ ino: number; name: string }> | Error;
  const readKids = (d: XInode): Promise<Kids> => {
    inFlight++;
    return (async () => {
      if (typeOfMode(d.mode) !== 'dir') throw new Error('not a directory');
      return fs.readDir(d);
    })().catch((err: Error) => err).finally(() => { inFlight--; });
  };
  type Dir = { ino: number; path: string; inode?: XInode; kids?: Promise<Kids> };
  const stack: Dir[] = [{ ino: fs.rootIno, path: '/' }];
  while (stack.length) {
    checkAbort(opts);
    const dir = stack.pop()!;
    let children: Array<{ ino: number; name: string }>;
    try {
      const kids = await (dir.kids ?? readKids(dir.inode ?? await fs.inode(dir.ino)));
      if (kids instanceof Error) throw kids;
      children = kids;
    } catch (err) {
      note(`directory ${dir.path} (inode ${dir.ino}) could not be read: ${(err as Error).message}`);
      continue;
    }
    const inodes = await Promise.all(children.map((c) => fs.inode(c.ino).catch((err: Error) => err)));
    const subdirs: Dir[] = [];
    for (let i = 0; i < children.length; i++) {
      const path = joinPath(dir.path, children[i].name);
      const ino = inodes[i];
      if (ino instanceof Error) { note(`${path}: ${ino.message}`); continue; }
      const type = typeOfMode(ino.mode);
      const entry: FileEntry = {
        path, type, size: type === 'dir' ? 0 : ino.size, mtimeMs: ino.mtimeMs, mode: ino.mode & 0o7777,
        uid: ino.uid, gid: ino.gid, inode: ino.ino,
      };
      try {
        if (type === 'file') {
          const ext = await fs.extents(ino);
          const cut: Extent[] = [];
          for (const x of ext) {
            if (x.logical >= ino.size) break;
            cut.push({ ...x, length: Math.min(x.length, ino.size - x.logical) });
          }
          entry.extents = cut;
        } else if (type === 'symlink') {
          entry.target = await fs.symlinkTarget(ino);
        } else if (type === 'dir' && !seen.has(ino.ino)) {
          seen.add(ino.ino);
          subdirs.push({ ino: ino.ino, path, inode: ino });
        }
      } catch (err) {
        note(`${path}: ${(err as Error).message}`);
      }
      count++;
      yield entry;
    }
    for (const sd of subdirs) if (inFlight < READ_AHEAD) sd.kids = readKids(sd.inode!);
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]);
    if (count % 1024 < children.length) opts.onProgress?.(count);
  }
  opts.onProgress?.(count);
}
