// POSIX operations on mount paths: what FUSE (and tests) call. Each change is one atomic
// LevelDB batch, made under the namespace lock; data changes go through open files.
//
// Mount layout: "/" lists shares (mkdir/rmdir there create/remove empty shares);
// "/<share>/..." is writable; "/<share>/.snapshots/<snap>/..." is read-only;
// ".snapshots" itself is virtual: it cannot be created, renamed or removed.

import { vmError } from '../errors.js';
import { EMPTY_VERSION, type ReadRescue } from '../store/store.js';
import { latest, type NsContext, type ParentResolved, type Resolved } from './context.js';
import { Txn } from './meta.js';
import { SNAPSHOTS_DIR } from './names.js';
import type { OpenFile } from './open-file.js';
import { type Inode, NodeType, ROOT_INO, typeBits, type Volume } from './records.js';

export interface Attr {
  ino: number;
  type: NodeType;
  /** Full st_mode: type bits and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  atime: number;
  mtime: number;
  ctime: number;
}

export interface Handle {
  vol: number;
  ino: number;
  writable: boolean;
  /** A snapshot's file: its bytes never change (a FUSE open may keep the kernel's page cache). */
  immutable: boolean;
  file: OpenFile;
}

/** Who makes a new node: its owner. Absent: root (the path API, used by the control plane). */
export interface Owner {
  uid: number;
  gid: number;
}

/** rename(2) flags (renameat2). */
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;

const S_ISGID = 0o2000;
const O_ACCMODE = 3;
const O_RDONLY = 0;

export class FsOps {
  private readonly handles = new Map<number, Handle>();
  private nextFh = 1;
  private readonly mountTime = Date.now();

  constructor(
    private readonly ctx: NsContext,
    private readonly shares: {
      create(name: string): Promise<unknown>;
      remove(name: string, opts: { force: boolean }): Promise<void>;
      list(): Promise<Array<{ name: string }>>;
      snapshotNames(share: Volume): Promise<string[]>;
    },
  ) {}

  // ---- attributes -------------------------------------------------------------------------

  attrOf(r: { inode: Inode; vol: number }): Attr {
    const n = r.inode;
    const f = n.type === NodeType.File ? this.ctx.findOpen(r.vol, n.ino) : undefined;
    return {
      ino: n.ino,
      type: n.type,
      mode: typeBits(n.type) | n.mode,
      uid: n.uid,
      gid: n.gid,
      nlink: n.nlink,
      size: f ? f.size : n.size,
      atime: n.atime,
      mtime: f ? f.mtime : n.mtime,
      ctime: f ? f.ctime : n.ctime,
    };
  }

  private virtualDir(nlink: number, time: number): Attr {
    return { ino: 1, type: NodeType.Dir, mode: 0o040555, uid: 0, gid: 0, nlink, size: 0, atime: time, mtime: time, ctime: time };
  }

  async getattr(path: string): Promise<Attr> {
    const pl = await this.ctx.place(path);
    if (pl.kind === 'root') {
      const shares = await this.shares.list();
      return { ...this.virtualDir(2 + shares.length, this.mountTime), mode: 0o040755 };
    }
    if (pl.kind === 'snapdir') {
      const snaps = await this.shares.snapshotNames(pl.share);
      return this.virtualDir(2 + snaps.length, pl.share.created);
    }
    const { inode } = await this.ctx.walk(pl.vol, pl.parts, pl.root);
    return this.attrOf({ inode, vol: pl.vol.id });
  }

  async fgetattr(fh: number): Promise<Attr> {
    const h = this.handle(fh);
    const inode = await this.ctx.meta.getInode(h.vol, h.ino);
    if (!inode) {
      // Open but unlinked: what the open file knows.
      const f = h.file;
      return { ino: h.ino, type: NodeType.File, mode: 0o100000, uid: 0, gid: 0, nlink: 0, size: f.size, atime: f.mtime, mtime: f.mtime, ctime: f.ctime };
    }
    return this.attrOf({ inode, vol: h.vol });
  }

