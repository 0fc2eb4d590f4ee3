// Conversions between our attribute types and fuse-native's wire arrays (Uint32Arrays that its
// C side copies into struct stat / struct statvfs; 64-bit values travel as low/high pairs).
import type { FileStat, FsStats } from './handlers.js';

const TWO_32 = 4294967296;
const U32_MAX = 0xffffffff;
const DEFAULT_BLKSIZE = 128 * 1024;

function setU64(a: Uint32Array, i: number, n: number): void {
  const v = Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
  a[i] = v % TWO_32;
  a[i + 1] = Math.floor(v / TWO_32);
}

function ms(t: Date | number): number {
  return typeof t === 'number' ? t : t.getTime();
}

/** struct stat as fuse-native's populate_stat() reads it: 18 uint32, times in ms. */
export function statArray(s: FileStat): Uint32Array {
  const a = new Uint32Array(18);
  a[0] = s.mode;
  a[1] = s.uid ?? 0;
  a[2] = s.gid ?? 0;
  setU64(a, 3, s.size);
  a[5] = 0; // st_dev is the kernel's to choose
  a[6] = s.nlink ?? 1;
  a[7] = s.ino ?? 0;
  a[8] = s.rdev ?? 0;
  a[9] = s.blksize ?? DEFAULT_BLKSIZE;
  setU64(a, 10, s.blocks ?? Math.ceil(s.size / 512));
  setU64(a, 12, ms(s.atime));
  setU64(a, 14, ms(s.mtime));
  setU64(a, 16, ms(s.ctime));
  return a;
}

export const DIR_STAT_MODE = 0o040755;

/**
 * struct statvfs as fuse-native's populate_statvfs() reads it: 11 uint32. Block counts only
 * fit 32 bits, so the fragment size doubles from 4 KiB until the total fits: 100 TiB reports
 * in 32 KiB blocks. f_bsize is kept equal to f_frsize because some tools multiply by one and
 * some by the other.
 */
export function statfsArray(s: FsStats): Uint32Array {
  let frsize = 4096;
  while (Math.ceil(s.totalBytes / frsize) > U32_MAX) frsize *= 2;
  const blocks = (bytes: number) => Math.min(U32_MAX, Math.floor(Math.max(0, bytes) / frsize));
  const a = new Uint32Array(11);
  a[0] = frsize; // f_bsize
  a[1] = frsize; // f_frsize
  a[2] = blocks(s.totalBytes);
  a[3] = blocks(s.freeBytes);
  a[4] = blocks(s.availableBytes ?? s.freeBytes);
  a[5] = Math.min(U32_MAX, s.totalInodes ?? U32_MAX);
  a[6] = Math.min(U32_MAX, s.freeInodes ?? U32_MAX);
  a[7] = a[6]; // f_favail
  a[8] = 0; // f_fsid: the kernel ignores it for FUSE
  a[9] = 0; // f_flag: likewise
  a[10] = s.nameMax ?? 255;
  return a;
}

/**
 * fuse-native turns each timespec into milliseconds before JS sees it, so libfuse's UTIME_NOW
 * and UTIME_OMIT markers (tv_sec 0, tv_nsec 2^30-1 / 2^30-2) both arrive as exactly 1073 ms
 * after the epoch and cannot be told apart. A real timestamp of 1970-01-01T00:00:01.073Z does
 * not occur in practice, so 1073 means "now or omit".
 */
export const UTIME_MARKER_MS = Math.floor((2 ** 30 - 2) / 1e6);

/**
 * Resolve the markers: beside a real time a marker means "leave unchanged" (touch -m -d, touch
 * -a -d); two markers mean "now" for both (touch, utimes(NULL)). The one wrong case is touch -m
 * / touch -a without a date, which also sets the other time to now.
 */
export function resolveUtimens(atimeMs: number, mtimeMs: number, now: number): [number | null, number | null] {
  const aMark = atimeMs === UTIME_MARKER_MS;
  const mMark = mtimeMs === UTIME_MARKER_MS;
  if (aMark && mMark) return [now, now];
  return [aMark ? null : atimeMs, mMark ? null : mtimeMs];
}
