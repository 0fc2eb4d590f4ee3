// The vmvault file system on libfuse3's low-level API (src/fuse/ll/, issue 16): each kernel
// request names a node id (namespace/node-id.ts), and this adapter maps it onto the namespace's
// node operations (namespace/node-ops.ts) and open files. A thin edge: every rule lives in
// namespace/, every errno comes from errno.ts, every lock from ll-locks.ts.
//
// - Node ids are the namespace's own (volume, inode), stable across restarts, one per inode, so
//   hard links are one node and NFS file handles (name_to_handle_at) keep working after the
//   kernel drops its caches or the appliance restarts: lookup of "." and ".." by node id is
//   answered from LevelDB. Lookup counts are kept per node and forget honoured; as node ids
//   are durable, the count frees nothing but its own entry.
// - The caller's uid/gid own what it makes; permission checks are the kernel's
//   (default_permissions) against the modes and owners we report.
// - fallocate: KEEP_SIZE preallocates nothing (a dedup store has no blocks to reserve);
//   PUNCH_HOLE and ZERO_RANGE write zeros, which the store keeps as zero segments (no space).
// - SEEK_DATA/SEEK_HOLE: from the file's segment tree; the zero runs the store keeps (never
//   stored) are the holes.
// - copy_file_range: a whole file into an empty one is a fastcopy (the target takes the
//   source's content by reference: instant, no new space); any other range is copied.
// - Locks: POSIX, OFD and flock, kept in memory by ll-locks.ts; release drops those taken
//   through the handle (the kernel sends no unlock when an OFD lock's file closes).
// - "No such name" is cached by the kernel too (a negative entry, NEG_TIMEOUT_S) in stored
//   directories: rsync asks 2-3 times per file for names that do not exist yet. The kernel
//   replaces such an entry itself when its own request makes the name (create, mkdir, rename,
//   ...); when anything else makes it (the control plane: restores, fastcopies, clones), the
//   namespace tells us (Meta.watchTxns) and the entry is invalidated through the session's
//   notification thread (native/src/fuse3/notify.c), never from this thread. Names under the
//   top of the mount and `.snapshots` (shares, snapshots) and `*.files` (the catalog's views)
//   are never cached negative: they change without a stored directory entry.
// - Audited: what changes the appliance rather than a file (a share made or removed by mkdir
//   or rmdir at the top of the mount, a whole-file fastcopy by copy_file_range) goes to
//   `audit` with the caller's uid, gid and pid (the control plane's audit log).

import type { TxnWatcher } from '../namespace/meta.js';
import type { Namespace } from '../namespace/namespace.js';
import type { NodeAttr, NodeEntry } from '../namespace/node-ops.js';
import { MOUNT_ROOT_NODE, nodeOf, parseNode } from '../namespace/node-id.js';
import { NodeType } from '../namespace/records.js';
import { toErrno } from './errno.js';
import { AttrTable } from './ll-attrs.js';
import { LockTable } from './ll-locks.js';
import { NameTable } from './ll-names.js';
import { DataWindows } from './ll-datawin.js';
import { HoleTable } from './ll-holes.js';
import { withVirtualTree, type VirtualTree } from './ll-virtual.js';
import { dispatchOps, type LlOps, type OnBatch, type LlSession } from './ll/session.js';
import type { LlAttr, LlDirent, LlEntry, LlRequest } from './ll/types.js';
import { constants } from 'node:os';

const E = constants.errno;
const MiB = 1024 * 1024;
/** Seconds the kernel may keep names and attributes. Shares, snapshots and fastcopies change through the control plane too. */
const TIMEOUT_S = 1;
/**
 * Seconds the kernel may keep "no such name" in a stored directory. Longer than TIMEOUT_S: every
 * name made by anything but the kernel's own request invalidates it. rsync's generator stats a
 * name well before its receiver opens and renames onto it.
 */
