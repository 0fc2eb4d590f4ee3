// An in-memory path-addressed file system (PathHandlers, mounted on the libfuse3 binding by
// helpers/path-mount.ts), used only to test the binding's edges in test/fuse-binding.test.ts
// (and as the do-nothing-much server of the stale-mount test). Not a model for the namespace:
// no persistence, no locking, whole-file buffers. It records what it was handed so tests can
// check arguments the kernel never shows (fgetattr handles, write sizes).
import { vmError } from '../../src/errors.js';
import type { FileHandle, FileStat, FsStats, PathHandlers } from './path-mount.js';

interface Node {
  mode: number;
  data: Buffer;
  size: number;
  target?: string;
  atime: number;
  mtime: number;
  ctime: number;
  nlink: number;
}

export interface MemfsCall {
  op: string;
  path: string;
  fh?: number;
  atime?: number | null;
  mtime?: number | null;
}

export interface MemfsOptions {
  /** Mutations under this prefix fail with READ_ONLY, as a snapshot would. */
  readOnlyPrefix?: string;
  /** What statfs reports. */
  stats?: FsStats;
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

export class Memfs implements PathHandlers {
  readonly nodes = new Map<string, Node>();
  readonly handles = new Map<number, Node>();
  readonly calls: MemfsCall[] = [];
  readonly writeSizes: number[] = [];
  /** Per-path replacements of a handler's behaviour, for error-mapping tests. */
  readonly failures = new Map<string, () => Promise<never>>();
  private nextFh = 1;

  constructor(private readonly opts: MemfsOptions = {}) {
    const now = Date.now();
    this.nodes.set('/', { mode: S_IFDIR | 0o755, data: Buffer.alloc(0), size: 0, atime: now, mtime: now, ctime: now, nlink: 2 });
    if (opts.readOnlyPrefix) this.nodes.set(opts.readOnlyPrefix, { mode: S_IFDIR | 0o555, data: Buffer.alloc(0), size: 0, atime: now, mtime: now, ctime: now, nlink: 2 });
  }

  private node(path: string): Node {
    const n = this.nodes.get(path);
    if (!n) throw vmError('NOT_FOUND', `${path} does not exist`);
    return n;
  }

  private parentOf(path: string): Node {
    const parent = path.slice(0, path.lastIndexOf('/')) || '/';
    const p = this.node(parent);
    if ((p.mode & S_IFMT) !== S_IFDIR) throw vmError('NOT_DIRECTORY', `${parent} is not a directory`);
    return p;
  }

  private writable(path: string): void {
    const ro = this.opts.readOnlyPrefix;
    if (ro && (path === ro || path.startsWith(ro + '/'))) throw vmError('READ_ONLY', `${path} is in a read-only snapshot`);
  }

  private fail(path: string): Promise<never> | undefined {
    return this.failures.get(path)?.();
  }

  private add(path: string, mode: number, target?: string): Node {
    this.writable(path);
    this.parentOf(path);
    if (this.nodes.has(path)) throw vmError('ALREADY_EXISTS', `${path} exists`);
    const now = Date.now();
    const n: Node = { mode, data: Buffer.alloc(0), size: 0, atime: now, mtime: now, ctime: now, nlink: (mode & S_IFMT) === S_IFDIR ? 2 : 1 };
    if (target !== undefined) n.target = target;
    this.nodes.set(path, n);
    return n;
  }

  private statOf(n: Node): FileStat {
    return { mode: n.mode, size: n.target?.length ?? n.size, nlink: n.nlink, atime: n.atime, mtime: n.mtime, ctime: n.ctime };
  }

  private handle(fh: FileHandle): Node {
    const n = this.handles.get(fh);
    if (!n) throw Object.assign(new Error(`bad handle ${fh}`), { code: 'EBADF' });
    return n;
  }

  private resize(n: Node, size: number): void {
    if (size > n.data.length) {
      const bigger = Buffer.alloc(Math.max(size, n.data.length * 2));
      n.data.copy(bigger, 0, 0, n.size);
      n.data = bigger;
    } else if (size < n.size) {
      n.data.fill(0, size, n.size);
    }
    n.size = size;
    n.mtime = n.ctime = Date.now();
  }

  async getattr(path: string): Promise<FileStat> {
    this.calls.push({ op: 'getattr', path });
    await this.fail(path);
    return this.statOf(this.node(path));
  }

  async fgetattr(path: string, fh: FileHandle): Promise<FileStat> {
    this.calls.push({ op: 'fgetattr', path, fh });
    return this.statOf(this.handle(fh));
  }

