// POSIX operations addressed by node id (node-id.ts) rather than by path: what FUSE's low-level
// API and NFS file handles need. Beside the path API (fs-ops.ts), which keeps serving the control
// plane and tests; both run the same rules, because every change here is made by FsOps's `...At`
// methods with a parent resolved by node instead of by path.
//
// The mount's virtual directories have node ids too: the top of the mount (shares; mkdir and
// rmdir there make and remove empty shares) and each share's `.snapshots` (read-only). Every
// node of a snapshot volume is read-only.
//
// Names are one component: "." and ".." are answered by lookup (".." of a directory comes from
// its inode's `parent`, so an NFS handle of a directory reconnects after the kernel forgot it).

import { vmError } from '../errors.js';
import type { NsContext, ParentResolved, Resolved } from './context.js';
import { type Attr, type FsOps, type Owner, RENAME_NOREPLACE } from './fs-ops.js';
import { MAX_COMPONENT_BYTES, SNAPSHOTS_DIR } from './names.js';
import { MOUNT_ROOT_NODE, type NodeId, nodeOf, parseNode, snapdirNode } from './node-id.js';
import { type Inode, NodeType, ROOT_INO, S_IFREG, type Volume } from './records.js';
import type { ReadRescue } from '../store/store.js';

export { RENAME_NOREPLACE };

/** Attributes of a node: `ino` is its node id (what stat shows as st_ino). */
export interface NodeAttr extends Omit<Attr, 'ino'> {
  ino: NodeId;
  /** Stable for the node's life; another object given the same id after a crash has another. */
  generation: number;
}

export interface NodeEntry {
  name: string;
  ino: NodeId;
  type: NodeType;
  /** readdirplus only. */
  attr?: NodeAttr;
}

export interface AttrChange {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** ms since the epoch, or 'now'. */
  atime?: number | 'now';
  mtime?: number | 'now';
}

type NodePlace = { kind: 'root' } | { kind: 'snapdir'; share: Volume } | ({ kind: 'vol' } & Resolved);

const S_IFMT = 0o170000;

export class NodeOps {
  private readonly mountTime = Date.now();

  constructor(
    private readonly ctx: NsContext,
    private readonly fs: FsOps,
    private readonly shares: {
      create(name: string): Promise<unknown>;
      remove(name: string, opts: { force: boolean }): Promise<void>;
    },
  ) {}

  // ---- resolving node ids -------------------------------------------------------------------

  /** What a node id names now; NOT_FOUND once it is gone (deleted, or its share or snapshot is). */
  private async place(node: NodeId): Promise<NodePlace> {
    const ref = parseNode(node);
    if (ref.kind === 'root') return ref;
    if (ref.kind === 'snapdir') {
      const share = await this.namedVolume(ref.shareVol);
      if (!share || share.kind !== 'share') throw vmError('NOT_FOUND', `node ${node}: share volume ${ref.shareVol} does not exist`);
      return { kind: 'snapdir', share };
    }
    const vol = await this.namedVolume(ref.vol);
    if (!vol) throw vmError('NOT_FOUND', `node ${node}: volume ${ref.vol} does not exist`);
    const inode = await this.ctx.meta.getInode(vol.id, ref.ino);
    if (!inode) throw vmError('NOT_FOUND', `node ${node}: inode ${ref.ino} of ${describeVol(vol)} does not exist`);
    return { kind: 'vol', vol, readOnly: vol.kind === 'snapshot', ino: ref.ino, inode };
  }

  /** A volume a share or snapshot name refers to: not one being made or cleared. */
  private async namedVolume(id: number): Promise<Volume | undefined> {
    const vol = await this.ctx.meta.getVolume(id);
    if (!vol) return undefined;
    const named =
      vol.kind === 'share' ? await this.ctx.meta.shareVolumeId(vol.name) : vol.shareVol === undefined ? undefined : await this.ctx.meta.snapshotVolumeId(vol.shareVol, vol.name);
    return named === id ? vol : undefined;
  }

  private async resolved(node: NodeId, what: string): Promise<Resolved> {
    const pl = await this.place(node);
    if (pl.kind === 'root') throw vmError('NOT_PERMITTED', `${what}: the top of the mount holds only shares`);
    if (pl.kind === 'snapdir') throw vmError('READ_ONLY', `${what}: .snapshots of share ${pl.share.name} is read-only`);
    return pl;
  }