  async readdir(path: string): Promise<Array<{ name: string; attr?: Attr }>> {
    const pl = await this.ctx.place(path);
    if (pl.kind === 'root') return (await this.shares.list()).map((s) => ({ name: s.name }));
    if (pl.kind === 'snapdir') return (await this.shares.snapshotNames(pl.share)).map((name) => ({ name }));
    const { ino, inode } = await this.ctx.walk(pl.vol, pl.parts, pl.root);
    if (inode.type !== NodeType.Dir) throw vmError('NOT_DIRECTORY', `${path} is not a directory`);
    const list = await this.ctx.meta.listDir(pl.vol.id, ino);
    const out = list.map((e) => ({ name: e.name }));
    if (pl.parts.length === 0 && !pl.readOnly) out.unshift({ name: SNAPSHOTS_DIR });
    return out;
  }

  async readlink(path: string): Promise<string> {
    const r = await this.ctx.resolve(path);
    if (r.inode.type !== NodeType.Symlink) throw vmError('INVALID_ARGUMENT', `${path} is not a symbolic link`);
    return r.inode.target ?? '';
  }

  // ---- creating and removing names ---------------------------------------------------------

  /**
   * A new name where the mount holds only virtual entries: EPERM at the top of the mount (it
   * holds shares; mkdir makes one), EROFS directly in `.snapshots/` (snapshots are made through
   * the control plane). Checked before resolving, which would say ENOENT for the missing name.
   */
  private refuseVirtualParent(path: string): void {
    const parts = path.split('/').filter((p) => p.length > 0);
    if (parts.length === 1) throw vmError('NOT_PERMITTED', `${path}: the top of the mount holds only shares; mkdir makes one`);
    if (parts.length === 3 && parts[1] === SNAPSHOTS_DIR) throw vmError('READ_ONLY', `${path}: .snapshots is read-only; snapshots are made with \`vmvault snapshot create\``);
  }

  private checkNewName(p: ParentResolved, path: string): void {
    refuseReadOnly(p.readOnly, path);
    if (p.atRoot && p.name === SNAPSHOTS_DIR) throw vmError('ALREADY_EXISTS', `${path}: .snapshots is reserved for the share's snapshots`);
  }

  private async mustNotExist(p: ParentResolved, path: string): Promise<void> {
    if (await this.ctx.meta.lookup(p.vol.id, p.parent, p.name)) throw vmError('ALREADY_EXISTS', `${path} already exists`);
  }

  private newInode(ino: number, type: NodeType, mode: number, now: number, extra: Partial<Inode> = {}, owner?: Owner): Inode {
    return {
      ino,
      type,
      mode: mode & 0o7777,
      uid: owner?.uid ?? 0,
      gid: owner?.gid ?? 0,
      generation: this.ctx.epoch,
      nlink: type === NodeType.Dir ? 2 : 1,
      atime: now,
      mtime: now,
      ctime: now,
      size: 0,
      version: EMPTY_VERSION,
      ...extra,
    };
  }

  async mkdir(path: string, mode: number): Promise<void> {
    if (splitDepth(path) === 3) this.refuseVirtualParent(path);
    const pl = await this.ctx.place(path).catch((err) => {
      // mkdir /<name> makes a share: the name is not found yet, which is the point.
      if (splitDepth(path) === 1) return undefined;
      throw err;
    });
    if (pl === undefined || pl.kind === 'root') {
      await this.shares.create(path.replace(/^\/+|\/+$/g, ''));
      return;
    }
    if (pl.kind === 'snapdir' || pl.parts.length === 0) throw vmError('ALREADY_EXISTS', `${path} exists`);
    await this.ctx.lock.run(async () => this.addNodeAt(await this.ctx.resolveParent(path), path, NodeType.Dir, mode));
  }

  async symlink(target: string, path: string): Promise<void> {
    this.refuseVirtualParent(path);
    await this.ctx.lock.run(async () => this.addNodeAt(await this.ctx.resolveParent(path), path, NodeType.Symlink, 0o777, { target, size: Buffer.byteLength(target) }));
  }

  async link(existing: string, path: string): Promise<void> {
    this.refuseVirtualParent(path);
    await this.ctx.lock.run(async () => this.linkAt(await this.ctx.resolve(existing), await this.ctx.resolveParent(path), existing, path));
  }

