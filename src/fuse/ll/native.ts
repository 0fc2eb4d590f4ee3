// Loads native/build/Release/vmvault_fuse3.node (native/src/fuse3/), the libfuse3 low-level
// binding. Only this file knows the addon's exports; session.ts wraps them. The addon is built
// only where libfuse3's headers are (libfuse3-dev): without it, loadFuse3() throws a typed error
// naming the package.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VmvaultError } from '../../errors.js';

export type Handle = { readonly __fuse3: unique symbol };

export interface Fuse3Addon {
  mount(mountpoint: string, args: string[], cfg: Int32Array, onBatch: (reqs: unknown[]) => void): Handle;
  unmount(h: Handle): Promise<void>;
  /** Exit, lazy umount, abort the connection; never waits (process exit). */
  detach(h: Handle): void;
  stats(h: Handle): { batches: number; requests: number; maxBatch: number; connection: number; jsReads: number };
  replyErr(h: Handle, id: number, errno: number): boolean;
  replyNone(h: Handle, id: number): boolean;
  replyEntry(h: Handle, id: number, f: Float64Array, u: BigUint64Array): boolean;
  replyCreate(h: Handle, id: number, f: Float64Array, u: BigUint64Array): boolean;
  replyAttr(h: Handle, id: number, f: Float64Array, u: BigUint64Array): boolean;
  replyOpen(h: Handle, id: number, fh: number, bits: number): boolean;
  replyData(h: Handle, id: number, buf: Uint8Array): boolean;
  replyWrite(h: Handle, id: number, n: number): boolean;
  replyReadlink(h: Handle, id: number, target: string): boolean;
  replyDir(h: Handle, id: number, names: string[], f: Float64Array, u: BigUint64Array): number;
  replyStatfs(h: Handle, id: number, f: Float64Array): boolean;
  replyLock(h: Handle, id: number, f: Float64Array): boolean;
  replyLseek(h: Handle, id: number, off: number): boolean;
  /** Queues FUSE_NOTIFY_INVAL_ENTRY on the addon's own thread (native/src/fuse3/notify.c); false: not queued. */
  invalidateEntry(h: Handle, parent: bigint, name: string): boolean;
  notifyStats(h: Handle): { queued: number; sent: number; failed: number };
  /** Zero runs ((start, end) pairs, sorted) of an open (ino, fh): reads inside one are answered in C (native/src/fuse3/holes.c). False: not taken (table full). */
  setHoles(h: Handle, ino: number, fh: number, runs: Float64Array): boolean;
  /** Forgets the runs of (ino, fh): its reads go to JavaScript again. */
  clearHoles(h: Handle, ino: number, fh: number): void;
  /** Reads answered from registered holes so far. */
  holeReads(h: Handle): number;
  /** Bytes [start, start + buf.length) of open (ino, fh) read as buf, answered in C until dropped (native/src/fuse3/datawin.c). False: not taken. */
  setDataWindow(h: Handle, ino: number, fh: number, start: number, buf: Buffer): boolean;
  /** Every entry in buf's memory is gone, and no reply copies out of it, when this returns. */
  dropDataWindow(h: Handle, buf: Buffer): void;
  /** Forgets every window of (ino, fh): its reads go to JavaScript again. */
  clearDataWindows(h: Handle, ino: number, fh: number): void;
  dataWindowStats(h: Handle): DataWindowStats;
  /** Bytes registered at most (default 128 MiB). */
  setDataWindowCap(h: Handle, bytes: number): void;
  /** Attributes (A_* + timeout) of a node: its getattrs are answered in C (native/src/fuse3/attrs.c). False: not taken. */
  setAttr(h: Handle, ino: bigint, f: Float64Array): boolean;
  /** Forgets the attributes of a node: its getattrs go to JavaScript again. */
  clearAttr(h: Handle, ino: bigint): void;
  /** Forgets every node's attributes. */
  clearAttrs(h: Handle): void;
  /** Getattrs answered from the table so far. */
  attrHits(h: Handle): number;
  /** Every name of a directory: lookups of other names in it are answered "no such name" in C (native/src/fuse3/names.c), kept by the kernel `timeout` s. False: not taken. */
  setNames(h: Handle, dir: bigint, names: string[], timeout: number): boolean;
  /** A name made in a directory; false: the directory is not held (any more). */
  addName(h: Handle, dir: bigint, name: string): boolean;
  /** A name removed from a directory. */
  removeName(h: Handle, dir: bigint, name: string): void;
  /** Forgets a directory's names: its lookups go to JavaScript again. */
  dropNames(h: Handle, dir: bigint): void;
  /** Forgets every directory's names. */
  clearNames(h: Handle): void;
  /** Lookups answered "no such name" from the table so far. */
  nameHits(h: Handle): number;
  /** Flushes of fh are answered in C until its release (native/src/fuse3/quiet.c). False: not taken. */
  quietFlush(h: Handle, fh: number): boolean;
  /** Flushes of fh go to JavaScript again. */
  unquiet(h: Handle, fh: number): void;
  /** A POSIX lock may be taken: every flush goes to JavaScript from now on. */
  locksUsed(h: Handle): void;
  /** Flushes answered in C so far. */
  quietFlushes(h: Handle): number;
  /** The one Buffer over the write ring's region (native/src/fuse3/ring.c), or null if it could not be allocated. */
  writeRing(): Buffer | null;
  /** Gives ring block `slot` back; false when it was not out (a second release is ignored). */
  releaseWrite(slot: number): boolean;
  ringStats(): WriteRingStats;
}

export interface WriteRingStats {
  blocks: number;
  blockBytes: number;
  /** Blocks free now. */
  free: number;
  /** Payloads copied into the ring so far. */
  taken: number;
  /** Large payloads that found no free block (they took the old path: an external Buffer). */
  missed: number;
  /** Releases of a block that was not out (ignored). */
  badReleases: number;
}

let cached: Fuse3Addon | undefined;
let failure: string | undefined;

/** The addon; VMVAULT_FUSE3_ADDON names another build of it (tests). */
export function loadFuse3(): Fuse3Addon {
  if (cached) return cached;
  if (failure === undefined) {
    // dist/src/fuse/ll -> repository root
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
    const file = process.env.VMVAULT_FUSE3_ADDON || path.join(root, 'native', 'build', 'Release', 'vmvault_fuse3.node');
    try {
      cached = createRequire(import.meta.url)(file) as Fuse3Addon;
      return cached;
    } catch (err) {
      failure = `${file}: ${(err as Error).message}`;
    }
  }
  throw new VmvaultError(
    'NOT_SUPPORTED',
    `the libfuse3 binding is not built (${failure}); install libfuse3-dev and fuse3, then run node tools/build-native.js`,
  );
}

/** Whether the addon loads here (tests skip without it). */
export function fuse3Available(): boolean {
  try {
    loadFuse3();
    return true;
  } catch {
    return false;
  }
}

/** The addon's data windows: reads answered, bytes registered now and at most, the cap, entries. */
export interface DataWindowStats {
  answered: number;
  bytes: number;
  peak: number;
  cap: number;
  windows: number;
}
