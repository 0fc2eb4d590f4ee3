// The contract between the catalog's readers (disk formats, partitions, LVM, filesystem
// walkers: the `catalog-read` part of issue 15) and the catalog database above them
// (roster.md, "catalog-read -> catalog-db"). Until the readers land, standin-disk.ts and
// standin-ext.ts implement it for raw disks, MBR/GPT and ext2/3/4 only; the merge replaces them.

import { openStandinDisk, findStandinVolumes } from './standin-disk.js';
import { walkExt, readExtRange } from './standin-ext.js';

export interface ByteSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /** A file path another process can read these same bytes at (for Sleuth Kit), if there is one. */
  readonly path?: string;
}
export interface Disk extends ByteSource {
  readonly format: 'raw' | 'qcow2' | 'vmdk';
}
export interface Volume extends ByteSource {
  readonly name: string;
  readonly fs: 'ext' | 'xfs' | 'ntfs' | 'fat' | 'exfat' | 'swap' | 'encrypted' | 'unknown';
  readonly note?: string;
  /** Where the volume starts in the disk (bytes), for reuse by content across points. */
  readonly diskOffset?: number;
}
export interface FileEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mtimeMs: number;
  mode: number;
  uid: number;
  gid: number;
  inode: number;
  target?: string;
  extents?: Array<{ logical: number; physical: number; length: number }>;
}

export function openDisk(file: ByteSource): Promise<Disk> {
  return openStandinDisk(file);
}

export function findVolumes(disk: Disk): Promise<Volume[]> {
  return findStandinVolumes(disk);
}

export function walkFilesystem(vol: Volume, opts?: { signal?: AbortSignal; onProgress?: (files: number) => void }): AsyncIterable<FileEntry> {
  if (vol.fs !== 'ext') throw Object.assign(new Error(`${vol.name}: ${vol.fs} file systems are not read yet`), { code: 'NOT_SUPPORTED' });
  return walkExt(vol, opts);
}

export function readFileRange(vol: Volume, entry: FileEntry, offset: number, length: number): Promise<Buffer> {
  return readExtRange(vol, entry, offset, length);
}