  /** The directory a name is made in or removed from. Call under the lock for changes. */
  private async parentAt(parent: NodeId, name: string): Promise<ParentResolved> {
    checkName(name);
    const pl = await this.place(parent);
    if (pl.kind === 'root') throw vmError('NOT_PERMITTED', `${name}: the top of the mount holds only shares; mkdir makes one`);
    if (pl.kind === 'snapdir') throw vmError('READ_ONLY', `${name}: .snapshots is read-only; snapshots are made with \`vmvault snapshot create\``);
    if (pl.inode.type !== NodeType.Dir) throw vmError('NOT_DIRECTORY', `${describeVol(pl.vol)}: inode ${pl.ino} is not a directory`);
    return { vol: pl.vol, readOnly: pl.readOnly, parent: pl.ino, parentInode: pl.inode, name, atRoot: pl.ino === ROOT_INO };
  }

  // ---- attributes ---------------------------------------------------------------------------

  private attrOf(vol: Volume, inode: Inode): NodeAttr {
    return { ...this.fs.attrOf({ inode, vol: vol.id }), ino: nodeOf(vol.id, inode.ino), generation: inode.generation ?? 0 };
  }

  private virtualDir(ino: NodeId, mode: number, nlink: number, time: number): NodeAttr {
    return { ino, generation: 0, type: NodeType.Dir, mode, uid: 0, gid: 0, nlink, size: 0, atime: time, mtime: time, ctime: time };
  }

  private async attrOfPlace(node: NodeId, pl: NodePlace): Promise<NodeAttr> {
    if (pl.kind === 'root') return this.virtualDir(MOUNT_ROOT_NODE, 0o040755, 2 + (await this.ctx.meta.shareNames()).length, this.mountTime);
    if (pl.kind === 'snapdir') return this.virtualDir(node, 0o040555, 2 + (await this.ctx.meta.snapshotNames(pl.share.id)).length, pl.share.created);
    return this.attrOf(pl.vol, pl.inode);
  }

  /**
   * Attributes of a node. A file unlinked while open has no inode any more: with its handle (or
   * any open handle of it) it answers what the open file knows, nlink 0.
   */
  async getattr(node: NodeId, fh?: number): Promise<NodeAttr> {
    let pl: NodePlace;
    try {
      pl = await this.place(node);
    } catch (err) {
      const ref = parseNode(node);
      const f = ref.kind === 'vol' ? this.ctx.findOpen(ref.vol, ref.ino) : undefined;
      if (ref.kind !== 'vol' || (fh === undefined && !(f && f.handles > 0))) throw err;
      const a = fh !== undefined ? await this.fs.fgetattr(fh) : { type: NodeType.File, mode: S_IFREG, uid: 0, gid: 0, nlink: 0, size: f!.size, atime: f!.mtime, mtime: f!.mtime, ctime: f!.ctime };
      return { ...a, ino: node, generation: 0 };
    }
    return this.attrOfPlace(node, pl);
  }

  /** The node's "..": the top of the mount for itself and for share roots. */
  async parent(node: NodeId): Promise<NodeId> {
    const pl = await this.place(node);
    if (pl.kind === 'root') return MOUNT_ROOT_NODE;
    if (pl.kind === 'snapdir') return nodeOf(pl.share.id, ROOT_INO);
    if (pl.inode.type !== NodeType.Dir) throw vmError('NOT_DIRECTORY', `node ${node} is not a directory`);
    if (pl.ino === ROOT_INO) return pl.vol.kind === 'snapshot' && pl.vol.shareVol !== undefined ? snapdirNode(pl.vol.shareVol) : MOUNT_ROOT_NODE;
    return nodeOf(pl.vol.id, await this.fs.parentIno(pl.vol.id, pl.ino));
  }