const NEG_TIMEOUT_S = 10;
/** Negative entries tracked at most; past that, ENOENT is answered uncached. */
const MAX_NEGATIVES = 100_000;
/** What the kernel holds for a name that does not exist: node id 0 with an entry timeout. */
const NEGATIVE: LlEntry = {
  ino: 0n,
  generation: 0n,
  attr: { ino: 0n, mode: 0, nlink: 0, uid: 0, gid: 0, size: 0, atimeMs: 0, mtimeMs: 0, ctimeMs: 0 },
  attrTimeout: 0,
  entryTimeout: NEG_TIMEOUT_S,
};
const FALLOC_FL_KEEP_SIZE = 1;
const FALLOC_FL_PUNCH_HOLE = 2;
const FALLOC_FL_ZERO_RANGE = 0x10;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const ZEROS = Buffer.alloc(MiB);
/** Write payloads of at least this size are kept as they are (see the write handler). */
const HANDOVER_BYTES = 512 * 1024;

/** A state-changing mount operation, as the audit log records it. */
export interface MountAuditEvent {
  op: 'mkdir' | 'rmdir' | 'copy_file_range';
  /** What it acted on: share names, node ids. */
  target: Record<string, string | number | boolean>;
  uid: number;
  gid: number;
  pid: number;
  /** The errno name it failed with (EEXIST, ...), or null. */
  error: string | null;
  ms: number;
}

export interface LlFileSystemOptions {
  log?: (line: string) => void;
  /** Receives every audited mount operation (mkdir/rmdir of shares, fastcopies). */
  audit?: (e: MountAuditEvent) => void;
  /** A read-only tree grafted onto the mount (the catalog's `.files/`, ll-virtual.ts). */
  virtual?: VirtualTree;
}

export class LlFileSystem {
  /** Lookups the kernel holds per node (FUSE's nlookup); forget takes them back. */
  readonly lookups = new Map<bigint, number>();
  readonly locks = new LockTable();
  /** Holes of open files the addon answers without this thread. */
  private readonly holes: HoleTable;
  /** Read-ahead windows of open files the addon answers data reads from without this thread. */
  private readonly datawin: DataWindows;
  /** Directory attributes the addon answers without this thread. */
  private readonly attrs: AttrTable;
  /** Names of stored directories: the addon answers lookups of absent names without this thread. */
  private readonly names: NameTable;
  private readonly dirs = new Map<number, NodeEntry[]>();
  private nextDirFh = 1;
  private readonly log: (line: string) => void;
  private readonly virtual: VirtualTree | undefined;
  private readonly auditTo: ((e: MountAuditEvent) => void) | undefined;
  /** Negative entries handed to the kernel: "parent/name" -> when they expire (performance.now() ms), oldest first. */
  readonly negatives = new Map<string, number>();
  /** Names the kernel's own requests are making now ("parent/name" -> requests). */
  private readonly kernelMaking = new Map<string, number>();
  /** Names made in the namespace so far (a lookup that saw one made meanwhile is not cached). */
  private made = 0;
  private session: LlSession | undefined;
  private unwatch: (() => void) | undefined;
  /** Invalidations asked for (tests and the benches read it). */
  invalidations = 0;

  constructor(
    private readonly ns: Namespace,
    opts: LlFileSystemOptions = {},
  ) {
    this.log = opts.log ?? ((l) => process.stderr.write(l + '\n'));
    this.virtual = opts.virtual;
    this.auditTo = opts.audit;
    this.holes = new HoleTable(ns);
    this.datawin = new DataWindows(ns);
    this.attrs = new AttrTable(ns.ctx.meta);
    this.names = new NameTable(ns.ctx.meta, NEG_TIMEOUT_S, (dir, name) => this.madeElsewhere(dir, name));
  }

  /** Runs `fn` and, if auditing, records the operation with its caller and outcome. */
  private async audited<T>(op: MountAuditEvent['op'], r: { uid: number; gid: number; pid: number }, target: MountAuditEvent['target'], fn: () => Promise<T>, counts?: (v: T) => boolean): Promise<T> {
    if (!this.auditTo) return fn();
    const t0 = performance.now();
    const record = (error: string | null) => {
      try {
        this.auditTo!({ op, target, uid: r.uid, gid: r.gid, pid: r.pid, error, ms: Math.round(performance.now() - t0) });
      } catch (err) {
        this.log(`fuse3: auditing ${op}: ${(err as Error).message}`);
      }
    };
    try {
      const v = await fn();
      if (!counts || counts(v)) record(null);
      return v;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      record(typeof code === 'string' ? code : 'IO');
      throw err;
    }
  }