  /** A new name for an existing file or symlink. The caller holds the namespace lock. */
  async linkAt(src: Resolved, p: ParentResolved, existing: string, path: string): Promise<Inode> {
    if (src.vol.id !== p.vol.id) throw vmError('CROSS_SHARE', `${existing} and ${path} are in different shares or snapshots`);
    this.checkNewName(p, path);
    if (src.inode.type === NodeType.Dir) throw vmError('NOT_PERMITTED', `${existing} is a directory; directories cannot be hard-linked`);
    await this.mustNotExist(p, path);
    const now = Date.now();
    const txn = new Txn();
    const linked = { ...src.inode, nlink: src.inode.nlink + 1, ctime: now };
    txn.putInode(p.vol.id, linked);
    txn.putEntry(p.vol.id, p.parent, p.name, { ino: src.ino, type: src.inode.type });
    txn.putInode(p.vol.id, { ...p.parentInode, mtime: now, ctime: now });
    this.ctx.meta.applyLater(txn);
    return linked;
  }

  async create(path: string, mode: number): Promise<number> {
    this.refuseVirtualParent(path);
    return this.ctx.lock.run(async () => {
      const { vol, inode } = await this.addNodeAt(await this.ctx.resolveParent(path), path, NodeType.File, mode);
      return this.newHandle(vol.id, inode, true);
    });
  }

  /**
   * Makes a new directory, symlink or empty file named `p.name` in one transaction (the caller
   * holds the lock); `path` names it in messages:
   * the parent's times and link count move with it, and a file counts in its share's totals.
   */
  async addNodeAt(p: ParentResolved, path: string, type: NodeType, mode: number, extra?: Partial<Inode>, owner?: Owner): Promise<{ vol: Volume; inode: Inode }> {
    this.checkNewName(p, path);
    await this.mustNotExist(p, path);
    const now = Date.now();
    const txn = new Txn();
    // A setgid directory hands its group down, and its setgid bit to subdirectories (as ext4).
    let gidOwner = owner;
    if (owner && p.parentInode.mode & S_ISGID) {
      gidOwner = { uid: owner.uid, gid: p.parentInode.gid };
      if (type === NodeType.Dir) mode |= S_ISGID;
    }
    const parentOf = type === NodeType.Dir ? { parent: p.parent } : {};
    const inode = this.newInode(this.ctx.allocIno(txn, p.vol), type, mode, now, { ...extra, ...parentOf }, gidOwner);
    txn.putInode(p.vol.id, inode);
    txn.putEntry(p.vol.id, p.parent, p.name, { ino: inode.ino, type });
    // A subdirectory's ".." is a link to its parent.
    const nlink = p.parentInode.nlink + (type === NodeType.Dir ? 1 : 0);
    txn.putInode(p.vol.id, { ...p.parentInode, nlink, mtime: now, ctime: now });
    if (type === NodeType.File) this.ctx.count(txn, p.vol, 1, 0);
    this.ctx.meta.applyLater(txn);
    if (type === NodeType.Dir) this.ctx.meta.madeEmptyDir(p.vol.id, inode.ino);
    return { vol: p.vol, inode };
  }

  /** Drops one link to `inode` inside `txn`; deletes it with the last link. */
  private unlinkInode(txn: Txn, vol: Volume, inode: Inode, now: number): void {
    if (inode.type === NodeType.Dir || inode.nlink <= 1) {
      txn.delInode(vol.id, inode.ino);
      if (inode.type === NodeType.File) this.ctx.count(txn, vol, -1, -inode.size);
    } else {
      txn.putInode(vol.id, { ...inode, nlink: inode.nlink - 1, ctime: now });
    }
  }

  async unlink(path: string): Promise<void> {
    await this.ctx.lock.run(async () => this.unlinkAt(await this.ctx.resolveParent(path), path));
  }

