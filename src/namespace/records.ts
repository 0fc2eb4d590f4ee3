// Namespace records as stored in LevelDB (msgpack, short field names; see FORMAT.md).

import { pack } from 'msgpackr';
import { vmError } from '../errors.js';
import { formatOf, num, optBytes, optStr, optUint, str, uint, unpackRecord } from '../kv/record.js';
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
  /**
   * Directories: the inode of the directory holding this one (its ".."), absent for a volume's
   * root and in records written before it existed (then found by scanning the volume's entries).
   */
  parent?: number;
  /**
   * The namespace epoch (a counter bumped, synced, at every open) in which this inode was made;
   * 0 for records written before it existed. An inode number lost in a crash (its batch was not
   * synced) can be handed out again in the next run: the epoch tells the two apart, so a file
   * handle kept by an NFS client (node id + generation) never opens the wrong file.
   */
  generation?: number;
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
  /**
   * Snapshots only: a retention lock (compliance mode). Until this time (ms since the epoch) the
   * namespace refuses every operation that would delete or change the snapshot, whoever asks
   * (LOCKED). Only ever extended, never shortened (Snapshots.lock).
   */
  lockedUntil?: number;
}

export const ROOT_INO = 1;
const FORMAT = 1;

export function typeBits(t: NodeType): number {
  return t === NodeType.Dir ? S_IFDIR : t === NodeType.Symlink ? S_IFLNK : S_IFREG;
}

// Records are written field by field: an in-memory object may carry more than the format
// (a cache field, a caller's extra), and spreading it would write that into the database.
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
    l: n.type === NodeType.Symlink ? n.target : undefined,
    // Optional fields (FORMAT.md): left out when absent, so older records keep their bytes.
    ...(n.type === NodeType.Dir && n.parent !== undefined ? { p: n.parent } : {}),
    ...(n.generation ? { G: n.generation } : {}),
  });
}

const MAX_INO = Number.MAX_SAFE_INTEGER;
const MAX_VOL = 0xffffffff;

export function decodeInode(b: Buffer, where = 'inode record'): Inode {
  const w = unpackRecord(b, where);
  formatOf(w, 'f', FORMAT, where);
  const ino = uint(w, 'i', where, MAX_INO);
  const what = `inode ${ino}`;
  const type = uint(w, 't', what, 3);
  if (type < NodeType.File) throw vmError('CORRUPT_RECORD', `${what}: unknown type ${type}`);
  const v = optBytes(w, 'v', what);
  return {
    ino,
    type: type as NodeType,
    mode: uint(w, 'm', what, 0o7777),
    uid: uint(w, 'u', what, 0xffffffff),
    gid: uint(w, 'g', what, 0xffffffff),
    nlink: uint(w, 'n', what, 0xffffffff),
    atime: num(w, 'a', what),
    mtime: num(w, 'M', what),
    ctime: num(w, 'c', what),
    size: uint(w, 's', what),
    version: v ? decodeVersion(v, what) : EMPTY_VERSION,
    target: optStr(w, 'l', what),
    ...optional('parent', type === NodeType.Dir ? optUint(w, 'p', what, MAX_INO) : undefined),
    ...optional('generation', optUint(w, 'G', what, 0xffffffff)),
  };
}

function optional<K extends string>(key: K, v: number | undefined): { [k in K]?: number } {
  return (v === undefined ? {} : { [key]: v }) as { [k in K]?: number };
}

export function encodeVolume(v: Volume): Buffer {
  // Optional fields are left out when absent (msgpackr would write a nil for undefined), as
  // the version-1 records written before this encoder have them.
  const w: Record<string, unknown> = { f: FORMAT, id: v.id, kind: v.kind, name: v.name };
  if (v.shareVol !== undefined) w.shareVol = v.shareVol;
  w.created = v.created;
  w.nextIno = v.nextIno;
  w.files = v.files;
  w.bytes = v.bytes;
  if (v.origin) w.origin = { share: v.origin.share, snapshot: v.origin.snapshot };
  if (v.lockedUntil !== undefined) w.lockedUntil = v.lockedUntil;
  return pack(w);
}

export function decodeVolume(b: Buffer, where = 'volume record'): Volume {
  const w = unpackRecord(b, where);
  formatOf(w, 'f', FORMAT, where);
  const id = uint(w, 'id', where, MAX_VOL);
  const what = `volume ${id}`;
  const kind = str(w, 'kind', what);
  if (kind !== 'share' && kind !== 'snapshot') throw vmError('CORRUPT_RECORD', `${what}: unknown kind ${JSON.stringify(kind).slice(0, 40)}`);
  const vol: Volume = {
    id,
    kind,
    name: str(w, 'name', what),
    created: num(w, 'created', what),
    nextIno: uint(w, 'nextIno', what, MAX_INO),
    files: uint(w, 'files', what),
    bytes: uint(w, 'bytes', what),
  };
  const shareVol = optUint(w, 'shareVol', what, MAX_VOL);
  if (shareVol !== undefined) vol.shareVol = shareVol;
  if (w.origin !== undefined) {
    const o = w.origin;
    if (typeof o !== 'object' || o === null || Array.isArray(o)) throw vmError('CORRUPT_RECORD', `${what}: field origin is not a map`);
    const of = o as Record<string, unknown>;
    vol.origin = { share: str(of, 'share', `${what} origin`), snapshot: str(of, 'snapshot', `${what} origin`) };
  }
  const lockedUntil = optUint(w, 'lockedUntil', what);
  if (lockedUntil !== undefined) vol.lockedUntil = lockedUntil;
  return vol;
}

export interface EntryValue {
  ino: number;
  type: NodeType;
}

export const ENTRY_BYTES = 9;

export function encodeEntry(e: EntryValue): Buffer {
  const b = Buffer.allocUnsafe(ENTRY_BYTES);
  b.writeUInt32BE(Math.floor(e.ino / 0x100000000), 0);
  b.writeUInt32BE(e.ino >>> 0, 4);
  b[8] = e.type;
  return b;
}

export function decodeEntry(b: Buffer, where = 'directory entry'): EntryValue {
  if (b.length !== ENTRY_BYTES) throw vmError('CORRUPT_RECORD', `${where}: malformed (${b.length} bytes, expected ${ENTRY_BYTES})`);
  const ino = b.readUInt32BE(0) * 0x100000000 + b.readUInt32BE(4);
  const type = b[8];
  if (ino === 0 || ino > MAX_INO || type < NodeType.File || type > NodeType.Symlink) {
    throw vmError('CORRUPT_RECORD', `${where}: malformed (inode ${ino}, type ${type})`);
  }
  return { ino, type };
}

/** A u32 BE value: the volume id of an `S` or `P` key, the `N` counters. */
export function encodeU32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

export function decodeU32(b: Buffer, where: string): number {
  if (b.length !== 4) throw vmError('CORRUPT_RECORD', `${where}: malformed (${b.length} bytes, expected 4)`);
  return b.readUInt32BE(0);
}