  /** Stops following the namespace's names (at unmount). */
  close(): void {
    this.unwatch?.();
    this.unwatch = undefined;
    this.attrs.close();
    this.names.close();
    this.datawin.stop();
    this.negatives.clear();
    this.session = undefined;
  }

  // ---- negative entries ---------------------------------------------------------------------

  /** Answers a lookup of a name that does not exist, cached by the kernel where that is safe. */
  private replyAbsent(s: LlSession, r: { id: number; parent: bigint; name: string }, seen: number, err: unknown): void {
    if (this.made !== seen || !this.negativeOk(r.parent, r.name) || this.negatives.size >= MAX_NEGATIVES && !this.prune()) {
      this.fail(s, r as LlRequest, err);
      return;
    }
    if (!this.unwatch) this.unwatch = this.ns.ctx.meta.watchTxns((t) => this.learnt(t));
    this.session = s;
    const key = `${r.parent}/${r.name}`;
    this.negatives.delete(key);
    // The kernel counts the timeout from when it reads the reply: a second's margin.
    this.negatives.set(key, performance.now() + (NEG_TIMEOUT_S + 1) * 1000);
    s.replyEntry(r.id, NEGATIVE);
  }

  private negativeOk(parent: bigint, name: string): boolean {
    // ".." is asked by node id (NFS file handles): its absence is an error, not a name to cache.
    if (name === '.' || name === '..' || name.endsWith('.files')) return false;
    try {
      return parseNode(parent).kind === 'vol';
    } catch {
      return false;
    }
  }

  /** Drops expired negatives (oldest first); whether there is room now. */
  private prune(): boolean {
    const now = performance.now();
    for (const [k, until] of this.negatives) {
      if (until > now) break;
      this.negatives.delete(k);
    }
    return this.negatives.size < MAX_NEGATIVES;
  }

  /** The namespace learnt a transaction (or may have changed anything: null). */
  private learnt(t: Parameters<TxnWatcher>[0]): void {
    if (t === null) {
      this.made++;
      for (const k of [...this.negatives.keys()]) this.invalidate(k);
      return;
    }
    for (const [k, e] of t.entries) {
      if (e === null) continue;
      this.made++;
      if (this.negatives.size === 0) continue;
      // "vol/parent/name": names never hold a slash.
      const a = k.indexOf('/');
      const b = k.indexOf('/', a + 1);
      let key: string;
      try {
        key = `${nodeOf(Number(k.slice(0, a)), Number(k.slice(a + 1, b)))}/${k.slice(b + 1)}`;
      } catch {
        continue;
      }
      if (this.negatives.has(key)) this.invalidate(key);
    }
  }

  private invalidate(key: string): void {
    const until = this.negatives.get(key);
    this.negatives.delete(key);
    if (until === undefined || until <= performance.now() || !this.session) return;
    const cut = key.indexOf('/');
    this.invalidations++;
    if (!this.session.invalidateEntry(BigInt(key.slice(0, cut)), key.slice(cut + 1))) {
      this.log(`fuse3: could not invalidate the kernel's negative entry for ${key.slice(cut + 1)} in node ${key.slice(0, cut)}: it may look absent for up to ${NEG_TIMEOUT_S} s`);
    }
  }

