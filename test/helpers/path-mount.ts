// A path-addressed file system mounted on the libfuse3 low-level binding (src/fuse/ll/), for the
// test file systems that are naturally written by path: the power-loss passthrough
// (test/powerfail/) and the in-memory one of test/fuse-binding.test.ts (helpers/memfs.ts). The
// vmvault mount itself is node-addressed (src/fuse/ll-filesystem.ts) and does not use this.
//
// What libfuse's high-level API did for fuse-native, in small: a node table that gives every
// (parent, name) looked up a node id and turns node ids back into paths; lookup counts and
// forget; open directories listed once at opendir; POSIX, OFD and flock locks in the mount's
// own lock table (src/fuse/ll-locks.ts, as the vmvault mount keeps them: the binding asks the
// kernel for them, so a store's lock file on this mount locks across processes). Hard links get one node per name (as the
// high-level API without use_ino did). A name unlinked or replaced while open is removed at once
// (hard_remove): its handles keep working and the handlers see its last path with them.
//
// Errors: a handler throws a VmvaultError or a Node error with a POSIX `.code`; src/fuse/errno.ts
// turns it into the errno (codes that collapse to EIO are logged).

import { resolve } from 'node:path';
import { toErrno, type LogLine } from '../../src/fuse/errno.js';
import { LockTable } from '../../src/fuse/ll-locks.js';
import * as E from '../../src/fuse/ll/errno.js';
import { dispatchOps, LlSession, type LlAttr, type LlDirent, type LlEntry, type LlOps } from '../../src/fuse/ll/session.js';
import { fuseMountsAt, prepareMountPoint, unmountFuse, type UnmountResult } from '../../src/fuse/mount-util.js';

/** Attributes. Times are milliseconds since the epoch. */
export interface FileStat {
  /** Full st_mode, type bits included (0o100644 for a file, 0o040755 for a directory). */
  mode: number;
  size: number;
  uid?: number;
  gid?: number;
  nlink?: number;
  /** Ignored: st_ino is the node id the adapter gives the name. */
  ino?: number;
  rdev?: number;
  blocks?: number;
  atime: number;
  mtime: number;
  ctime: number;
}

export interface DirEntry {
  name: string;
}

/** File system totals in bytes (64-bit statfs: no scaling needed). */
export interface FsStats {
  totalBytes: number;
  freeBytes: number;
  availableBytes?: number;
  totalInodes?: number;
  freeInodes?: number;
  nameMax?: number;
}

export type FileHandle = number;

/**
 * The contract a path-addressed file system implements (the shape fuse-native's handlers had).
 * Paths are absolute within the mount ("/dir/file"). Every operation returns a promise.
 */
