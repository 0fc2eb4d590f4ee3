// Mount options and the libfuse option string built from them. fuse-native's own option list
// has no big_writes/max_write, which is what decides throughput: without them the kernel sends
// 4 KiB writes and a do-nothing handler manages ~25-60 MB/s; with them ~550 MB/s.
import type { LogLine } from './errno.js';
import type { FuseOpName } from './handlers.js';

/** libfuse 2 cannot take writes larger than 128 KiB, whatever max_write says. */
export const LIBFUSE2_MAX_WRITE = 128 * 1024;

export type OpTimeouts = number | false | ({ default?: number | false } & Partial<Record<FuseOpName, number | false>>);

export interface FuseMountOptions {
  /** Ask for writes up to maxWrite instead of 4 KiB pages. Default true. */
  bigWrites?: boolean;
  /** Default and ceiling 128 KiB. */
  maxWrite?: number;
  /** Largest read the kernel sends; default 128 KiB. */
  maxRead?: number;
  /**
   * Seconds the kernel may trust attributes / names without asking. The file system changes
   * files only through this mount, so caching is safe; what is not seen in time is a change
   * made outside it (a restore through the control plane), for at most this long. Default 1.
   */
  attrTimeoutS?: number;
  entryTimeoutS?: number;
  /** Seconds to remember that a name does not exist. Default 0. */
  negativeTimeoutS?: number;
  /**
   * Keep the page cache of a file across opens if its mtime and size are unchanged (libfuse
   * auto_cache). Default true: re-reading a VM image or a snapshot file costs no FUSE reads.
   */
  autoCache?: boolean;
  /**
   * Keep the page cache across opens unconditionally (kernel_cache). Default false: a file
   * replaced outside the mount would be read stale until evicted.
   */
  kernelCache?: boolean;
  /** Let users other than the mounting one in (allow_other). Default false. */
  allowOther?: boolean;
  /** Let the kernel check mode bits against the caller (default_permissions). Default false. */
  defaultPermissions?: boolean;
  /** Report FileStat.ino as st_ino (use_ino), for tools that detect hard links. Default false. */
  useIno?: boolean;
  fsname?: string;
  subtype?: string;
  /** libfuse debug output on stderr. */
  debug?: boolean;
  /**
   * Milliseconds an operation may take before the caller gets ETIMEDOUT (the handler keeps
   * running; its late answer is dropped). A number, false for none, or per operation.
   * Default: DEFAULT_OP_TIMEOUTS.
   */
  opTimeoutMs?: OpTimeouts;
  /**
   * Make libfuse pass utimens calls that set only one of atime/mtime (touch -m -d). fuse-native
   * leaves libfuse's flag_utime_omit_ok unset, so such calls are silently dropped; the binding
   * sets the flag in libfuse's memory after mount (see native-layout.ts). Default true.
   */
  utimeOmit?: boolean;
  /** Create the mount point if it is missing. Default false. */
  mkdir?: boolean;
  /** Where the binding reports errors that callers see only as an errno. Default stderr. */
  log?: LogLine;
}

/**
 * Why these numbers: fuse-native's default is 15 s for everything, and a write into a dedup
 * store under load (a container fsync on a busy disk, a LevelDB compaction stall, garbage
 * collection holding a lock) can take longer; failing it fails the hypervisor's backup job,
 * while waiting costs only time. So the data path gets five minutes. A lookup or readdir that
 * takes a minute is a bug, and surfacing it beats a process stuck in D state.
 */
export const DEFAULT_OP_TIMEOUTS: { default: number } & Partial<Record<FuseOpName, number>> = {
  default: 60_000,
  read: 300_000,
  write: 300_000,
  flush: 300_000,
  fsync: 300_000,
  release: 300_000,
  create: 300_000,
  truncate: 300_000,
  ftruncate: 300_000,
};

export function timeoutFor(op: FuseOpName, t: OpTimeouts | undefined): number {
  const table: OpTimeouts = t ?? DEFAULT_OP_TIMEOUTS;
  if (table === false) return 0;
  if (typeof table === 'number') return table;
  const v = table[op] ?? table.default ?? DEFAULT_OP_TIMEOUTS.default;
  return v === false ? 0 : v;
}

function seconds(n: number): string {
  if (!(n >= 0)) throw new RangeError(`timeout must be >= 0 seconds, got ${n}`);
  return String(n);
}

function checkName(what: string, v: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(v)) throw new RangeError(`${what} "${v}" may hold only letters, digits, . _ -`);
  return v;
}

/** The "-o..." argument fuse-native passes to fuse_mount()/fuse_new(). */
export function optionString(o: FuseMountOptions): string {
  const maxWrite = Math.min(o.maxWrite ?? LIBFUSE2_MAX_WRITE, LIBFUSE2_MAX_WRITE);
  const opts: string[] = [
    `fsname=${checkName('fsname', o.fsname ?? 'vmvault')}`,
    `subtype=${checkName('subtype', o.subtype ?? 'vmvault')}`,
    `max_read=${o.maxRead ?? LIBFUSE2_MAX_WRITE}`,
    `entry_timeout=${seconds(o.entryTimeoutS ?? 1)}`,
    `attr_timeout=${seconds(o.attrTimeoutS ?? 1)}`,
    `negative_timeout=${seconds(o.negativeTimeoutS ?? 0)}`,
  ];
  if (o.bigWrites ?? true) opts.push('big_writes', `max_write=${maxWrite}`);
  if (o.autoCache ?? true) opts.push('auto_cache');
  if (o.kernelCache) opts.push('kernel_cache');
  if (o.allowOther) opts.push('allow_other');
  if (o.defaultPermissions) opts.push('default_permissions');
  if (o.useIno) opts.push('use_ino');
  if (o.debug) opts.push('debug');
  return '-o' + opts.join(',');
}
