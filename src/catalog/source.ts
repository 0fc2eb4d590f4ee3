// The catalog's reading half: a disk image file in, its guest files out.
//
//   ByteSource (a snapshot file, or any plain file)
//     -> openDisk      raw | qcow2 | vmdk, reads served by the format's own tables (image/)
//     -> findVolumes   MBR, GPT, LVM2 linear LVs, or the whole disk; fs detected by magic (volume/)
//     -> walkFilesystem  Sleuth Kit for ext/NTFS/FAT/exFAT where it can read a plain path,
//                        our own readers for XFS (and ext where no path serves) (fs/)
//     -> readFileRange   a file's bytes by its extents (holes read as zeros)
//
// Nothing here imports namespace/, store/, fuse/ or control/: plain byte sources in, entries
// out (test/layers.test.ts holds it so). The caller (catalog-db) builds ByteSources from
// snapshot files through the namespace.
//
// Contract (roster.md, "catalog-read -> catalog-db"); adjusted only by adding optional fields,
// each marked "added".

import { openDiskImpl } from './image/open-disk.js';
import { findVolumesImpl } from './volume/find-volumes.js';
import { walkFilesystemImpl, walkFilesystemBatchesImpl, readFileRangeImpl } from './fs/walk.js';

/**
 * Random-access bytes. A read past `size` returns the bytes up to `size` (a short Buffer);
 * a read may return a Buffer the caller must not keep if it mutates it (treat it as read-only).
 * Reads may run concurrently.
 */
export interface ByteSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * Fills `out` with bytes [offset, offset + out.length), which lie within the source, where the
   * source can read into a caller's buffer (a snapshot's stored version): the read cache then
   * puts many small chunks in one allocation. Optional.
   */
  readInto?(offset: number, out: Buffer): Promise<void>;
  /** A file path another process can read these same bytes at (for Sleuth Kit), if there is one. */
  readonly path?: string;
  /**
   * added: where in `path` these bytes begin (a partition of a raw disk is the disk's path at the
   * partition's offset). Absent = 0. Sleuth Kit gets it as `-o offset/512`.
   */
  readonly pathOffset?: number;
}

export interface Disk extends ByteSource {
  readonly format: 'raw' | 'qcow2' | 'vmdk';
  /** added: why the disk could not be read as its format says (encrypted qcow2, a backing file...). */
  readonly note?: string;
}

/** Detects the format (qcow2 and VMDK by magic, anything else is raw) and serves the disk's bytes. */
export function openDisk(file: ByteSource): Promise<Disk> {
  return openDiskImpl(file);
}

export type FsKind = 'ext' | 'xfs' | 'ntfs' | 'fat' | 'exfat' | 'swap' | 'encrypted' | 'unknown';

export interface Volume extends ByteSource {
  readonly name: string;          // 'p1', 'p2', 'lvm-vg0-root', or 'disk' for an unpartitioned fs
  readonly fs: FsKind;
  readonly note?: string;         // why something could not be read
  /**
   * Identity of the volume's content for reuse: equal ids => equal bytes (may be undefined).
   * added: the reader cannot know an identity from plain bytes; it gives `extents` instead, the
   * volume's byte ranges in the disk, from which the caller derives one (segment-tree roots).
   */
  readonly id?: string;
  /** added: the volume's bytes as ranges of the disk, in order (one for a partition, several for an LV). */
  readonly extents?: Array<{ diskOffset: number; length: number }>;
  /** added: a label or UUID where the fs or LV has one, for display. */
  readonly label?: string;
}

/** MBR (with extended/logical), GPT, LVM2 linear LVs; a disk without a table is one volume 'disk'. */
export function findVolumes(disk: Disk): Promise<Volume[]> {
  return findVolumesImpl(disk);
}

export interface FileEntry {
  path: string;                   // '/etc/nginx/nginx.conf'
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number; mtimeMs: number; mode: number; uid: number; gid: number; inode: number;
  target?: string;                // symlink target
  extents?: Array<{ logical: number; physical: number /* byte offset in the volume */; length: number }>;
  /**
   * added: the file's bytes stored inline in its metadata (ext4 inline data, XFS local fork,
   * NTFS resident $DATA); readFileRange serves these without extents.
   */
  inline?: Buffer;
  /**
   * added: the volume's byte ranges this entry was read from besides its inode's own record
   * (directory blocks, extent-tree and indirect blocks, a slow symlink's block; `logical` only
   * orders them). While those and the record are unchanged, a later walk may reuse the entry
   * (fs/ext-reuse.ts). Set by the ext walker; absent = the record alone.
   */
  deps?: Array<{ logical: number; physical: number; length: number }>;
}

export interface WalkOptions {
  signal?: AbortSignal;
  onProgress?: (files: number) => void;
  /**
   * added: called once for each problem met while walking (a damaged directory, an unreadable
   * inode); the walk goes on with what it can read. Without it, notes are dropped.
   */
  onNote?: (note: string) => void;
}

/**
 * Every entry of the volume's filesystem, parents before children ('/' itself is not yielded).
 * A damaged fs yields what it can, reports each problem through onNote, and throws a
 * VmvaultError (CORRUPT_RECORD) only when nothing at all can be read (no superblock).
 * Volumes of fs 'swap' | 'encrypted' | 'unknown' yield nothing.
 */
export function walkFilesystem(vol: Volume, opts?: WalkOptions): AsyncIterable<FileEntry> {
  return walkFilesystemImpl(vol, opts ?? {});
}

/** walkFilesystem, in batches (a directory's entries at a time for ext): the same entries in the same order. */
export function walkFilesystemBatches(vol: Volume, opts?: WalkOptions): AsyncIterable<FileEntry[]> {
  return walkFilesystemBatchesImpl(vol, opts ?? {});
}

/** Bytes [offset, offset+length) of the file, cut at its size; holes between extents read as zeros. */
export function readFileRange(vol: Volume, entry: FileEntry, offset: number, length: number): Promise<Buffer> {
  return readFileRangeImpl(vol, entry, offset, length);
}