  /** Removes a file's or symlink's name (the caller holds the lock). */
  async unlinkAt(p: ParentResolved, path: string): Promise<void> {
    refuseReadOnly(p.readOnly, path);
    if (p.atRoot && p.name === SNAPSHOTS_DIR) throw vmError('IS_DIRECTORY', `${path} is a directory`);
    const e = await this.ctx.meta.lookup(p.vol.id, p.parent, p.name);
    if (!e) throw vmError('NOT_FOUND', `${path} does not exist`);
    if (e.type === NodeType.Dir) throw vmError('IS_DIRECTORY', `${path} is a directory`);
    const inode = await this.ctx.meta.mustInode(p.vol.id, e.ino);
    const now = Date.now();
    const txn = new Txn();
    txn.delEntry(p.vol.id, p.parent, p.name);
    this.unlinkInode(txn, p.vol, inode, now);
    txn.putInode(p.vol.id, { ...p.parentInode, mtime: now, ctime: now });
    this.ctx.meta.applyLater(txn);
  }

  async rmdir(path: string): Promise<void> {
    const pl = await this.ctx.place(path);
    if (pl.kind === 'root') throw vmError('NOT_PERMITTED', 'the top of the mount cannot be removed');
    if (pl.kind === 'snapdir') throw vmError('NOT_PERMITTED', `${path} holds the share's snapshots; delete snapshots with \`vmvault snapshot delete\``);
    if (pl.parts.length === 0) {
      if (pl.readOnly) throw vmError('NOT_PERMITTED', `${path} is a snapshot; delete it with \`vmvault snapshot delete\``);
      await this.shares.remove(pl.vol.name, { force: false });
      return;
    }
    await this.ctx.lock.run(async () => this.rmdirAt(await this.ctx.resolveParent(path), path));
  }

  /** Removes an empty directory inside a share (the caller holds the lock). */
  async rmdirAt(p: ParentResolved, path: string): Promise<void> {
    refuseReadOnly(p.readOnly, path);
    if (p.atRoot && p.name === SNAPSHOTS_DIR) throw vmError('NOT_PERMITTED', `${path} holds the share's snapshots; delete snapshots with \`vmvault snapshot delete\``);
    const e = await this.ctx.meta.lookup(p.vol.id, p.parent, p.name);
    if (!e) throw vmError('NOT_FOUND', `${path} does not exist`);
    if (e.type !== NodeType.Dir) throw vmError('NOT_DIRECTORY', `${path} is not a directory`);
    if (await this.ctx.meta.hasChildren(p.vol.id, e.ino)) throw vmError('NOT_EMPTY', `${path} is not empty`);
    const inode = await this.ctx.meta.mustInode(p.vol.id, e.ino);
    const now = Date.now();
    const txn = new Txn();
    txn.delEntry(p.vol.id, p.parent, p.name);
    this.unlinkInode(txn, p.vol, inode, now);
    txn.putInode(p.vol.id, { ...p.parentInode, nlink: p.parentInode.nlink - 1, mtime: now, ctime: now });
    this.ctx.meta.applyLater(txn);
  }

  async rename(from: string, to: string): Promise<void> {
    if (splitDepth(from) <= 1 || splitDepth(to) <= 1) throw vmError('NOT_PERMITTED', 'shares cannot be renamed through the mount');
    if (to === from) return;
    if (to.startsWith(from + '/')) throw vmError('INVALID_ARGUMENT', `cannot move ${from} into itself`);
    this.refuseVirtualParent(to);
    await this.ctx.lock.run(async () => this.renameAt(await this.ctx.resolveParent(from), await this.ctx.resolveParent(to), from, to, 0));
  }

