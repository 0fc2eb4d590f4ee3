// A small in-memory file system on the libfuse3 low-level binding (src/fuse/ll/): what drives
// the binding in test/fuse-ll.test.ts, through the real kernel. It is not a model of the
// namespace: inode numbers count up from 2, data lives in Buffers, and it records what the tests
// look at (callers' uid/gid, write sizes, batch sizes). `mountLlMemfs` mounts it in a temporary
// directory and unmounts (then removes the directory) when the test ends, pass or fail.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dispatchOps, LlSession, type LlAttr, type LlEntry, type LlMountOptions, type LlOps } from '../../src/fuse/ll/session.js';
import * as E from '../../src/fuse/ll/errno.js';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFMT = 0o170000;

interface Node {
  attr: LlAttr;
  generation: bigint;
  data: Buffer; // files: capacity >= attr.size
  children?: Map<string, bigint>;
  parent: bigint;
  target?: string;
  lookups: number;
}

export interface LlMemfsOptions {
  /** Handlers for these ops are left out (the binding answers ENOSYS). */
  without?: Array<keyof LlOps>;
  /** A lookup of this name throws inside the handler (the test expects EIO). */
  throwOnName?: string;
  /** Reads and writes are held this many ms before answering (to get many in flight). */
  delayMs?: number;
}

export class LlMemfs {
  readonly nodes = new Map<bigint, Node>();
  private nextIno = 2n;
  private nextFh = 1;
  readonly callers: Array<{ op: string; uid: number; gid: number; pid: number }> = [];
  readonly writeSizes: number[] = [];
  /** The size of every read request, as the kernel asked. */
  readonly readSizes: number[] = [];
  readonly ops: Partial<LlOps>;

  constructor(private readonly opts: LlMemfsOptions = {}) {
    const now = Date.now();
    this.nodes.set(1n, {
      attr: { ino: 1n, mode: S_IFDIR | 0o777, nlink: 2, uid: 0, gid: 0, size: 0, atimeMs: now, mtimeMs: now, ctimeMs: now },
      generation: 1n,
      data: Buffer.alloc(0),
      children: new Map(),
      parent: 1n,
      lookups: 0,
    });
    this.ops = this.makeOps();
    for (const op of opts.without ?? []) delete this.ops[op];
  }

  private entry(ino: bigint): LlEntry {
    const n = this.nodes.get(ino)!;
    n.lookups++;
    return { ino, generation: n.generation, attr: n.attr, attrTimeout: 1, entryTimeout: 1 };
  }

  private node(ino: bigint): Node | undefined {
    return this.nodes.get(ino);
  }

  private add(parent: bigint, name: string, mode: number, uid: number, gid: number, target?: string): bigint {
    const now = Date.now();
    const ino = this.nextIno++;
    const isDir = (mode & S_IFMT) === S_IFDIR;
    this.nodes.set(ino, {
      attr: { ino, mode, nlink: isDir ? 2 : 1, uid, gid, size: target ? Buffer.byteLength(target) : 0, atimeMs: now, mtimeMs: now, ctimeMs: now },
      generation: 1n,
      data: Buffer.alloc(0),
      ...(isDir ? { children: new Map<string, bigint>() } : {}),
      parent,
      ...(target !== undefined ? { target } : {}),
      lookups: 0,
    });
    const p = this.nodes.get(parent)!;
    p.children!.set(name, ino);
    if (isDir) p.attr.nlink++;
    p.attr.mtimeMs = p.attr.ctimeMs = now;
    return ino;
  }

  private resize(n: Node, size: number): void {
    if (size > n.data.length) {
      const bigger = Buffer.alloc(Math.max(size, n.data.length * 2));
      n.data.copy(bigger, 0, 0, n.attr.size);
      n.data = bigger;
    } else if (size < n.attr.size) {
      n.data.fill(0, size, n.attr.size);
    }
    n.attr.size = size;
    n.attr.blocks = Math.ceil(size / 512);
  }

  private later(fn: () => void): void {
    if (this.opts.delayMs) setTimeout(fn, this.opts.delayMs);
    else fn();
  }

