// The vmvault file system: FUSE handlers over the namespace. A thin edge: it converts
// attributes and buffers; every rule lives in namespace/, every errno in errno.ts.

import type { Namespace } from '../namespace/namespace.js';
import type { FuseHandlers } from './handlers.js';

export function vmvaultHandlers(ns: Namespace): FuseHandlers {
  const fs = ns.fs;
  return {
    // Attr already fits FileStat: statArray fills in blksize (128 KiB) and blocks (size/512).
    getattr: (path) => fs.getattr(path),
    fgetattr: (_path, fh) => fs.fgetattr(fh),
    readdir: async (path) => (await fs.readdir(path)).map((e) => e.name),
    access: async () => {},
    statfs: async () => {
      const c = await ns.capacity();
      return { totalBytes: c.totalBytes, freeBytes: c.freeBytes, availableBytes: c.availableBytes, totalInodes: c.files + 1_000_000_000, freeInodes: 1_000_000_000, nameMax: 255 };
    },
    open: (path, flags) => fs.open(path, flags),
    create: (path, mode) => fs.create(path, mode),
    // Straight into libfuse's buffer; no promise when read-ahead already holds the bytes.
    read: (_path, fh, buf, len, pos) => fs.readInto(fh, pos, len === buf.length ? buf : buf.subarray(0, len)),
    write: (_path, fh, buf, len, pos) => ns.write(fh, pos, buf.subarray(0, len)),
    flush: (_path, fh) => fs.flush(fh),
    release: (_path, fh) => fs.release(fh),
    fsync: (_path, fh) => fs.fsync(fh),
    fsyncdir: (path) => fs.fsyncdir(path),
    truncate: (path, size) => fs.truncate(path, size),
    ftruncate: (_path, fh, size) => fs.ftruncate(fh, size),
    unlink: (path) => fs.unlink(path),
    rename: (from, to) => fs.rename(from, to),
    mkdir: (path, mode) => fs.mkdir(path, mode),
    rmdir: (path) => fs.rmdir(path),
    symlink: (target, path) => fs.symlink(target, path),
    readlink: (path) => fs.readlink(path),
    link: (existing, path) => fs.link(existing, path),
    chmod: (path, mode) => fs.chmod(path, mode),
    chown: (path, uid, gid) => fs.chown(path, uid, gid),
    utimens: (path, atime, mtime) => fs.utimens(path, atime, mtime),
    // No getxattr: the file system keeps no extended attributes, and without a handler libfuse
    // answers ENOSYS once, after which the kernel stops asking (callers see EOPNOTSUPP). With
    // one, the kernel asked for security.capability before every write(2): a FUSE round trip
    // per small file written, 0.5-1.5 ms each on a busy machine.
    listxattr: async () => [],
  };
}
