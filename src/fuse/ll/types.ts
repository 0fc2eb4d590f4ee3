// The requests the libfuse3 binding hands JavaScript and the shapes replies take (README.md has
// the table of which reply answers which op). Inode numbers and generations are bigint (64-bit,
// the namespace's own ids); offsets, sizes and file handles are numbers (below 2^53).

export interface LlMountOptions {
  fsname?: string;
  subtype?: string;
  allowOther?: boolean;
  defaultPermissions?: boolean;
  readOnly?: boolean;
  /** libfuse worker threads at most (default 4). */
  maxThreads?: number;
  /** One /dev/fuse fd per worker thread (default true). */
  cloneFd?: boolean;
  /** max_write in bytes (default 1 MiB; max_pages follows). */
  maxWrite?: number;
  /** Requests handed to JS and not yet answered, at most (default 1024, at most 65536). */
  maxInFlight?: number;
  /**
   * The kernel's read-ahead for the mount in KiB (its bdi's read_ahead_kb; default 4096, 0 keeps
   * the kernel's 128 KiB). Page-cache reads reach the mount as requests of up to max_pages
   * (maxWrite) within it, several in flight.
   */
  readAheadKb?: number;
  /** FUSE_CAP_WRITEBACK_CACHE (default false). */
  writebackCache?: boolean;
  /** readdirplus (default true). */
  readdirplus?: boolean;
  /** FUSE_CAP_ATOMIC_O_TRUNC: open() must truncate (default false: the kernel sends setattr). */
  atomicOTrunc?: boolean;
  /**
   * Large write payloads (64 KiB..1 MiB) arrive in blocks of the process-wide write ring
   * (native/src/fuse3/ring.c) instead of a new external Buffer each: such a request carries
   * `release`, which the handler must call once nothing reads `data` any more (default false:
   * `data` is the handler's to keep; the garbage collector frees it).
   */
  writeRing?: boolean;
  /**
   * The JS thread reads /dev/fuse itself (native/src/fuse3/jsreader.c: non-blocking, polled by
   * its event loop) and no libfuse worker thread is started: a request wakes the JS thread alone
   * instead of a worker that then wakes it (default false). Requests the addon answers in C
   * (absent names, directory attributes, holes, read-ahead windows) are then answered on the JS
   * thread, between batches; maxThreads and cloneFd do not apply. Default: the environment's
   * `VMVAULT_FUSE_JS_READER=1`, else false (the appliance's mount too, ll-mount.ts).
   */
  jsReader?: boolean;
  /** libfuse's debug output on stderr. */
  debug?: boolean;
  /** Further -o options, verbatim. */
  options?: string[];
}

interface Base {
  /** Answer with it; 0 for forget (no answer). */
  id: number;
  uid: number;
  gid: number;
  pid: number;
  /** The kernel interrupted it before it was handed over (the caller got a signal while waiting). */
  interrupted?: boolean;
}

export interface LlLock {
  /** F_RDLCK 0, F_WRLCK 1, F_UNLCK 2 */
  type: number;
  start: number;
  /** Inclusive; Number.MAX_SAFE_INTEGER = to the end of the file. */
  end: number;
  pid: number;
}