  async readdir(path: string): Promise<string[]> {
    this.node(path);
    const prefix = path === '/' ? '/' : path + '/';
    const names: string[] = [];
    for (const p of this.nodes.keys()) {
      if (p !== '/' && p.startsWith(prefix) && !p.slice(prefix.length).includes('/')) names.push(p.slice(prefix.length));
    }
    return names;
  }

  async statfs(): Promise<FsStats> {
    return this.opts.stats ?? { totalBytes: 2 ** 40, freeBytes: 2 ** 39 };
  }

  async create(path: string, mode: number): Promise<FileHandle> {
    this.calls.push({ op: 'create', path });
    const n = this.add(path, S_IFREG | (mode & 0o7777));
    const fh = this.nextFh++;
    this.handles.set(fh, n);
    this.calls.push({ op: 'create-fh', path, fh });
    return fh;
  }

  async open(path: string): Promise<FileHandle> {
    const fh = this.nextFh++;
    this.handles.set(fh, this.node(path));
    return fh;
  }

  async read(_path: string, fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<number> {
    const n = this.handle(fh);
    if (pos >= n.size) return 0;
    return n.data.copy(buf, 0, pos, Math.min(n.size, pos + len));
  }

  async write(path: string, fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<number> {
    this.writeSizes.push(len);
    this.writable(path);
    const n = this.handle(fh);
    if (pos + len > n.size) this.resize(n, pos + len);
    buf.copy(n.data, pos, 0, len);
    n.mtime = n.ctime = Date.now();
    return len;
  }

  async release(_path: string, fh: FileHandle): Promise<void> {
    this.handles.delete(fh);
  }

  async truncate(path: string, size: number): Promise<void> {
    this.writable(path);
    this.resize(this.node(path), size);
  }

  async ftruncate(path: string, fh: FileHandle, size: number): Promise<void> {
    this.calls.push({ op: 'ftruncate', path, fh });
    this.resize(this.handle(fh), size);
  }

  async unlink(path: string): Promise<void> {
    this.calls.push({ op: 'unlink', path });
    this.writable(path);
    const n = this.node(path);
    if ((n.mode & S_IFMT) === S_IFDIR) throw vmError('IS_DIRECTORY', `${path} is a directory`);
    n.nlink--;
    this.nodes.delete(path);
  }

  async rename(from: string, to: string): Promise<void> {
    this.writable(from);
    this.writable(to);
    const n = this.node(from);
    this.parentOf(to);
    for (const [p, child] of [...this.nodes]) {
      if (p === from || p.startsWith(from + '/')) {
        this.nodes.delete(p);
        this.nodes.set(to + p.slice(from.length), child);
      }
    }
    n.ctime = Date.now();
  }

  async mkdir(path: string, mode: number): Promise<void> {
    await this.fail(path);
    this.add(path, S_IFDIR | (mode & 0o7777));
  }

  async rmdir(path: string): Promise<void> {
    this.writable(path);
    const n = this.node(path);
    if ((n.mode & S_IFMT) !== S_IFDIR) throw vmError('NOT_DIRECTORY', `${path} is not a directory`);
    if ((await this.readdir(path)).length > 0) throw vmError('NOT_EMPTY', `${path} is not empty`);
    this.nodes.delete(path);
  }

  async symlink(target: string, path: string): Promise<void> {
    this.add(path, S_IFLNK | 0o777, target);
  }

  async readlink(path: string): Promise<string> {
    const n = this.node(path);
    if (n.target === undefined) throw vmError('INVALID_ARGUMENT', `${path} is not a symlink`);
    return n.target;
  }

  async link(existing: string, path: string): Promise<void> {
    this.writable(path);
    const n = this.node(existing);
    this.parentOf(path);
    if (this.nodes.has(path)) throw vmError('ALREADY_EXISTS', `${path} exists`);
    n.nlink++;
    this.nodes.set(path, n);
  }

  async chmod(path: string, mode: number): Promise<void> {
    this.writable(path);
    const n = this.node(path);
    n.mode = (n.mode & S_IFMT) | (mode & 0o7777);
    n.ctime = Date.now();
  }

  async chown(path: string): Promise<void> {
    this.writable(path);
    this.node(path);
  }

  async utimens(path: string, atime: number | null, mtime: number | null): Promise<void> {
    this.calls.push({ op: 'utimens', path, atime, mtime });
    this.writable(path);
    const n = this.node(path);
    if (atime !== null) n.atime = atime;
    if (mtime !== null) n.mtime = mtime;
    n.ctime = Date.now();
  }
}
