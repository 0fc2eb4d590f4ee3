// Packs attributes and entries into the flat arrays the addon reads (native/src/fuse3/session.h:
// A_* attribute indices, E_* entry = attribute + two timeouts, D_* dirent = mode, next offset,
// entry). One scratch pair is reused for every reply: the addon copies out before returning.
import type { LlAttr, LlDirent, LlEntry } from './types.js';

export const A_COUNT = 11;
export const E_COUNT = A_COUNT + 2;
export const D_COUNT = 3 + E_COUNT;
const DEFAULT_BLKSIZE = 128 * 1024;

export const scratchF = new Float64Array(32);
export const scratchU = new BigUint64Array(4);

export function packAttr(f: Float64Array, at: number, a: LlAttr): void {
  f[at] = a.mode;
  f[at + 1] = a.nlink;
  f[at + 2] = a.uid;
  f[at + 3] = a.gid;
  f[at + 4] = a.rdev ?? 0;
  f[at + 5] = a.size;
  f[at + 6] = a.blocks ?? Math.ceil(a.size / 512);
  f[at + 7] = a.blksize ?? DEFAULT_BLKSIZE;
  f[at + 8] = a.atimeMs;
  f[at + 9] = a.mtimeMs;
  f[at + 10] = a.ctimeMs;
}

export function packEntry(f: Float64Array, at: number, u: BigUint64Array, uat: number, e: LlEntry): void {
  packAttr(f, at, e.attr);
  f[at + A_COUNT] = e.attrTimeout;
  f[at + A_COUNT + 1] = e.entryTimeout;
  u[uat] = e.ino;
  u[uat + 1] = e.generation;
}

/** Dirents into fresh arrays (a directory page can be long). */
export function packDirents(entries: LlDirent[]): { names: string[]; f: Float64Array; u: BigUint64Array } {
  const n = entries.length;
  const f = new Float64Array(n * D_COUNT);
  const u = new BigUint64Array(n * 2);
  const names = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const d = entries[i];
    names[i] = d.name;
    f[i * D_COUNT] = d.mode;
    f[i * D_COUNT + 1] = d.nextOffset;
    if (d.entry) {
      f[i * D_COUNT + 2] = 1;
      packEntry(f, i * D_COUNT + 3, u, i * 2, d.entry);
    } else {
      u[i * 2] = d.ino;
    }
  }
  return { names, f, u };
}

export function openBits(o: { directIo?: boolean; keepCache?: boolean; nonseekable?: boolean; cacheDir?: boolean } | undefined): number {
  if (!o) return 0;
  return (o.directIo ? 1 : 0) | (o.keepCache ? 2 : 0) | (o.nonseekable ? 4 : 0) | (o.cacheDir ? 8 : 0);
}