  private makeOps(): Partial<LlOps> {
    const note = (r: { op: string; uid: number; gid: number; pid: number }) => this.callers.push({ op: r.op, uid: r.uid, gid: r.gid, pid: r.pid });
    const ENOENT = E.ENOENT;
    return {
      lookup: (r, s) => {
        if (r.name === this.opts.throwOnName) throw new Error(`lookup of ${r.name} throws, as the test asked`);
        const p = this.node(r.parent);
        if (!p?.children) return void s.replyErr(r.id, p ? E.ENOTDIR : ENOENT);
        const ino = r.name === '.' ? r.parent : r.name === '..' ? p.parent : p.children.get(r.name);
        if (ino === undefined) return void s.replyErr(r.id, ENOENT);
        s.replyEntry(r.id, this.entry(ino));
      },
      forget: (r) => {
        for (const it of r.items) {
          const n = this.node(it.ino);
          if (n) n.lookups -= it.nlookup;
        }
      },
      getattr: (r, s) => {
        note(r);
        const n = this.node(r.ino);
        if (!n) return void s.replyErr(r.id, ENOENT);
        s.replyAttr(r.id, n.attr, 1);
      },
      setattr: (r, s) => {
        const n = this.node(r.ino);
        if (!n) return void s.replyErr(r.id, ENOENT);
        const now = Date.now();
        if (r.set.mode !== undefined) n.attr.mode = (n.attr.mode & S_IFMT) | (r.set.mode & 0o7777);
        if (r.set.uid !== undefined) n.attr.uid = r.set.uid;
        if (r.set.gid !== undefined) n.attr.gid = r.set.gid;
        if (r.set.size !== undefined) this.resize(n, r.set.size);
        if (r.set.atimeMs !== undefined) n.attr.atimeMs = r.set.atimeMs === 'now' ? now : r.set.atimeMs;
        if (r.set.mtimeMs !== undefined) n.attr.mtimeMs = r.set.mtimeMs === 'now' ? now : r.set.mtimeMs;
        n.attr.ctimeMs = now;
        s.replyAttr(r.id, n.attr, 1);
      },
      readlink: (r, s) => {
        const n = this.node(r.ino);
        if (n?.target === undefined) return void s.replyErr(r.id, E.EINVAL);
        s.replyReadlink(r.id, n.target);
      },
      mknod: (r, s) => {
        note(r);
        const p = this.node(r.parent);
        if (!p?.children) return void s.replyErr(r.id, ENOENT);
        if (p.children.has(r.name)) return void s.replyErr(r.id, E.EEXIST);
        s.replyEntry(r.id, this.entry(this.add(r.parent, r.name, r.mode & ~r.umask, r.uid, r.gid)));
      },
      mkdir: (r, s) => {
        note(r);
        const p = this.node(r.parent);
        if (!p?.children) return void s.replyErr(r.id, ENOENT);
        if (p.children.has(r.name)) return void s.replyErr(r.id, E.EEXIST);
        s.replyEntry(r.id, this.entry(this.add(r.parent, r.name, S_IFDIR | (r.mode & ~r.umask & 0o7777), r.uid, r.gid)));
      },
      symlink: (r, s) => {
        const p = this.node(r.parent);
        if (!p?.children) return void s.replyErr(r.id, ENOENT);
        if (p.children.has(r.name)) return void s.replyErr(r.id, E.EEXIST);
        s.replyEntry(r.id, this.entry(this.add(r.parent, r.name, S_IFLNK | 0o777, r.uid, r.gid, r.target)));
      },
      unlink: (r, s) => {
        const p = this.node(r.parent);
        const ino = p?.children?.get(r.name);
        if (ino === undefined) return void s.replyErr(r.id, ENOENT);
        const n = this.node(ino)!;
        if (n.children) return void s.replyErr(r.id, E.EISDIR);
        p!.children!.delete(r.name);
        n.attr.nlink--;
        n.attr.ctimeMs = Date.now();
        s.replyErr(r.id, 0);
      },
      rmdir: (r, s) => {
        const p = this.node(r.parent);
        const ino = p?.children?.get(r.name);
        if (ino === undefined) return void s.replyErr(r.id, ENOENT);
        const n = this.node(ino)!;
        if (!n.children) return void s.replyErr(r.id, E.ENOTDIR);
        if (n.children.size) return void s.replyErr(r.id, E.ENOTEMPTY);
        p!.children!.delete(r.name);
        p!.attr.nlink--;
        n.attr.nlink = 0;
        s.replyErr(r.id, 0);
      },
      rename: (r, s) => {
        const p = this.node(r.parent);
        const np = this.node(r.newparent);
        const ino = p?.children?.get(r.name);
        if (ino === undefined || !np?.children) return void s.replyErr(r.id, ENOENT);
        if (r.flags !== 0) return void s.replyErr(r.id, E.EINVAL);
        const old = np.children.get(r.newname);
        if (old !== undefined) {
          const o = this.node(old)!;
          if (o.children?.size) return void s.replyErr(r.id, E.ENOTEMPTY);
          o.attr.nlink = o.children ? 0 : o.attr.nlink - 1;
        }
        p!.children!.delete(r.name);
        np.children.set(r.newname, ino);
        const n = this.node(ino)!;
        if (n.children && r.parent !== r.newparent) {
          p!.attr.nlink--;
          np.attr.nlink++;
        }
        n.parent = r.newparent;
        s.replyErr(r.id, 0);
      },
      link: (r, s) => {
        const n = this.node(r.ino);
        const np = this.node(r.newparent);
        if (!n || !np?.children) return void s.replyErr(r.id, ENOENT);
        np.children.set(r.newname, r.ino);
        n.attr.nlink++;
        s.replyEntry(r.id, this.entry(r.ino));
      },
      open: (r, s) => {
        if (!this.node(r.ino)) return void s.replyErr(r.id, ENOENT);
        s.replyOpen(r.id, this.nextFh++);
      },
      create: (r, s) => {
        note(r);
        const p = this.node(r.parent);
        if (!p?.children) return void s.replyErr(r.id, ENOENT);
        const existing = p.children.get(r.name);
        if (existing !== undefined) {
          if (r.flags & fs.constants.O_EXCL) return void s.replyErr(r.id, E.EEXIST);
          return void s.replyCreate(r.id, this.entry(existing), this.nextFh++);
        }
        s.replyCreate(r.id, this.entry(this.add(r.parent, r.name, S_IFREG | (r.mode & ~r.umask & 0o7777), r.uid, r.gid)), this.nextFh++);
      },
      read: (r, s) => {
        this.readSizes.push(r.size);
        this.later(() => {
          const n = this.node(r.ino);
          if (!n) return void s.replyErr(r.id, ENOENT);
          const end = Math.min(n.attr.size, r.offset + r.size);
          s.replyData(r.id, r.offset >= end ? Buffer.alloc(0) : n.data.subarray(r.offset, end));
        });
      },
      write: (r, s) => {
        note(r);
        this.writeSizes.push(r.data.length);
        this.later(() => {
          const n = this.node(r.ino);
          if (!n) return void s.replyErr(r.id, ENOENT);
          const end = r.offset + r.data.length;
          if (end > n.attr.size) this.resize(n, end);
          r.data.copy(n.data, r.offset);
          n.attr.mtimeMs = n.attr.ctimeMs = Date.now();
          s.replyWrite(r.id, r.data.length);
        });
      },
      // A close: libfuse's contract is that flush drops the POSIX locks of lockOwner.
      flush: (r, s) => {
        const held = this.locks.get(r.ino);
        if (held) this.locks.set(r.ino, held.filter((l) => l.owner !== r.lockOwner));
        s.replyErr(r.id, 0);
      },
      release: (r, s) => void s.replyErr(r.id, 0),
      fsync: (r, s) => void s.replyErr(r.id, 0),
      opendir: (r, s) => {
        const n = this.node(r.ino);
        if (!n) return void s.replyErr(r.id, ENOENT);
        if (!n.children) return void s.replyErr(r.id, E.ENOTDIR);
        s.replyOpen(r.id, this.nextFh++);
      },
      readdir: (r, s) => {
        const n = this.node(r.ino);
        if (!n?.children) return void s.replyErr(r.id, ENOENT);
        const all: Array<[string, bigint]> = [['.', r.ino], ['..', n.parent], ...n.children];
        const page = all.slice(r.offset).map(([name, ino], i) => {
          const c = this.node(ino)!;
          const plain = { name, ino, mode: c.attr.mode, nextOffset: r.offset + i + 1 };
          if (!r.plus || name === '.' || name === '..') return plain;
          return { ...plain, entry: { ino, generation: c.generation, attr: c.attr, attrTimeout: 1, entryTimeout: 1 } };
        });
        const taken = s.replyDir(r.id, page);
        // Only taken plus entries count as lookups.
        if (r.plus) for (const d of page.slice(0, Math.max(0, taken))) if ('entry' in d) this.node(d.ino)!.lookups++;
      },
      releasedir: (r, s) => void s.replyErr(r.id, 0),
      fsyncdir: (r, s) => void s.replyErr(r.id, 0),
      statfs: (r, s) => void s.replyStatfs(r.id, { bsize: 4096, frsize: 4096, blocks: 2 ** 40, bfree: 2 ** 39, bavail: 2 ** 39, files: 1e6, ffree: 1e6 - this.nodes.size }),
      fallocate: (r, s) => {
        const n = this.node(r.ino);
        if (!n) return void s.replyErr(r.id, ENOENT);
        if (r.mode & ~1) return void s.replyErr(r.id, E.EOPNOTSUPP);
        if (!(r.mode & 1) && r.offset + r.length > n.attr.size) this.resize(n, r.offset + r.length);
        s.replyErr(r.id, 0);
      },
      lseek: (r, s) => {
        const n = this.node(r.ino);
        if (!n) return void s.replyErr(r.id, ENOENT);
        // Everything is data: SEEK_DATA stays, SEEK_HOLE goes to the end.
        if (r.offset >= n.attr.size) return void s.replyErr(r.id, E.ENXIO);
        s.replyLseek(r.id, r.whence === 4 ? n.attr.size : r.offset);
      },
      // POSIX locks (what QEMU takes on its images): F_RDLCK 0, F_WRLCK 1, F_UNLCK 2.
      getlk: (r, s) => {
        const c = this.conflict(r.ino, r.lockOwner, r.lock);
        s.replyLock(r.id, c ? { type: c.type, start: c.start, end: c.end, pid: c.pid } : { ...r.lock, type: 2 });
      },
      setlk: (r, s) => {
        const held = this.locks.get(r.ino) ?? [];
        if (r.lock.type === 2) {
          this.locks.set(r.ino, held.filter((l) => l.owner !== r.lockOwner || l.end < r.lock.start || l.start > r.lock.end));
          return void s.replyErr(r.id, 0);
        }
        if (this.conflict(r.ino, r.lockOwner, r.lock)) return void s.replyErr(r.id, E.EAGAIN);
        held.push({ owner: r.lockOwner, ...r.lock });
        this.locks.set(r.ino, held);
        s.replyErr(r.id, 0);
      },
      copy_file_range: (r, s) => {
        const a = this.node(r.ino);
        const b = this.node(r.inoOut);
        if (!a || !b) return void s.replyErr(r.id, ENOENT);
        const n = Math.max(0, Math.min(r.length, a.attr.size - r.offset));
        if (r.offsetOut + n > b.attr.size) this.resize(b, r.offsetOut + n);
        a.data.copy(b.data, r.offsetOut, r.offset, r.offset + n);
        s.replyWrite(r.id, n);
      },
    };
  }