  /**
   * Runs a request of the kernel's that makes `name` in `parent`: the kernel replaces its own
   * negative entry, so none is invalidated (that would wait on the directory's lock, which the
   * request holds); if it fails, the kernel still holds the negative entry and it stays tracked.
   */
  private async making<T>(parent: bigint, name: string, fn: () => Promise<T>): Promise<T> {
    const key = `${parent}/${name}`;
    // The addon's negative answers in held directories need no invalidation either (madeElsewhere).
    this.kernelMaking.set(key, (this.kernelMaking.get(key) ?? 0) + 1);
    const until = this.negatives.get(key);
    this.negatives.delete(key);
    try {
      return await fn();
    } catch (err) {
      if (until !== undefined && !this.negatives.has(key) && until > performance.now()) this.negatives.set(key, until);
      throw err;
    } finally {
      const n = this.kernelMaking.get(key)! - 1;
      if (n > 0) this.kernelMaking.set(key, n);
      else this.kernelMaking.delete(key);
    }
  }

  /**
   * A name was made in a directory whose absent names the addon answers, and the kernel may
   * keep such an answer (NEG_TIMEOUT_S): unless the kernel's own request made it (which
   * replaces its entry itself), the entry is invalidated, as for the negatives above.
   */
  private madeElsewhere(dir: bigint, name: string): void {
    if (this.kernelMaking.has(`${dir}/${name}`) || !this.session) return;
    this.invalidations++;
    if (!this.session.invalidateEntry(dir, name)) {
      this.log(`fuse3: could not invalidate the kernel's negative entry for ${name} in node ${dir}: it may look absent for up to ${NEG_TIMEOUT_S} s`);
    }
  }

  /** The onBatch to mount with: `LlSession.mount(dir, opts, fs.onBatch())`. */
  onBatch(): OnBatch {
    const ops = this.virtual ? withVirtualTree(this.ops(), this.virtual, this.ns, this.log, this.datawin) : this.ops();
    return dispatchOps(ops, { log: this.log });
  }

  // ---- conversions --------------------------------------------------------------------------

  private attr(a: NodeAttr): LlAttr {
    return { ino: a.ino, mode: a.mode, nlink: a.nlink, uid: a.uid, gid: a.gid, size: a.size, blksize: MiB, atimeMs: a.atime, mtimeMs: a.mtime, ctimeMs: a.ctime };
  }

  /** An entry the kernel will hold: counts one lookup. */
  private entry(a: NodeAttr): LlEntry {
    return { ino: a.ino, generation: BigInt(a.generation), attr: this.attr(a), attrTimeout: TIMEOUT_S, entryTimeout: TIMEOUT_S };
  }

  private counted(a: NodeAttr): LlEntry {
    this.lookups.set(a.ino, (this.lookups.get(a.ino) ?? 0) + 1);
    return this.entry(a);
  }

  /** Offers a directory's attributes, read after `mark`, to the addon (ll-attrs.ts). */
  private offer(s: LlSession, a: NodeAttr, mark: number): void {
    if (a.type === NodeType.Dir) this.attrs.offer(s, a, this.attr(a), TIMEOUT_S, mark);
  }

  /**
   * After a change in directory `parent` is answered: the kernel will ask for the directory's
   * attributes at the caller's next path walk, and the addon answers that with these. After the
   * reply, so the offer costs the caller no wait; it is made before any other event of this
   * thread runs (the reads are cached), so it is usually in place before the kernel asks (if
   * not, that getattr comes here as before).
   */
  private async offerDir(s: LlSession, parent: bigint): Promise<void> {
    const mark = this.attrs.mark();
    let a: NodeAttr;
    try {
      a = await this.ns.nodes.getattr(parent);
    } catch {
      return;
    }
    this.offer(s, a, mark);
  }

  private fail(s: LlSession, r: LlRequest, err: unknown): void {
    const what = 'ino' in r ? `node ${r.ino}` : 'parent' in r ? `${r.name} in node ${r.parent}` : '';
    s.replyErr(r.id, -toErrno(err, `${r.op} ${what}`, this.log));
  }

  /** Runs `fn`, answering its error (mapped to an errno) if it throws. */
  private run<R extends LlRequest>(fn: (r: R, s: LlSession) => Promise<unknown> | unknown): (r: R, s: LlSession) => Promise<void> {
    return async (r, s) => {
      try {
        await fn(r, s);
      } catch (err) {
        this.fail(s, r, err);
      }
    };
  }

  // ---- the operations -----------------------------------------------------------------------