  /**
   * Moves a name (the caller holds the lock). `flags`: RENAME_NOREPLACE refuses an existing
   * target; RENAME_EXCHANGE is not supported. A directory cannot move into its own subtree.
   */
  async renameAt(src: ParentResolved, dst: ParentResolved, from: string, to: string, flags: number): Promise<void> {
    if (flags & ~RENAME_NOREPLACE) throw vmError('INVALID_ARGUMENT', `rename flags ${flags} are not supported (RENAME_EXCHANGE, RENAME_WHITEOUT)`);
    refuseReadOnly(src.readOnly || dst.readOnly);
    if ((src.atRoot && src.name === SNAPSHOTS_DIR) || (dst.atRoot && dst.name === SNAPSHOTS_DIR)) {
      throw vmError('NOT_PERMITTED', '.snapshots cannot be renamed, replaced or moved');
    }
    if (src.vol.id !== dst.vol.id) throw vmError('CROSS_SHARE', `${from} and ${to} are in different shares; copy instead`);
    const vol = src.vol;
    const e = await this.ctx.meta.lookup(vol.id, src.parent, src.name);
    if (!e) throw vmError('NOT_FOUND', `${from} does not exist`);
    if (src.parent === dst.parent && src.name === dst.name) return;
    const moving = await this.ctx.meta.mustInode(vol.id, e.ino);
    if (moving.type === NodeType.Dir && src.parent !== dst.parent && (await this.isInside(vol.id, dst.parent, e.ino))) {
      throw vmError('INVALID_ARGUMENT', `cannot move ${from} into itself`);
    }
    const existing = await this.ctx.meta.lookup(vol.id, dst.parent, dst.name);
    if (existing && flags & RENAME_NOREPLACE) throw vmError('ALREADY_EXISTS', `${to} already exists`);
    const now = Date.now();
    const txn = new Txn();
    const inodes = new Map<number, Inode>();
    const get = async (ino: number): Promise<Inode> => inodes.get(ino) ?? (await this.ctx.meta.mustInode(vol.id, ino));
    const put = (n: Inode): void => {
      inodes.set(n.ino, n);
      txn.putInode(vol.id, n);
    };
    if (existing) {
      if (existing.ino === e.ino) return; // two names of one file: nothing to do
      const victim = await get(existing.ino);
      if (moving.type === NodeType.Dir) {
        if (victim.type !== NodeType.Dir) throw vmError('NOT_DIRECTORY', `${to} is not a directory`);
        if (await this.ctx.meta.hasChildren(vol.id, victim.ino)) throw vmError('NOT_EMPTY', `${to} is not empty`);
      } else if (victim.type === NodeType.Dir) {
        throw vmError('IS_DIRECTORY', `${to} is a directory`);
      }
      this.unlinkInode(txn, latest(txn, vol), victim, now);
      if (victim.type === NodeType.Dir) {
        const dp = await get(dst.parent);
        put({ ...dp, nlink: dp.nlink - 1 });
      }
    }
    txn.delEntry(vol.id, src.parent, src.name);
    txn.putEntry(vol.id, dst.parent, dst.name, { ino: e.ino, type: e.type });
    // A directory's ".." follows it.
    put({ ...(await get(e.ino)), ctime: now, ...(moving.type === NodeType.Dir ? { parent: dst.parent } : {}) });
    const sp = await get(src.parent);
    put({ ...sp, nlink: sp.nlink - (moving.type === NodeType.Dir && src.parent !== dst.parent ? 1 : 0), mtime: now, ctime: now });
    const dp = await get(dst.parent);
    put({ ...dp, nlink: dp.nlink + (moving.type === NodeType.Dir && src.parent !== dst.parent ? 1 : 0), mtime: now, ctime: now });
    this.ctx.meta.applyLater(txn);
  }

  /** Whether directory `dir` is `ancestor` or below it, walking ".." up to the volume's root. */
  private async isInside(vol: number, dir: number, ancestor: number): Promise<boolean> {
    for (let ino = dir, hops = 0; ; hops++) {
      if (ino === ancestor) return true;
      if (ino === ROOT_INO || hops > 100_000) return false;
      ino = await this.parentIno(vol, ino);
    }
  }

  /**
   * The directory holding directory `ino` (its ".."): the inode's `parent`, or for records
   * written before it was kept, found by scanning the volume's entries (once; then cached by
   * writing nothing: the scan is rare, needed only by NFS handles of old directories).
   */
  async parentIno(vol: number, ino: number): Promise<number> {
    if (ino === ROOT_INO) return ROOT_INO;
    const inode = await this.ctx.meta.mustInode(vol, ino);
    if (inode.parent !== undefined) return inode.parent;
    const found = await this.ctx.meta.findParent(vol, ino);
    if (found === undefined) throw vmError('NOT_FOUND', `directory ${ino} of volume ${vol} is in no directory`);
    return found;
  }