export interface PathHandlers {
  getattr(path: string): Promise<FileStat>;
  /** Attributes of an open file by its handle (fstat, also after unlink). Default: getattr(path). */
  fgetattr?(path: string, fh: FileHandle): Promise<FileStat>;
  /** Entry names without "." and ".." (the adapter adds them). */
  readdir(path: string): Promise<Array<string | DirEntry>>;
  access?(path: string, mode: number): Promise<void>;
  statfs?(path: string): Promise<FsStats>;
  open?(path: string, flags: number): Promise<FileHandle>;
  /** Create and open a regular file. */
  create?(path: string, mode: number): Promise<FileHandle>;
  /** Fill buf[0..len) from pos; resolve the byte count (short only at the end of the file). */
  read?(path: string, fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<number>;
  /** buf is the caller's to keep (the binding copied it out of libfuse once). Resolve len. */
  write?(path: string, fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<number>;
  flush?(path: string, fh: FileHandle): Promise<void>;
  release?(path: string, fh: FileHandle): Promise<void>;
  fsync?(path: string, fh: FileHandle, datasync: boolean): Promise<void>;
  fsyncdir?(path: string, fh: FileHandle, datasync: boolean): Promise<void>;
  truncate?(path: string, size: number): Promise<void>;
  ftruncate?(path: string, fh: FileHandle, size: number): Promise<void>;
  unlink?(path: string): Promise<void>;
  rename?(from: string, to: string): Promise<void>;
  mkdir?(path: string, mode: number): Promise<void>;
  rmdir?(path: string): Promise<void>;
  symlink?(target: string, path: string): Promise<void>;
  readlink?(path: string): Promise<string>;
  link?(existing: string, path: string): Promise<void>;
  chmod?(path: string, mode: number): Promise<void>;
  chown?(path: string, uid: number, gid: number): Promise<void>;
  /** Times in ms since the epoch; null leaves that time unchanged ("now" arrives resolved). */
  utimens?(path: string, atime: number | null, mtime: number | null): Promise<void>;
}

export interface PathMountOptions {
  fsname?: string;
  /** Seconds the kernel may trust attributes and names (default 1; 0 for none). */
  attrTimeoutS?: number;
  entryTimeoutS?: number;
  /** Seconds a missing name is remembered (default 0). */
  negativeTimeoutS?: number;
  /** Keep the page cache across opens (default false: every open drops it). */
  keepCache?: boolean;
  allowOther?: boolean;
  defaultPermissions?: boolean;
  maxThreads?: number;
  /** Create the mount point if missing. */
  mkdir?: boolean;
  /** Where errors that callers see only as EIO are reported. Default stderr. */
  log?: LogLine;
}

interface Node {
  id: bigint;
  parent: bigint;
  name: string;
  nlookup: number;
  /** Set when the name was unlinked or replaced: the path it had, for its open handles. */
  gone?: string;
  /** Handles open on it: a stat of an unlinked open file (fstat) asks by one of them. */
  fhs: Set<number>;
}

const S_IFMT = 0o170000;
const UNKNOWN_INO = 0xffffffffn;

export class PathMount {
  readonly mountPath: string;
  private session: LlSession | undefined;
  private readonly log: LogLine;
  private readonly nodes = new Map<bigint, Node>();
  private readonly byName = new Map<string, bigint>();
  private readonly dirs = new Map<number, LlDirent[]>();
  private readonly locks = new LockTable();
  private nextId = 2n;
  private nextDirFh = 1;

  constructor(mountPath: string, private readonly h: PathHandlers, private readonly o: PathMountOptions = {}) {
    this.mountPath = resolve(mountPath);
    this.log = o.log ?? ((l) => void process.stderr.write(l + '\n'));
    this.nodes.set(1n, { id: 1n, parent: 1n, name: '', nlookup: 1, fhs: new Set() });
  }

  get mounted(): boolean {
    return this.session !== undefined;
  }

  get connection(): number | undefined {
    return this.session?.connection;
  }

  async mount(): Promise<void> {
    if (this.session) throw new Error(`${this.mountPath}: mount() while mounted`);
    await prepareMountPoint(this.mountPath, { mkdir: this.o.mkdir });
    this.session = await LlSession.mount(
      this.mountPath,
      { fsname: this.o.fsname ?? 'pathfs', allowOther: this.o.allowOther ?? false, defaultPermissions: this.o.defaultPermissions ?? false, maxThreads: this.o.maxThreads ?? 4, readdirplus: false },
      dispatchOps(this.ops(), { log: this.log }),
      (err) => this.log(`pathfs: a batch handler threw: ${(err as Error)?.stack ?? String(err)}`),
    );
  }

  /** Unmount: graceful if unused, else lazy; then stop the session's threads. */
  async unmount(): Promise<UnmountResult> {
    const s = this.session;
    if (!s) throw new Error(`${this.mountPath}: unmount() while not mounted`);
    const ours = (await fuseMountsAt(this.mountPath)).some((m) => m.minor === s.connection);
    const result: UnmountResult = ours ? await unmountFuse(this.mountPath) : { how: 'none' };
    this.session = undefined;
    await s.unmount();
    return result;
  }

  // ---- the node table --------------------------------------------------------------------

  private key(parent: bigint, name: string): string {
    return `${parent}/${name}`;
  }

  private path(id: bigint): string {
    let n = this.nodes.get(id);
    if (!n) throw Object.assign(new Error(`node ${id} is not known`), { code: 'ESTALE' });
    if (n.gone !== undefined) return n.gone;
    const parts: string[] = [];
    while (n.id !== 1n) {
      parts.push(n.name);
      const p = this.nodes.get(n.parent);
      if (!p) throw Object.assign(new Error(`parent of node ${n.id} is not known`), { code: 'ESTALE' });
      n = p;
    }
    return '/' + parts.reverse().join('/');
  }

  private child(parent: bigint, name: string): string {
    const p = this.path(parent);
    return p === '/' ? `/${name}` : `${p}/${name}`;
  }

  /** The node of (parent, name), made on first sight; counts one lookup. */
  private remember(parent: bigint, name: string): Node {
    const k = this.key(parent, name);
    let id = this.byName.get(k);
    if (id === undefined) {
      id = this.nextId++;
      this.byName.set(k, id);
      this.nodes.set(id, { id, parent, name, nlookup: 0, fhs: new Set() });
    }
    const n = this.nodes.get(id)!;
    n.nlookup++;
    return n;
  }

  /** The name is gone (unlinked, or replaced by a rename): its node keeps its last path. */
  private detach(parent: bigint, name: string): void {
    const k = this.key(parent, name);
    const id = this.byName.get(k);
    if (id === undefined) return;
    const n = this.nodes.get(id)!;
    n.gone = this.child(parent, name);
    this.byName.delete(k);
    if (n.nlookup === 0) this.nodes.delete(id);
  }

  private forget(id: bigint, count: number): void {
    const n = this.nodes.get(id);
    if (!n || id === 1n) return;
    n.nlookup -= count;
    if (n.nlookup > 0) return;
    this.nodes.delete(id);
    if (n.gone === undefined && this.byName.get(this.key(n.parent, n.name)) === id) this.byName.delete(this.key(n.parent, n.name));
  }

  private attr(id: bigint, st: FileStat): LlAttr {
    return {
      ino: id,
      mode: st.mode,
      nlink: st.nlink ?? ((st.mode & S_IFMT) === 0o040000 ? 2 : 1),
      uid: st.uid ?? 0,
      gid: st.gid ?? 0,
      size: st.size,
      rdev: st.rdev ?? 0,
      ...(st.blocks !== undefined ? { blocks: st.blocks } : {}),
      atimeMs: st.atime,
      mtimeMs: st.mtime,
      ctimeMs: st.ctime,
    };
  }

  private entry(n: Node, st: FileStat): LlEntry {
    return { ino: n.id, generation: 1n, attr: this.attr(n.id, st), attrTimeout: this.o.attrTimeoutS ?? 1, entryTimeout: this.o.entryTimeoutS ?? 1 };
  }

  /** Looks up the name the handler just made and answers with its entry. */
  private async made(s: LlSession, id: number, parent: bigint, name: string): Promise<void> {
    const st = await this.h.getattr(this.child(parent, name));
    s.replyEntry(id, this.entry(this.remember(parent, name), st));
  }

  private fail(s: LlSession, id: number, err: unknown, where: string): void {
    s.replyErr(id, -toErrno(err, where, this.log));
  }

  // ---- requests --------------------------------------------------------------------------

  private ops(): Partial<LlOps> {
    const h = this.h;
    const need = <K extends keyof PathHandlers>(k: K): NonNullable<PathHandlers[K]> => {
      const f = h[k];
      if (!f) throw Object.assign(new Error(`${k} is not implemented`), { code: 'ENOSYS' });
      return (f as (...a: unknown[]) => unknown).bind(h) as NonNullable<PathHandlers[K]>;
    };
    // Every op: run, and turn a throw into the errno (ENOENT for a name lookup is not logged).
    const guard = <R extends { id: number; op: string }>(fn: (r: R, s: LlSession) => Promise<void>) =>
      async (r: R, s: LlSession): Promise<void> => {
        try {
          await fn(r, s);
        } catch (err) {
          this.fail(s, r.id, err, r.op);
        }
      };
    return {
      lookup: guard(async (r, s) => {
        const p = this.child(r.parent, r.name);
        let st: FileStat;
        try {
          st = await h.getattr(p);
        } catch (err) {
          const errno = -toErrno(err, `lookup ${p}`, this.log);
          const neg = this.o.negativeTimeoutS ?? 0;
          if (errno === E.ENOENT && neg > 0) {
            s.replyEntry(r.id, { ino: 0n, generation: 0n, attr: this.attr(0n, { mode: 0, size: 0, atime: 0, mtime: 0, ctime: 0 }), attrTimeout: 0, entryTimeout: neg });
          } else s.replyErr(r.id, errno);
          return;
        }
        s.replyEntry(r.id, this.entry(this.remember(r.parent, r.name), st));
      }),
      forget: async (r) => {
        for (const it of r.items) this.forget(it.ino, it.nlookup);
      },
      getattr: guard(async (r, s) => {
        const p = this.path(r.ino);
        // fstat sends no handle; an unlinked file answers through one of its open handles.
        const n = this.nodes.get(r.ino);
        const fh = r.fh ?? (n?.gone !== undefined ? n.fhs.values().next().value : undefined);
        const st = fh !== undefined && h.fgetattr ? await h.fgetattr(p, fh) : await h.getattr(p);
        s.replyAttr(r.id, this.attr(r.ino, st), this.o.attrTimeoutS ?? 1);
      }),
      setattr: guard(async (r, s) => {
        const p = this.path(r.ino);
        const set = r.set;
        if (set.mode !== undefined) await need('chmod')(p, set.mode);
        if (set.uid !== undefined || set.gid !== undefined) await need('chown')(p, set.uid ?? -1, set.gid ?? -1);
        if (set.size !== undefined) {
          if (r.fh !== undefined && h.ftruncate) await h.ftruncate(p, r.fh, set.size);
          else await need('truncate')(p, set.size);
        }
        if (set.atimeMs !== undefined || set.mtimeMs !== undefined) {
          const now = Date.now();
          const t = (v: number | 'now' | undefined) => (v === undefined ? null : v === 'now' ? now : v);
          await need('utimens')(p, t(set.atimeMs), t(set.mtimeMs));
        }
        const st = r.fh !== undefined && h.fgetattr ? await h.fgetattr(p, r.fh) : await h.getattr(p);
        s.replyAttr(r.id, this.attr(r.ino, st), this.o.attrTimeoutS ?? 1);
      }),
      readlink: guard(async (r, s) => {
        s.replyReadlink(r.id, await need('readlink')(this.path(r.ino)));
      }),
      mkdir: guard(async (r, s) => {
        await need('mkdir')(this.child(r.parent, r.name), r.mode & ~r.umask);
        await this.made(s, r.id, r.parent, r.name);
      }),
      symlink: guard(async (r, s) => {
        await need('symlink')(r.target, this.child(r.parent, r.name));
        await this.made(s, r.id, r.parent, r.name);
      }),
      link: guard(async (r, s) => {
        await need('link')(this.path(r.ino), this.child(r.newparent, r.newname));
        await this.made(s, r.id, r.newparent, r.newname);
      }),
      unlink: guard(async (r, s) => {
        await need('unlink')(this.child(r.parent, r.name));
        this.detach(r.parent, r.name);
        s.replyErr(r.id, 0);
      }),
      rmdir: guard(async (r, s) => {
        await need('rmdir')(this.child(r.parent, r.name));
        this.detach(r.parent, r.name);
        s.replyErr(r.id, 0);
      }),
      rename: guard(async (r, s) => {
        if (r.flags !== 0) return void s.replyErr(r.id, E.EINVAL);
        const from = this.child(r.parent, r.name);
        const to = this.child(r.newparent, r.newname);
        await need('rename')(from, to);
        if (from === to) return void s.replyErr(r.id, 0);
        this.detach(r.newparent, r.newname);
        const k = this.key(r.parent, r.name);
        const id = this.byName.get(k);
        if (id !== undefined) {
          this.byName.delete(k);
          this.byName.set(this.key(r.newparent, r.newname), id);
          const n = this.nodes.get(id)!;
          n.parent = r.newparent;
          n.name = r.newname;
        }
        s.replyErr(r.id, 0);
      }),
      create: guard(async (r, s) => {
        const p = this.child(r.parent, r.name);
        const fh = await need('create')(p, r.mode & ~r.umask);
        const st = h.fgetattr ? await h.fgetattr(p, fh) : await h.getattr(p);
        const n = this.remember(r.parent, r.name);
        n.fhs.add(fh);
        s.replyCreate(r.id, this.entry(n, st), fh, { keepCache: this.o.keepCache ?? false });
      }),
      open: guard(async (r, s) => {
        const fh = h.open ? await h.open(this.path(r.ino), r.flags) : 0;
        this.nodes.get(r.ino)?.fhs.add(fh);
        s.replyOpen(r.id, fh, { keepCache: this.o.keepCache ?? false });
      }),
      read: guard(async (r, s) => {
        const buf = Buffer.allocUnsafe(r.size);
        const n = await need('read')(this.path(r.ino), r.fh, buf, r.size, r.offset);
        s.replyData(r.id, buf.subarray(0, n));
      }),
      write: guard(async (r, s) => {
        s.replyWrite(r.id, await need('write')(this.path(r.ino), r.fh, r.data, r.data.length, r.offset));
      }),
      flush: guard(async (r, s) => {
        // close(2) drops the caller's POSIX locks on the file.
        this.locks.dropOwner(r.ino, r.lockOwner);
        if (h.flush) await h.flush(this.path(r.ino), r.fh);
        s.replyErr(r.id, 0);
      }),
      release: guard(async (r, s) => {
        this.nodes.get(r.ino)?.fhs.delete(r.fh);
        this.locks.dropHandle(r.ino, r.fh);
        if (h.release) await h.release(this.path(r.ino), r.fh);
        s.replyErr(r.id, 0);
      }),
      fsync: guard(async (r, s) => {
        if (h.fsync) await h.fsync(this.path(r.ino), r.fh, r.datasync);
        s.replyErr(r.id, 0);
      }),
      opendir: guard(async (r, s) => {
        const p = this.path(r.ino);
        const names = (await h.readdir(p)).map((e) => (typeof e === 'string' ? e : e.name));
        const list: LlDirent[] = ['.', '..', ...names].map((name, i) => ({
          name,
          ino: name === '.' ? r.ino : (this.byName.get(this.key(r.ino, name)) ?? UNKNOWN_INO),
          mode: 0,
          nextOffset: i + 1,
        }));
        const fh = this.nextDirFh++;
        this.dirs.set(fh, list);
        s.replyOpen(r.id, fh);
      }),
      readdir: guard(async (r, s) => {
        const list = this.dirs.get(r.fh);
        if (!list) return void s.replyErr(r.id, E.EBADF);
        s.replyDir(r.id, list.slice(r.offset));
      }),
      releasedir: async (r, s) => {
        this.dirs.delete(r.fh);
        s.replyErr(r.id, 0);
      },
      fsyncdir: guard(async (r, s) => {
        if (h.fsyncdir) await h.fsyncdir(this.path(r.ino), r.fh, r.datasync);
        s.replyErr(r.id, 0);
      }),
      statfs: guard(async (r, s) => {
        const st = h.statfs ? await h.statfs(this.path(r.ino)) : { totalBytes: 0, freeBytes: 0 };
        const bs = 4096;
        s.replyStatfs(r.id, {
          bsize: bs,
          frsize: bs,
          blocks: Math.floor(st.totalBytes / bs),
          bfree: Math.floor(st.freeBytes / bs),
          bavail: Math.floor((st.availableBytes ?? st.freeBytes) / bs),
          files: st.totalInodes ?? 0,
          ffree: st.freeInodes ?? 0,
          namemax: st.nameMax ?? 255,
        });
      }),
      getlk: (r, s) => {
        s.replyLock(r.id, this.locks.test(r.ino, r.lockOwner, r.lock));
      },
      setlk: guard(async (r, s) => {
        this.locks.used(r.fh, r.lockOwner);
        const ok = await this.locks.set(r.ino, r.lockOwner, r.lock, r.sleep, (cancel) => s.onInterrupt(r.id, cancel));
        s.replyErr(r.id, ok ? 0 : E.EAGAIN);
      }),
      flock: guard(async (r, s) => {
        const ok = await this.locks.flock(r.ino, r.fh, r.operation, (cancel) => s.onInterrupt(r.id, cancel));
        s.replyErr(r.id, ok ? 0 : E.EAGAIN); // EWOULDBLOCK
      }),
      access: guard(async (r, s) => {
        if (h.access) await h.access(this.path(r.ino), r.mask);
        s.replyErr(r.id, 0);
      }),
    };
  }
}