  ops(): Partial<LlOps> {
    const ns = this.ns;
    const n = ns.nodes;
    const fs = ns.fs;
    const owner = (r: { uid: number; gid: number }) => ({ uid: r.uid, gid: r.gid });
    return {
      lookup: async (r, s) => {
        const seen = this.made;
        const mark = this.attrs.mark();
        let a: NodeAttr;
        try {
          a = await n.lookup(r.parent, r.name);
        } catch (err) {
          if ((err as { code?: unknown }).code !== 'NOT_FOUND') return this.fail(s, r, err);
          this.replyAbsent(s, r, seen, err);
          // Its other absent names are answered by the addon from now on (ll-names.ts).
          this.session = s;
          this.names.offer(s, r.parent);
          return;
        }
        this.offer(s, a, mark);
        s.replyEntry(r.id, this.counted(a));
      },
      forget: (r) => {
        for (const { ino, nlookup } of r.items) {
          const left = (this.lookups.get(ino) ?? 0) - nlookup;
          if (left > 0) this.lookups.set(ino, left);
          else this.lookups.delete(ino);
        }
      },
      getattr: this.run(async (r, s) => {
        const mark = this.attrs.mark();
        const a = await n.getattr(r.ino, r.fh);
        this.offer(s, a, mark);
        s.replyAttr(r.id, this.attr(a), TIMEOUT_S);
      }),
      setattr: this.run(async (r, s) => {
        const { mode, uid, gid, size, atimeMs, mtimeMs } = r.set;
        const a = await n.setattr(r.ino, { mode, uid, gid, size, atime: atimeMs, mtime: mtimeMs }, r.fh);
        s.replyAttr(r.id, this.attr(a), TIMEOUT_S);
      }),
      readlink: this.run(async (r, s) => s.replyReadlink(r.id, await n.readlink(r.ino))),
      mknod: this.run(async (r, s) => {
        const a = await this.making(r.parent, r.name, () => n.mknod(r.parent, r.name, r.mode, owner(r)));
        s.replyEntry(r.id, this.counted(a));
        await this.offerDir(s, r.parent);
      }),
      mkdir: this.run(async (r, s) => {
        const make = () => n.mkdir(r.parent, r.name, r.mode, owner(r));
        // mkdir at the top of the mount makes a share: audited like POST /shares.
        const a = r.parent === MOUNT_ROOT_NODE ? await this.audited('mkdir', r, { share: r.name }, make) : await this.making(r.parent, r.name, make);
        s.replyEntry(r.id, this.counted(a));
        // Made empty: the addon answers every lookup in it until a name is made (ll-names.ts).
        if (r.parent !== MOUNT_ROOT_NODE) {
          this.session = s;
          this.names.offer(s, a.ino);
        }
        await this.offerDir(s, r.parent);
      }),
      symlink: this.run(async (r, s) => {
        const a = await this.making(r.parent, r.name, () => n.symlink(r.parent, r.name, r.target, owner(r)));
        s.replyEntry(r.id, this.counted(a));
        await this.offerDir(s, r.parent);
      }),
      link: this.run(async (r, s) => {
        const a = await this.making(r.newparent, r.newname, () => n.link(r.ino, r.newparent, r.newname));
        s.replyEntry(r.id, this.counted(a));
        await this.offerDir(s, r.newparent);
      }),
      unlink: this.run(async (r, s) => {
        await n.unlink(r.parent, r.name);
        s.replyErr(r.id, 0);
        await this.offerDir(s, r.parent);
      }),
      rmdir: this.run(async (r, s) => {
        const remove = () => n.rmdir(r.parent, r.name);
        if (r.parent === MOUNT_ROOT_NODE) await this.audited('rmdir', r, { share: r.name }, remove);
        else await remove();
        s.replyErr(r.id, 0);
        await this.offerDir(s, r.parent);
      }),
      rename: this.run(async (r, s) => {
        await this.making(r.newparent, r.newname, () => n.rename(r.parent, r.name, r.newparent, r.newname, r.flags));
        s.replyErr(r.id, 0);
        await this.offerDir(s, r.parent);
        if (r.newparent !== r.parent) await this.offerDir(s, r.newparent);
      }),
      create: this.run(async (r, s) => {
        const { attr, fh } = await this.making(r.parent, r.name, () => n.create(r.parent, r.name, r.mode, r.flags, owner(r)));
        if (!s.replyCreate(r.id, this.counted(attr), fh)) await fs.release(fh);
        await this.offerDir(s, r.parent);
      }),
      open: this.run(async (r, s) => {
        const fh = await n.open(r.ino, r.flags);
        // A snapshot's file never changes: the kernel keeps what it read in its page cache
        // across opens (FOPEN_KEEP_CACHE), so reading a restore point again costs no requests.
        const h = fs.handle(fh);
        const keep = h.immutable ? { keepCache: true } : undefined;
        // A read-only handle's flush has nothing to commit: the addon answers it (quiet.c)
        // while no POSIX lock was asked for (a flush drops the caller's).
        const quiet = !h.writable && s.quietFlush(fh);
        // Not answered (the caller was interrupted): nobody will release it.
        if (!s.replyOpen(r.id, fh, keep)) {
          if (quiet) s.unquiet(fh);
          await fs.release(fh);
        }
      }),
      read: (r, s) => {
        // Reads inside the file's holes stop coming here once the addon knows them (ll-holes.ts).
        this.holes.onRead(s, r.ino, r.fh, r.offset);
        // So are reads inside the read-ahead windows ahead of this one (ll-datawin.ts).
        this.datawin.onRead(s, r.ino, r.fh);
        // The reply copies straight from the store's read-ahead window into the kernel: no
        // buffer per request, no copy in JS (readWith hands a view valid during the call).
        let sent: boolean | Promise<void>;
        try {
          sent = fs.readWith(r.fh, r.offset, r.size, (b) => void s.replyData(r.id, b));
        } catch (err) {
          this.fail(s, r, err);
          return;
        }
        if (sent === true) return;
        if (sent !== false) {
          sent.catch((err) => this.fail(s, r, err));
          return;
        }
        // Bytes not yet committed lie in the range: read them through the file's buffers.
        const buf = Buffer.allocUnsafe(r.size);
        let got: number | Promise<number>;
        try {
          got = fs.readInto(r.fh, r.offset, buf);
        } catch (err) {
          this.fail(s, r, err);
          return;
        }
        // No promise when the bytes are already in memory (buffers, read-ahead).
        if (typeof got === 'number') s.replyData(r.id, buf.subarray(0, got));
        else got.then((k) => s.replyData(r.id, buf.subarray(0, k)), (err) => this.fail(s, r, err));
      },
      // A large payload is JavaScript's own memory (the addon's pooled 1 MiB block, never
      // touched by libfuse again): handed over, not copied into the file's buffers (the copy
      // and its second external allocation per MiB doubled the GC's work). Smaller ones are
      // copied: a kept 128 KiB payload would pin a whole 1 MiB block (native/src/fuse3/
      // requests.c, POOL_BLOCK), and small sequential writes coalesce into one buffer.
      // A payload in the write ring (ll/write-ring.ts) goes back to the ring when the namespace
      // no longer reads it: at once when copied, else once the commit that took it is built.
      write: this.run(async (r, s) =>
        s.replyWrite(r.id, await ns.write(r.fh, r.offset, r.data, { owned: r.data.length >= HANDOVER_BYTES, release: r.release })),
      ),
      flush: this.run(async (r, s) => {
        // close(2) drops the caller's POSIX locks on the file, whichever descriptor held them.
        this.locks.dropOwner(r.ino, r.lockOwner);
        await fs.flush(r.fh);
        s.replyErr(r.id, 0);
      }),
      release: this.run(async (r, s) => {
        this.locks.dropHandle(r.ino, r.fh);
        this.holes.release(s, r.ino, r.fh);
        this.datawin.release(r.ino, r.fh);
        await fs.release(r.fh);
        s.replyErr(r.id, 0);
      }),
      fsync: this.run(async (r, s) => {
        await fs.fsync(r.fh);
        s.replyErr(r.id, 0);
      }),
      opendir: this.run(async (r, s) => {
        await n.opendir(r.ino);
        let fh = this.nextDirFh;
        while (this.dirs.has(fh)) fh = fh >= 0x7fffffff ? 1 : fh + 1;
        this.nextDirFh = fh >= 0x7fffffff ? 1 : fh + 1;
        // The listing is read at the first readdir, so offsets stay meaningful for this handle.
        this.dirs.set(fh, []);
        // A stored directory's listing may stay in the kernel's page cache (FOPEN_CACHE_DIR,
        // KEEP_CACHE): every change to it, through the mount or the control plane, moves its
        // mtime, which the kernel checks. One request per 4 KiB page otherwise (libfuse 2's
        // high-level layer buffered whole listings in C). The virtual directories' times do not
        // move with their contents: never cached.
        const cache = parseNode(r.ino).kind === 'vol';
        if (!s.replyOpen(r.id, fh, cache ? { cacheDir: true, keepCache: true } : undefined)) this.dirs.delete(fh);
      }),
      readdir: this.run(async (r, s) => {
        let list = this.dirs.get(r.fh);
        if (!list) throw Object.assign(new Error(`directory handle ${r.fh} is not open`), { code: 'EBADF' });
        if (r.offset === 0 || list.length === 0) {
          list = await n.readdir(r.ino);
          this.dirs.set(r.fh, list);
        }
        // About as many as fit: a direntplus takes ~150 bytes, a dirent ~32.
        const slice = list.slice(r.offset, r.offset + Math.ceil(r.size / (r.plus ? 96 : 24)));
        const out: LlDirent[] = [];
        for (const [i, e] of slice.entries()) {
          const d: LlDirent = { name: e.name, ino: e.ino, mode: typeMode(e.type), nextOffset: r.offset + i + 1 };
          if (r.plus && e.name !== '.' && e.name !== '..') {
            const a = await n.getattr(e.ino).catch(() => undefined);
            if (a) d.entry = this.entry(a);
          }
          out.push(d);
        }
        const taken = s.replyDir(r.id, out);
        if (r.plus) for (const d of out.slice(0, Math.max(0, taken))) if (d.entry) this.lookups.set(d.ino, (this.lookups.get(d.ino) ?? 0) + 1);
      }),
      releasedir: (r, s) => {
        this.dirs.delete(r.fh);
        s.replyErr(r.id, 0);
      },
      fsyncdir: this.run(async (r, s) => {
        await n.fsyncdir(r.ino);
        s.replyErr(r.id, 0);
      }),
      statfs: this.run(async (r, s) => {
        const c = await ns.capacity();
        const b = 4096;
        s.replyStatfs(r.id, {
          bsize: b,
          frsize: b,
          blocks: Math.floor(c.totalBytes / b),
          bfree: Math.floor(c.freeBytes / b),
          bavail: Math.floor(c.availableBytes / b),
          files: c.files + 1_000_000_000,
          ffree: 1_000_000_000,
          favail: 1_000_000_000,
          namemax: 255,
        });
      }),
      // default_permissions: the kernel checks; access(2) without it sees every mode allowed.
      access: (r, s) => {
        s.replyErr(r.id, 0);
      },
      getlk: (r, s) => {
        s.replyLock(r.id, this.locks.test(r.ino, r.lockOwner, r.lock));
      },
      setlk: this.run(async (r, s) => {
        s.locksUsed();
        this.locks.used(r.fh, r.lockOwner);
        const ok = await this.locks.set(r.ino, r.lockOwner, r.lock, r.sleep, (cancel) => s.onInterrupt(r.id, cancel));
        s.replyErr(r.id, ok ? 0 : E.EAGAIN);
      }),
      flock: this.run(async (r, s) => {
        const ok = await this.locks.flock(r.ino, r.fh, r.operation, (cancel) => s.onInterrupt(r.id, cancel));
        s.replyErr(r.id, ok ? 0 : E.EWOULDBLOCK);
      }),
      fallocate: this.run(async (r, s) => {
        await this.fallocate(r.fh, r.ino, r.mode, r.offset, r.length, () => s.interrupted(r.id));
        s.replyErr(r.id, 0);
      }),
      lseek: this.run(async (r, s) => {
        if (r.whence !== SEEK_DATA && r.whence !== SEEK_HOLE) throw Object.assign(new Error(`lseek whence ${r.whence}`), { code: 'EINVAL' });
        const at = await n.seek(r.fh, r.offset, r.whence === SEEK_DATA ? 'data' : 'hole');
        if (at < 0) throw Object.assign(new Error('no data at or past the offset'), { code: 'ENXIO' });
        s.replyLseek(r.id, at);
      }),
      copy_file_range: this.run(async (r, s) => {
        s.replyWrite(r.id, await this.copyRange(r, r.fh, r.ino, r.offset, r.fhOut, r.inoOut, r.offsetOut, r.length, () => s.interrupted(r.id)));
      }),
    };
  }