  async lookup(parent: NodeId, name: string): Promise<NodeAttr> {
    if (name === '.') return this.getattr(parent);
    if (name === '..') return this.getattr(await this.parent(parent));
    checkName(name);
    const pl = await this.place(parent);
    if (pl.kind === 'root') {
      const id = await this.ctx.meta.shareVolumeId(name);
      if (id === undefined) throw vmError('NOT_FOUND', `no share named ${name}`);
      return this.getattr(nodeOf(id, ROOT_INO));
    }
    if (pl.kind === 'snapdir') {
      const id = await this.ctx.meta.snapshotVolumeId(pl.share.id, name);
      if (id === undefined) throw vmError('NOT_FOUND', `share ${pl.share.name} has no snapshot named ${name}`);
      return this.getattr(nodeOf(id, ROOT_INO));
    }
    if (pl.inode.type !== NodeType.Dir) throw vmError('NOT_DIRECTORY', `${describeVol(pl.vol)}: inode ${pl.ino} is not a directory`);
    if (pl.ino === ROOT_INO && pl.vol.kind === 'share' && name === SNAPSHOTS_DIR) return this.getattr(snapdirNode(pl.vol.id));
    const e = await this.ctx.meta.lookup(pl.vol.id, pl.ino, name);
    if (!e) throw vmError('NOT_FOUND', `${name} does not exist in ${describeVol(pl.vol)}, directory inode ${pl.ino}`);
    return this.attrOf(pl.vol, await this.ctx.meta.mustInode(pl.vol.id, e.ino));
  }

  async readlink(node: NodeId): Promise<string> {
    const r = await this.resolved(node, `node ${node}`);
    if (r.inode.type !== NodeType.Symlink) throw vmError('INVALID_ARGUMENT', `node ${node} is not a symbolic link`);
    return r.inode.target ?? '';
  }

  /** A directory's entries, "." and ".." first; with `plus`, each with its attributes. */
  async readdir(node: NodeId, plus = false): Promise<NodeEntry[]> {
    const pl = await this.place(node);
    const out: NodeEntry[] = [
      { name: '.', ino: node, type: NodeType.Dir },
      { name: '..', ino: await this.parent(node), type: NodeType.Dir },
    ];
    if (pl.kind === 'root') {
      for (const s of await this.ctx.meta.shareNames()) out.push({ name: s.name, ino: nodeOf(s.vol, ROOT_INO), type: NodeType.Dir });
    } else if (pl.kind === 'snapdir') {
      for (const s of await this.ctx.meta.snapshotNames(pl.share.id)) out.push({ name: s.name, ino: nodeOf(s.vol, ROOT_INO), type: NodeType.Dir });
    } else {
      if (pl.inode.type !== NodeType.Dir) throw vmError('NOT_DIRECTORY', `node ${node} is not a directory`);
      if (pl.ino === ROOT_INO && pl.vol.kind === 'share') out.push({ name: SNAPSHOTS_DIR, ino: snapdirNode(pl.vol.id), type: NodeType.Dir });
      for (const e of await this.ctx.meta.listDir(pl.vol.id, pl.ino)) out.push({ name: e.name, ino: nodeOf(pl.vol.id, e.entry.ino), type: e.entry.type });
    }
    if (plus) {
      for (const e of out) {
        // An entry removed between the listing and here is left without attributes.
        e.attr = await this.getattr(e.ino).catch(() => undefined);
      }
    }
    return out;
  }

  // ---- changes ------------------------------------------------------------------------------

  async mkdir(parent: NodeId, name: string, mode: number, owner?: Owner): Promise<NodeAttr> {
    if (parent === MOUNT_ROOT_NODE) {
      checkName(name);
      await this.shares.create(name);
      return this.lookup(parent, name);
    }
    return this.make(parent, name, NodeType.Dir, mode, undefined, owner);
  }

  /** Regular files only: the namespace keeps no devices, FIFOs or sockets. */
  async mknod(parent: NodeId, name: string, mode: number, owner?: Owner): Promise<NodeAttr> {
    const fmt = mode & S_IFMT;
    if (fmt !== 0 && fmt !== S_IFREG) throw vmError('NOT_PERMITTED', `${name}: only regular files, directories and symbolic links can be made here`);
    return this.make(parent, name, NodeType.File, mode, undefined, owner);
  }

  async symlink(parent: NodeId, name: string, target: string, owner?: Owner): Promise<NodeAttr> {
    return this.make(parent, name, NodeType.Symlink, 0o777, { target, size: Buffer.byteLength(target) }, owner);
  }

  private async make(parent: NodeId, name: string, type: NodeType, mode: number, extra: Partial<Inode> | undefined, owner?: Owner): Promise<NodeAttr> {
    return this.ctx.lock.run(async () => {
      const p = await this.parentAt(parent, name);
      const { vol, inode } = await this.fs.addNodeAt(p, label(p), type, mode, extra, owner);
      return this.attrOf(vol, inode);
    });
  }

