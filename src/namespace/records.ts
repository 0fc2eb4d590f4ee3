// Namespace records as stored in LevelDB (msgpack, short field names; see FORMAT.md).

import { pack, unpack } from 'msgpackr';
import { vmError } from '../errors.js';
import { decodeVersion, EMPTY_VERSION, encodeVersion, type FileVersion } from '../store/store.js';

export const enum NodeType {
  File = 1,
  Dir = 2,
  Symlink = 3,
}

export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;

export interface Inode {
  ino: number;
  type: NodeType;
  /** Permission bits (and setuid/setgid/sticky); the type bits come from `type`. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  atime: number;
  mtime: number;
  ctime: number;
  size: number;
  /** Regular files: the segment-tree root of their content. */
  version: FileVersion;
  /** Symbolic links: the target. */
  target?: string;
}

export type VolumeKind = 'share' | 'snapshot';

export interface Volume {
  id: number;
  kind: VolumeKind;
  name: string;
  /** For a snapshot: the volume of the share it was taken of. */
  shareVol?: number;
  created: number;
  nextIno: number;
  /** Regular files and the sum of their sizes, kept in the same batches that change them. */
  files: number;
  bytes: number;
  /** For a clone: where it came from. */
  origin?: { share: string; snapshot: string };
}

export const ROOT_INO = 1;
const FORMAT = 1;

export function typeBits(t: NodeType): number {
  return t === NodeType.Dir ? S_IFDIR : t === NodeType.Symlink ? S_IFLNK : S_IFREG;
}

export function encodeInode(n: Inode): Buffer {
  return pack({
    f: FORMAT,
    i: n.ino,
    t: n.type,
    m: n.mode,
    u: n.uid,
    g: n.gid,
    n: n.nlink,
    a: n.atime,
    M: n.mtime,
    c: n.ctime,
    s: n.size,
    v: n.type === NodeType.File ? encodeVersion(n.version) : undefined,
    l: n.target,
  });
}

interface InodeWire {
  f: number;
  i: number;
  t: NodeType;
  m: number;
  u: number;
  g: number;
  n: number;
  a: number;
  M: number;
  c: number;
  s: number;
  v?: Uint8Array;
  l?: string;
}

export function decodeInode(b: Buffer): Inode {
  const w = unpack(b) as InodeWire;
  if (w.f > FORMAT) throw vmError('UNSUPPORTED_FORMAT', `inode record format ${w.f} is newer than this vmvault reads (${FORMAT})`);
  return {
    ino: w.i,
    type: w.t,
    mode: w.m,
    uid: w.u,
    gid: w.g,
    nlink: w.n,
    atime: w.a,
    mtime: w.M,
    ctime: w.c,
    size: w.s,
    version: w.v ? decodeVersion(w.v, `inode ${w.i}`) : EMPTY_VERSION,
    target: w.l,
  };
}

export function encodeVolume(v: Volume): Buffer {
  return pack({ f: FORMAT, ...v });
}

export function decodeVolume(b: Buffer): Volume {
  const w = unpack(b) as Volume & { f: number };
  if (w.f > FORMAT) throw vmError('UNSUPPORTED_FORMAT', `volume record format ${w.f} is newer than this vmvault reads (${FORMAT})`);
  const { f: _f, ...v } = w;
  return v;
}

export interface EntryValue {
  ino: number;
  type: NodeType;
}

export function encodeEntry(e: EntryValue): Buffer {
  const b = Buffer.allocUnsafe(9);
  b.writeUInt32BE(Math.floor(e.ino / 0x100000000), 0);
  b.writeUInt32BE(e.ino >>> 0, 4);
  b[8] = e.type;
  return b;
}

export function decodeEntry(b: Buffer): EntryValue {
  return { ino: b.readUInt32BE(0) * 0x100000000 + b.readUInt32BE(4), type: b[8] };
}
