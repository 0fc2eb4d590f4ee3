// The contract between a file system implementation (the namespace adapter, or a test double)
// and the binding. Every operation returns a promise; throw a VmvaultError (or a Node error with
// a POSIX .code) to fail it — errno.ts turns that into the errno the caller sees.
//
// Every callback runs on the one JS thread while a libfuse worker thread waits for the answer,
// so handlers must stay asynchronous and quick: a handler that computes for 10 ms stalls every
// request of every process using the mount for 10 ms.
//
// Paths are absolute within the mount ("/share/dir/file"). A file unlinked while open is renamed
// by libfuse to "<dir>/.fuse_hiddenXXXXXXXX" and unlinked on last release (no hard_remove), so
// the handlers see that rename and later an unlink of the hidden name.
//
// The caller's uid/gid/pid are NOT available: fuse-native never exposes fuse_get_context().
// Permission checks against the caller are left to the kernel (option defaultPermissions).

/** Attributes as the kernel wants them. Times are milliseconds since the epoch (or Dates). */
export interface FileStat {
  /** Full st_mode, type bits included (0o100644 for a file, 0o040755 for a directory). */
  mode: number;
  size: number;
  uid?: number;
  gid?: number;
  nlink?: number;
  /** Reported to callers only with the useIno option. */
  ino?: number;
  rdev?: number;
  /** Default 128 KiB: tools such as cp size their buffers from it. */
  blksize?: number;
  /** 512-byte units, what du adds up. Default: size rounded up to 512. */
  blocks?: number;
  atime: Date | number;
  mtime: Date | number;
  ctime: Date | number;
}

export interface DirEntry {
  name: string;
  stat?: FileStat;
}

/**
 * File system totals in bytes. The binding scales them into 32-bit block counts (fuse-native
 * passes statvfs fields as uint32), so a store of hundreds of TiB still reports right.
 */
export interface FsStats {
  totalBytes: number;
  freeBytes: number;
  /** Free to unprivileged users; defaults to freeBytes. */
  availableBytes?: number;
  totalInodes?: number;
  freeInodes?: number;
  /** Longest name; default 255. */
  nameMax?: number;
}

/**
 * A file handle chosen by open/create and handed back to read/write/release/fgetattr/...: a
 * positive integer below 2^31 (fuse-native carries it as uint32 and treats 0 as "none").
 */
export type FileHandle = number;

export interface FuseHandlers {
  getattr(path: string): Promise<FileStat>;
  /**
   * Attributes of an open file by its handle: after create and ftruncate, and when the kernel
   * refreshes the size of an open file (lseek SEEK_END after a write).
   * Lets a file that is being written, or is open but unlinked, report its own size.
   * Without it libfuse falls back to getattr(path).
   */
  fgetattr?(path: string, fh: FileHandle): Promise<FileStat>;
  /** Entry names without "." and ".." (the binding adds them). */
  readdir(path: string): Promise<Array<string | DirEntry>>;
  access?(path: string, mode: number): Promise<void>;
  statfs?(path: string): Promise<FsStats>;

  open?(path: string, flags: number): Promise<FileHandle>;
  /** Create and open a regular file; the open flags are not passed by fuse-native. */
  create?(path: string, mode: number): Promise<FileHandle>;
  /**
   * Fill buf[0..len) from offset pos; resolve the byte count (less than len only at end of
   * file). buf is libfuse's own memory: it is detached once the promise settles or times out,
   * so copy what must outlive the call. A plain number (no promise) answers at once: the
   * cheap path for data already in memory.
   */
  read?(path: string, fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<number> | number;
  /** Resolve len unless the write failed. Same lifetime rule for buf as read: copy to keep. */
  write?(path: string, fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<number>;
  /** Called on every close(2) of a descriptor; a place to report deferred write errors. */
  flush?(path: string, fh: FileHandle): Promise<void>;
  /** Last close of the handle; its return value reaches nobody. */
  release?(path: string, fh: FileHandle): Promise<void>;
  /** Resolve only when the data (and unless datasync, the metadata) is durable. */
  fsync?(path: string, fh: FileHandle, datasync: boolean): Promise<void>;
  fsyncdir?(path: string, fh: FileHandle, datasync: boolean): Promise<void>;
  truncate?(path: string, size: number): Promise<void>;
  ftruncate?(path: string, fh: FileHandle, size: number): Promise<void>;

  unlink?(path: string): Promise<void>;
  rename?(from: string, to: string): Promise<void>;
  mkdir?(path: string, mode: number): Promise<void>;
  rmdir?(path: string): Promise<void>;
  /** Make `path` a symbolic link whose contents are `target`. */
  symlink?(target: string, path: string): Promise<void>;
  readlink?(path: string): Promise<string>;
  link?(existing: string, path: string): Promise<void>;
  mknod?(path: string, mode: number, rdev: number): Promise<void>;

  chmod?(path: string, mode: number): Promise<void>;
  /** -1 means "leave unchanged", as in chown(2). */
  chown?(path: string, uid: number, gid: number): Promise<void>;
  /**
   * Set times in ms since the epoch; null leaves that time unchanged. "Now" arrives already
   * resolved to the current time. Precision is milliseconds (fuse-native's wire format).
   */
  utimens?(path: string, atime: number | null, mtime: number | null): Promise<void>;

  /** Absent or throwing NOT_SUPPORTED: callers see ENOTSUP. */
  setxattr?(path: string, name: string, value: Buffer, flags: number): Promise<void>;
  /** Resolve null when the attribute does not exist (callers see ENODATA). */
  getxattr?(path: string, name: string): Promise<Buffer | null>;
  listxattr?(path: string): Promise<string[]>;
  removexattr?(path: string, name: string): Promise<void>;
}

export type FuseOpName = keyof FuseHandlers;