  private async fallocate(fh: number, node: bigint, mode: number, offset: number, length: number, interrupted: () => boolean): Promise<void> {
    const known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
    if (mode & ~known || (mode & FALLOC_FL_PUNCH_HOLE && !(mode & FALLOC_FL_KEEP_SIZE))) {
      throw Object.assign(new Error(`fallocate mode ${mode}`), { code: 'EOPNOTSUPP' });
    }
    const { size } = await this.ns.nodes.getattr(node, fh);
    const end = offset + length;
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
      // Zeros are stored as zero segments: the range stops costing space once committed.
      const stop = mode & FALLOC_FL_KEEP_SIZE ? Math.min(end, size) : end;
      for (let at = offset; at < stop; at += MiB) {
        // Interrupted: what is zeroed stays zeroed (fallocate(2) may fail half done).
        if (interrupted()) throw Object.assign(new Error('fallocate interrupted'), { code: 'EINTR' });
        await this.ns.write(fh, at, ZEROS.subarray(0, Math.min(MiB, stop - at)));
      }
      return;
    }
    // Plain allocation: nothing to reserve; without KEEP_SIZE the file grows (with zeros).
    if (!(mode & FALLOC_FL_KEEP_SIZE) && end > size) this.ns.fs.ftruncate(fh, end);
  }

  /** copy_file_range: a fastcopy when it is the whole source into an empty target, else a copy. */
  private async copyRange(
    caller: { uid: number; gid: number; pid: number },
    fhIn: number,
    inoIn: bigint,
    offIn: number,
    fhOut: number,
    inoOut: bigint,
    offOut: number,
    length: number,
    interrupted: () => boolean,
  ): Promise<number> {
    const src = await this.ns.nodes.getattr(inoIn, fhIn);
    if (src.type !== NodeType.File) throw Object.assign(new Error('not a regular file'), { code: 'EINVAL' });
    if (offIn === 0 && offOut === 0 && length >= src.size && src.size > 0) {
      // A fastcopy (audited like POST .../fastcopy); a plain copy of bytes is not.
      const target = { from: String(inoIn), to: String(inoOut), bytes: src.size };
      const done = await this.audited('copy_file_range', caller, target, () => this.ns.nodes.cloneContent(fhIn, fhOut), (ok) => ok);
      if (done) return src.size;
    }
    const end = Math.min(src.size, offIn + length);
    let copied = 0;
    for (let at = offIn; at < end; at += MiB) {
      // Interrupted: a short copy is a valid answer; nothing copied yet is EINTR.
      if (interrupted()) {
        if (copied > 0) break;
        throw Object.assign(new Error('copy_file_range interrupted'), { code: 'EINTR' });
      }
      const buf = await this.ns.fs.read(fhIn, at, Math.min(MiB, end - at));
      if (buf.length === 0) break;
      await this.ns.write(fhOut, offOut + copied, buf);
      copied += buf.length;
    }
    return copied;
  }
}

function typeMode(t: NodeType): number {
  return t === NodeType.Dir ? 0o040000 : t === NodeType.Symlink ? 0o120000 : 0o100000;
}