  /** Creates and opens a regular file: its attributes and an open handle. */
  async create(parent: NodeId, name: string, mode: number, flags: number, owner?: Owner): Promise<{ attr: NodeAttr; fh: number }> {
    return this.ctx.lock.run(async () => {
      const p = await this.parentAt(parent, name);
      const { vol, inode } = await this.fs.addNodeAt(p, label(p), NodeType.File, mode, undefined, owner);
      const fh = this.fs.newHandle(vol.id, inode, (flags & 3) !== 0);
      return { attr: this.attrOf(vol, inode), fh };
    });
  }

  async link(node: NodeId, newParent: NodeId, newName: string): Promise<NodeAttr> {
    return this.ctx.lock.run(async () => {
      const src = await this.resolved(node, `node ${node}`);
      const p = await this.parentAt(newParent, newName);
      const inode = await this.fs.linkAt(src, p, `${describeVol(src.vol)}, inode ${src.ino}`, label(p));
      return this.attrOf(p.vol, inode);
    });
  }

  async unlink(parent: NodeId, name: string): Promise<void> {
    await this.ctx.lock.run(async () => {
      const p = await this.parentAt(parent, name);
      await this.fs.unlinkAt(p, label(p));
    });
  }

  async rmdir(parent: NodeId, name: string): Promise<void> {
    if (parent === MOUNT_ROOT_NODE) {
      checkName(name);
      await this.shares.remove(name, { force: false });
      return;
    }
    const pl = await this.place(parent);
    if (pl.kind === 'snapdir') throw vmError('NOT_PERMITTED', `${name} is a snapshot; delete it with \`vmvault snapshot delete\``);
    await this.ctx.lock.run(async () => {
      const p = await this.parentAt(parent, name);
      await this.fs.rmdirAt(p, label(p));
    });
  }

  async rename(parent: NodeId, name: string, newParent: NodeId, newName: string, flags = 0): Promise<void> {
    if (parent === MOUNT_ROOT_NODE || newParent === MOUNT_ROOT_NODE) throw vmError('NOT_PERMITTED', 'shares cannot be renamed through the mount');
    await this.ctx.lock.run(async () => {
      const src = await this.parentAt(parent, name);
      const dst = await this.parentAt(newParent, newName);
      await this.fs.renameAt(src, dst, label(src), label(dst), flags);
    });
  }

  /** Applies `change` (size first, then owner, mode and times in one transaction). */
  async setattr(node: NodeId, change: AttrChange, fh?: number): Promise<NodeAttr> {
    const what = `node ${node}`;
    if (change.size !== undefined) {
      if (fh !== undefined && this.fs.handle(fh).writable) await this.fs.ftruncate(fh, change.size);
      else await this.fs.truncateResolved(await this.resolved(node, what), change.size, what);
    }
    const { mode, uid, gid, atime, mtime } = change;
    if (mode !== undefined || uid !== undefined || gid !== undefined || atime !== undefined || mtime !== undefined) {
      await this.ctx.lock.run(async () => {
        const r = await this.resolved(node, what);
        const at = atime === 'now' ? Date.now() : atime;
        const mt = mtime === 'now' ? Date.now() : mtime;
        await this.fs.setattrAt(
          r,
          what,
          (n, now) => ({ ...n, mode: mode === undefined ? n.mode : mode & 0o7777, uid: uid ?? n.uid, gid: gid ?? n.gid, atime: at ?? n.atime, mtime: mt ?? n.mtime, ctime: now }),
          (f, now) => f.setTimes(mt ?? null, now),
        );
      });
    }
    return this.getattr(node, fh);
  }

  async open(node: NodeId, flags: number): Promise<number> {
    const pl = await this.place(node);
    if (pl.kind !== 'vol') throw vmError('IS_DIRECTORY', `node ${node} is a directory`);
    return this.fs.openResolved(pl, `${describeVol(pl.vol)}, inode ${pl.ino}`, flags);
  }

  /**
   * Gives the file open as `fhOut` (empty, open for writing) the whole content of the file open
   * as `fhIn`, by reference: instant and free of space, in any share. False when it cannot be
   * done that way (the target is not empty or has writes pending; the source changed meanwhile):
   * the caller copies instead.
   */
  async cloneContent(fhIn: number, fhOut: number): Promise<boolean> {
    const src = this.fs.handle(fhIn).file;
    const out = this.fs.handle(fhOut);
    if (!out.writable) throw vmError('INVALID_ARGUMENT', 'the target is not open for writing');
    if (out.file === src || out.file.size !== 0) return false;
    // The source's buffered bytes become part of its version first.
    await src.commit(true);
    if (src.hasChanges) return false;
    if (!out.file.adopt(src.base)) return false;
    await out.file.commit(false);
    return true;
  }