  // ---- attributes that change ----------------------------------------------------------------

  private async setattr(path: string, change: (n: Inode, now: number) => Inode, onOpen?: (f: OpenFile, now: number) => void): Promise<void> {
    await this.ctx.lock.run(async () => this.setattrAt(await this.ctx.resolve(path), path, change, onOpen));
  }

  /** Changes an inode's attributes in one transaction (the caller holds the lock). */
  async setattrAt(r: Resolved, path: string, change: (n: Inode, now: number) => Inode, onOpen?: (f: OpenFile, now: number) => void): Promise<Inode> {
    refuseReadOnly(r.readOnly, path);
    const now = Date.now();
    const txn = new Txn();
    const next = change(r.inode, now);
    const f = this.ctx.findOpen(r.vol.id, r.ino);
    if (f && onOpen) onOpen(f, now);
    const written = f ? { ...next, mtime: f.mtime, ctime: f.ctime } : next;
    txn.putInode(r.vol.id, written);
    this.ctx.meta.applyLater(txn);
    return written;
  }

  chmod(path: string, mode: number): Promise<void> {
    return this.setattr(path, (n, now) => ({ ...n, mode: mode & 0o7777, ctime: now }), (f, now) => f.setTimes(null, now));
  }

  chown(path: string, uid: number, gid: number): Promise<void> {
    return this.setattr(
      path,
      (n, now) => ({ ...n, uid: uid === -1 || uid === 0xffffffff ? n.uid : uid, gid: gid === -1 || gid === 0xffffffff ? n.gid : gid, ctime: now }),
      (f, now) => f.setTimes(null, now),
    );
  }

  utimens(path: string, atime: number | null, mtime: number | null): Promise<void> {
    return this.setattr(
      path,
      (n, now) => ({ ...n, atime: atime ?? n.atime, mtime: mtime ?? n.mtime, ctime: now }),
      (f, now) => f.setTimes(mtime, now),
    );
  }

  async truncate(path: string, size: number): Promise<void> {
    const r = await this.ctx.resolve(path);
    await this.truncateResolved(r, size, path);
  }

  async truncateResolved(r: Resolved, size: number, path: string): Promise<void> {
    refuseReadOnly(r.readOnly, path);
    if (r.inode.type === NodeType.Dir) throw vmError('IS_DIRECTORY', `${path} is a directory`);
    if (r.inode.type !== NodeType.File) throw vmError('INVALID_ARGUMENT', `${path} is not a regular file`);
    if (!Number.isSafeInteger(size) || size < 0) throw vmError('INVALID_ARGUMENT', `invalid size ${size}`);
    const f = this.ctx.openFile(r.vol.id, r.inode);
    f.truncate(size);
    if (f.handles === 0) {
      // Not open: commit now, so the change does not wait in memory for a timer.
      try {
        await f.commit(false);
      } finally {
        if (f.handles === 0 && f.idle) this.ctx.openFiles.delete(`${r.vol.id}/${r.ino}`);
      }
    }
  }

  async ftruncate(fh: number, size: number): Promise<void> {
    const h = this.handle(fh);
    if (!h.writable) throw vmError('INVALID_ARGUMENT', 'the file is not open for writing');
    if (!Number.isSafeInteger(size) || size < 0) throw vmError('INVALID_ARGUMENT', `invalid size ${size}`);
    h.file.truncate(size);
  }

  // ---- open files ---------------------------------------------------------------------------

  newHandle(vol: number, inode: Inode, writable: boolean, immutable = false): number {
    const file = this.ctx.openFile(vol, inode);
    file.handles++;
    // FUSE carries handles as uint32 and treats 0 as none.
    let fh = this.nextFh;
    while (this.handles.has(fh)) fh = fh >= 0x7fffffff ? 1 : fh + 1;
    this.nextFh = fh >= 0x7fffffff ? 1 : fh + 1;
    this.handles.set(fh, { vol, ino: inode.ino, writable, immutable, file });
    return fh;
  }

  handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (!h) throw vmError('INVALID_ARGUMENT', `file handle ${fh} is not open`);
    return h;
  }

  async open(path: string, flags: number): Promise<number> {
    return this.openResolved(await this.ctx.resolve(path), path, flags);
  }

  openResolved(r: Resolved, path: string, flags: number): number {
    if (r.inode.type === NodeType.Dir) throw vmError('IS_DIRECTORY', `${path} is a directory`);
    if (r.inode.type !== NodeType.File) throw vmError('INVALID_ARGUMENT', `${path} is not a regular file`);
    const writable = (flags & O_ACCMODE) !== O_RDONLY;
    refuseReadOnly(writable && r.readOnly, path);
    return this.newHandle(r.vol.id, r.inode, writable, r.readOnly);
  }

  /** `rescue`: damage met in the store is read from another copy (namespace/damage.ts). */
  async read(fh: number, pos: number, len: number, rescue?: ReadRescue): Promise<Buffer> {
    return this.handle(fh).file.read(pos, len, rescue);
  }

  /** read() past the store's shared read-ahead windows, for a reader with its own reads in flight. */
  async readDirect(fh: number, pos: number, len: number, rescue?: ReadRescue, into?: Buffer): Promise<Buffer> {
    return this.handle(fh).file.readDirect(pos, len, rescue, into);
  }

  /** Reads into the caller's buffer (FUSE's own): the byte count, at once when it can be. */
  readInto(fh: number, pos: number, out: Buffer): number | Promise<number> {
    return this.handle(fh).file.readInto(pos, out);
  }

  /**
   * Hands `use` the bytes read (OpenFile.readWith: a Buffer valid only during the call, not
   * to be written): true when it ran at once, a promise when it will; false when uncommitted
   * bytes lie in the range (use readInto).
   */
  readWith(fh: number, pos: number, len: number, use: (b: Buffer) => void): boolean | Promise<void> {
    return this.handle(fh).file.readWith(pos, len, use);
  }

  /** `release`: see Namespace.write (a caller that throws here has not kept buf). */
  write(fh: number, pos: number, buf: Uint8Array, owned = false, release?: () => void): void {
    const h = this.handle(fh);
    if (!h.writable) throw vmError('INVALID_ARGUMENT', 'the file is not open for writing');
    h.file.write(pos, buf, owned, release);
  }

  async flush(fh: number): Promise<void> {
    const h = this.handle(fh);
    if (!h.writable) return;
    // close(2) returns write errors: commit now so a full disk is reported here, not lost.
    await h.file.commit(false);
  }

  /**
   * Returns once the file's data and every metadata change made before the call are durable:
   * its own (chmod, rename, its creation) and, as LevelDB syncs its log in order, all others.
   */
  async fsync(fh: number): Promise<void> {
    const h = this.handle(fh);
    await h.file.commit(true);
    await this.ctx.store.sync();
  }

  /** Returns once the directory's entries (and every change made before the call) are durable. */
  async fsyncdir(path: string): Promise<void> {
    const pl = await this.ctx.place(path);
    if (pl.kind === 'vol') {
      const { inode } = await this.ctx.walk(pl.vol, pl.parts);
      if (inode.type !== NodeType.Dir) throw vmError('NOT_DIRECTORY', `${path} is not a directory`);
    }
    await this.ctx.store.sync();
  }

  async release(fh: number): Promise<void> {
    const h = this.handle(fh);
    this.handles.delete(fh);
    const f = h.file;
    f.handles--;
    if (f.handles > 0) return;
    try {
      await f.commit(false);
    } finally {
      if (f.handles === 0 && f.idle) this.ctx.openFiles.delete(`${h.vol}/${h.ino}`);
    }
  }
}

function splitDepth(path: string): number {
  return path.split('/').filter((p) => p.length > 0).length;
}

/** Snapshots never change: any change inside one is EROFS. Rename names no path (it has two). */
function refuseReadOnly(readOnly: boolean, path?: string): void {
  if (readOnly) throw vmError('READ_ONLY', path === undefined ? 'snapshots are read-only' : `${path}: snapshots are read-only`);
}