  readonly locks = new Map<bigint, Array<{ owner: bigint; type: number; start: number; end: number; pid: number }>>();

  private conflict(ino: bigint, owner: bigint, l: { type: number; start: number; end: number }) {
    return (this.locks.get(ino) ?? []).find((h) => h.owner !== owner && h.start <= l.end && l.start <= h.end && (h.type === 1 || l.type === 1));
  }

  /** The bytes of a file by path from the root (for assertions). */
  contents(rel: string): Buffer | undefined {
    let ino = 1n;
    for (const part of rel.split('/').filter(Boolean)) {
      const next = this.node(ino)?.children?.get(part);
      if (next === undefined) return undefined;
      ino = next;
    }
    const n = this.node(ino)!;
    return Buffer.from(n.data.subarray(0, n.attr.size));
  }
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Mounts fs in a fresh temporary directory; unmounted and removed when the test ends. */
export async function mountLlMemfs(t: Teardown, fs0: LlMemfs, opts: LlMountOptions = {}): Promise<{ dir: string; session: LlSession }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-ll-'));
  // Other users reach the mount point too (the uid tests).
  fs.chmodSync(dir, 0o755);
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  let session: LlSession | undefined;
  t.teardown(async () => {
    if (session) await session.unmount();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  session = await LlSession.mount(mnt, { fsname: 'vmvault-test', maxThreads: 4, ...opts }, dispatchOps(fs0.ops, { log: () => {} }));
  return { dir: mnt, session };
}