  /**
   * SEEK_DATA / SEEK_HOLE on an open file, from its segment tree: zero runs the store keeps
   * (never stored) are the holes, and the end of the file is one. Buffered writes are built into
   * the tree first (not made durable). -1: no data at or after `offset` (the caller's ENXIO).
   */
  async seek(fh: number, offset: number, what: 'data' | 'hole', rescue?: ReadRescue): Promise<number> {
    const f = this.fs.handle(fh).file;
    if (f.hasChanges) await f.commit(false);
    const v = f.base;
    if (offset >= f.size) return -1;
    // `rescue` (a restore from the best copy): a damaged tree node is read from another copy.
    for await (const { entry, start } of this.ctx.store.view(v, rescue).leaves(offset, v.size)) {
      if (entry.zero === (what === 'hole')) return Math.max(offset, start);
    }
    // Past the tree (a size not yet committed) reads as zeros: a hole.
    if (what === 'hole') return Math.max(offset, Math.min(v.size, f.size));
    return -1;
  }

  /**
   * The [start, end) runs of an open file that hold data, ascending: seek() for the whole file
   * in one walk of its segment tree (the nodes of each level fetched in batches). The rest,
   * and anything past the tree (a size not yet committed), reads as zeros. `from`/`to`: only
   * the runs within that window, clipped to it (a walk of the nodes that overlap it).
   */
  async dataRuns(fh: number, rescue?: ReadRescue, from = 0, to = Number.MAX_SAFE_INTEGER): Promise<Array<{ start: number; end: number }>> {
    const f = this.fs.handle(fh).file;
    if (f.hasChanges) await f.commit(false);
    const v = f.base;
    return this.ctx.store.view(v, rescue).dataRuns(from, Math.min(v.size, f.size, to));
  }

  /**
   * The zero runs of at least `minLen` bytes within [from, to) of an open file that reads as
   * its base version (nothing buffered: undefined otherwise), as (start, end) pairs, with the
   * file's change count taken before the walk: they hold only while `changes` still equals it.
   */
  async zeroRuns(fh: number, from: number, to: number, minLen: number): Promise<{ changes: number; runs: number[] } | undefined> {
    const f = this.fs.handle(fh).file;
    if (!f.clean) return undefined;
    const changes = f.changes;
    const v = f.base;
    to = Math.min(to, v.size);
    const runs: number[] = [];
    let at = from;
    const hole = (a: number, b: number) => {
      if (b - a >= minLen) runs.push(a, b);
    };
    for (const d of await this.ctx.store.view(v).dataRuns(from, to)) {
      hole(at, d.start);
      at = d.end;
    }
    hole(at, to);
    return { changes, runs };
  }

  /** Returns once the directory's entries (and every change made before the call) are durable. */
  async fsyncdir(node: NodeId): Promise<void> {
    await this.opendir(node);
    await this.ctx.store.sync();
  }

  /** Checks that a node is a directory that can be listed. */
  async opendir(node: NodeId): Promise<void> {
    const pl = await this.place(node);
    if (pl.kind === 'vol' && pl.inode.type !== NodeType.Dir) throw vmError('NOT_DIRECTORY', `node ${node} is not a directory`);
  }
}

function checkName(name: string): void {
  if (name.length === 0 || name.includes('/') || name.includes('\0') || name === '.' || name === '..') {
    throw vmError('INVALID_ARGUMENT', `${JSON.stringify(name).slice(0, 60)} is not a file name`);
  }
  if (Buffer.byteLength(name, 'utf8') > MAX_COMPONENT_BYTES) throw vmError('NAME_TOO_LONG', `${name.slice(0, 40)}...: names are limited to ${MAX_COMPONENT_BYTES} bytes`);
}

function describeVol(v: Volume): string {
  return `${v.kind} ${v.name}`;
}

/** A name in messages: "vm1.vmdk in share vms". */
function label(p: ParentResolved): string {
  return `${p.name} in ${describeVol(p.vol)}${p.atRoot ? '' : `, directory inode ${p.parent}`}`;
}