export interface LookupReq extends Base { op: 'lookup'; parent: bigint; name: string }
export interface ForgetReq extends Base { op: 'forget'; items: Array<{ ino: bigint; nlookup: number }> }
export interface GetattrReq extends Base { op: 'getattr'; ino: bigint; fh?: number }
export interface SetattrReq extends Base {
  op: 'setattr';
  ino: bigint;
  fh?: number;
  set: { mode?: number; uid?: number; gid?: number; size?: number; atimeMs?: number | 'now'; mtimeMs?: number | 'now'; ctimeMs?: number };
}
export interface ReadlinkReq extends Base { op: 'readlink'; ino: bigint }
export interface MknodReq extends Base { op: 'mknod'; parent: bigint; name: string; mode: number; umask: number; rdev: number }
export interface MkdirReq extends Base { op: 'mkdir'; parent: bigint; name: string; mode: number; umask: number }
export interface UnlinkReq extends Base { op: 'unlink'; parent: bigint; name: string }
export interface RmdirReq extends Base { op: 'rmdir'; parent: bigint; name: string }
export interface SymlinkReq extends Base { op: 'symlink'; parent: bigint; name: string; target: string }
export interface RenameReq extends Base { op: 'rename'; parent: bigint; name: string; newparent: bigint; newname: string; flags: number }
export interface LinkReq extends Base { op: 'link'; ino: bigint; newparent: bigint; newname: string }
export interface OpenReq extends Base { op: 'open'; ino: bigint; fh?: number; flags: number }
export interface ReadReq extends Base { op: 'read'; ino: bigint; fh: number; offset: number; size: number }
export interface WriteReq extends Base {
  op: 'write';
  ino: bigint;
  fh: number;
  offset: number;
  data: Buffer;
  flags: number;
  /**
   * With `writeRing`, on a payload in the ring: gives its block back (idempotent). Until it is
   * called the block is not reused; after, `data` may be overwritten by a later write at any time.
   */
  release?: () => void;
}
export interface FlushReq extends Base { op: 'flush'; ino: bigint; fh: number; lockOwner: bigint }
export interface ReleaseReq extends Base { op: 'release'; ino: bigint; fh: number; flags: number }
export interface FsyncReq extends Base { op: 'fsync'; ino: bigint; fh: number; datasync: boolean }
export interface OpendirReq extends Base { op: 'opendir'; ino: bigint; fh?: number; flags: number }
export interface ReaddirReq extends Base { op: 'readdir'; ino: bigint; fh: number; offset: number; size: number; plus: boolean }
export interface ReleasedirReq extends Base { op: 'releasedir'; ino: bigint; fh: number; flags: number }
export interface FsyncdirReq extends Base { op: 'fsyncdir'; ino: bigint; fh: number; datasync: boolean }
export interface StatfsReq extends Base { op: 'statfs'; ino: bigint }
export interface AccessReq extends Base { op: 'access'; ino: bigint; mask: number }
export interface CreateReq extends Base { op: 'create'; parent: bigint; name: string; mode: number; umask: number; flags: number }
export interface GetlkReq extends Base { op: 'getlk'; ino: bigint; fh: number; lockOwner: bigint; lock: LlLock }
export interface SetlkReq extends Base { op: 'setlk'; ino: bigint; fh: number; lockOwner: bigint; lock: LlLock; sleep: boolean }
export interface FlockReq extends Base { op: 'flock'; ino: bigint; fh: number; lockOwner: bigint; operation: number }
export interface FallocateReq extends Base { op: 'fallocate'; ino: bigint; fh: number; mode: number; offset: number; length: number }
export interface LseekReq extends Base { op: 'lseek'; ino: bigint; fh: number; offset: number; whence: number }
export interface CopyFileRangeReq extends Base {
  op: 'copy_file_range';
  ino: bigint;
  fh: number;
  offset: number;
  inoOut: bigint;
  fhOut: number;
  offsetOut: number;
  length: number;
  flags: number;
}

export type LlRequest =
  | LookupReq | ForgetReq | GetattrReq | SetattrReq | ReadlinkReq | MknodReq | MkdirReq | UnlinkReq | RmdirReq
  | SymlinkReq | RenameReq | LinkReq | OpenReq | ReadReq | WriteReq | FlushReq | ReleaseReq | FsyncReq
  | OpendirReq | ReaddirReq | ReleasedirReq | FsyncdirReq | StatfsReq | AccessReq | CreateReq | GetlkReq
  | SetlkReq | FlockReq | FallocateReq | LseekReq | CopyFileRangeReq;

export type LlOp = LlRequest['op'];
export type LlRequestOf<O extends LlOp> = Extract<LlRequest, { op: O }>;

export interface LlAttr {
  ino: bigint;
  /** With the S_IFMT bits. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  rdev?: number;
  /** 512-byte units; default ceil(size / 512). */
  blocks?: number;
  blksize?: number;
  /** Milliseconds since the epoch; fractions are kept to the nanosecond. */
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface LlEntry {
  /** 0n: a negative entry, cached for entryTimeout. */
  ino: bigint;
  generation: bigint;
  attr: LlAttr;
  /** Seconds. */
  attrTimeout: number;
  entryTimeout: number;
}

export interface LlOpenFlags {
  directIo?: boolean;
  keepCache?: boolean;
  nonseekable?: boolean;
  cacheDir?: boolean;
}

export interface LlDirent {
  name: string;
  ino: bigint;
  /** S_IFMT bits are enough for a plain readdir. */
  mode: number;
  /** The offset the next readdir starts at to get the entry after this one. */
  nextOffset: number;
  /** For readdirplus; without it the entry goes with ino 0 attributes (kernel looks it up). */
  entry?: LlEntry;
}

export interface LlStatfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail?: number;
  namemax?: number;
}
