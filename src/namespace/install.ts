// Installing a whole new version of a file (the transfer receiver's last step): the file at
// `<share>/<path>` points at a version built elsewhere (a recipe), in one LevelDB batch with
// the store's index entries, as the group commit does for written files. Readers see the old
// content until that batch lands and the new one after: atomic per file. Missing directories
// on the way are made in the same batch. Never through the mount.

import { vmError } from '../errors.js';
import type { FileVersion } from '../store/store.js';
import { EMPTY_VERSION } from '../store/store.js';
import type { NsContext } from './context.js';
import { Txn } from './meta.js';
import { parseSharePath, showSharePath } from './names.js';
import { type Inode, NodeType } from './records.js';
import { filesOf, volumesToVerify } from './walk.js';

export class Installer {
  constructor(
    private readonly ctx: NsContext,
    /** Commits the open files of one volume (their write buffers), so a reader sees them. */
    private readonly flushVolume: (vol: number) => Promise<void>,
  ) {}

  /** The file's current version (EMPTY if there is no such file yet), after pending writes. */
  async current(target: string): Promise<FileVersion> {
    const p = parseSharePath(target, 'target', { inSnapshot: false });
    const path = `/${[p.share, ...p.parts].join('/')}`;
    if (p.parts.length === 0) throw vmError('INVALID_ARGUMENT', `${showSharePath(p)}: name a file inside the share`);
    let r;
    try {
      r = await this.ctx.resolve(path);
    } catch (err) {
      if ((err as { code?: string }).code === 'NOT_FOUND') {
        await this.ctx.meta.shareVolumeId(p.share).then((id) => {
          if (id === undefined) throw vmError('NOT_FOUND', `share ${p.share} does not exist`);
        });
        return EMPTY_VERSION;
      }
      throw err;
    }
    if (r.inode.type !== NodeType.File) throw vmError('IS_DIRECTORY', `${showSharePath(p)} is not a regular file`);
    const f = this.ctx.findOpen(r.vol.id, r.ino);
    if (f) {
      await f.commit(true);
      return (await this.ctx.meta.mustInode(r.vol.id, r.ino)).version;
    }
    return r.inode.version;
  }

  /**
   * Points `<share>/<path>` at `version` (durable with its `deps`), creating the file and its
   * directories if needed. `base`: the version the new one was built on; if the file moved on
   * meanwhile (someone wrote it), CONFLICT and nothing changes. A file open for writing
   * through the mount is refused (CONFLICT) rather than raced.
   */
  async install(target: string, version: FileVersion, deps: Set<number>, base?: FileVersion): Promise<void> {
    const p = parseSharePath(target, 'target', { inSnapshot: false });
    if (p.parts.length === 0) throw vmError('INVALID_ARGUMENT', `${showSharePath(p)}: name a file inside the share`);
    const lost = this.ctx.store.failure(deps);
    if (lost) throw lost;
    await this.ctx.store.syncData();
    await this.ctx.lock.run(async () => {
      const volId = await this.ctx.meta.shareVolumeId(p.share);
      if (volId === undefined) throw vmError('NOT_FOUND', `share ${p.share} does not exist`);
      const vol = await this.ctx.volume(volId);
      const txn = new Txn();
      const now = Date.now();
      let dir = (await this.ctx.resolve(`/${p.share}`)).ino;
      let dirInode = await this.ctx.meta.mustInode(vol.id, dir);
      // Directories on the way, made if missing.
      for (const name of p.parts.slice(0, -1)) {
        const e = await this.ctx.meta.lookup(vol.id, dir, name);
        if (e) {
          if (e.type !== NodeType.Dir) throw vmError('NOT_DIRECTORY', `${name} in ${showSharePath(p)} is not a directory`);
          dir = e.ino;
          dirInode = await this.ctx.meta.mustInode(vol.id, dir);
          continue;
        }
        const ino = this.ctx.allocIno(txn, vol);
        const d: Inode = { ino, type: NodeType.Dir, mode: 0o755, uid: 0, gid: 0, generation: this.ctx.epoch, nlink: 2, atime: now, mtime: now, ctime: now, size: 0, version: EMPTY_VERSION, parent: dir };
        txn.putInode(vol.id, d);
        txn.putEntry(vol.id, dir, name, { ino, type: NodeType.Dir });
        txn.putInode(vol.id, { ...dirInode, nlink: dirInode.nlink + 1, mtime: now, ctime: now });
        dir = ino;
        dirInode = d;
      }
      const name = p.parts[p.parts.length - 1];
      const e = await this.ctx.meta.lookup(vol.id, dir, name);
      if (e) {
        if (e.type !== NodeType.File) throw vmError('IS_DIRECTORY', `${showSharePath(p)} is not a regular file`);
        const f = this.ctx.findOpen(vol.id, e.ino);
        if (f && (f.handles > 0 || !f.idle)) throw vmError('CONFLICT', `${showSharePath(p)} is open for writing; close it first`);
        const inode = await this.ctx.meta.mustInode(vol.id, e.ino);
        if (base && !sameVersion(inode.version, base)) throw vmError('CONFLICT', `${showSharePath(p)} changed while the transfer ran; send it again`);
        txn.putInode(vol.id, { ...inode, version, size: version.size, mtime: now, ctime: now });
        this.ctx.count(txn, vol, 0, version.size - inode.size);
        if (f) this.ctx.openFiles.delete(`${vol.id}/${e.ino}`);
      } else {
        if (base && base.size !== 0) throw vmError('CONFLICT', `${showSharePath(p)} was removed while the transfer ran; send it again`);
        const ino = this.ctx.allocIno(txn, vol);
        txn.putInode(vol.id, { ino, type: NodeType.File, mode: 0o644, uid: 0, gid: 0, generation: this.ctx.epoch, nlink: 1, atime: now, mtime: now, ctime: now, size: version.size, version });
        txn.putEntry(vol.id, dir, name, { ino, type: NodeType.File });
        const parentNow = txn.inodes.get(`${vol.id}/${dir}`) ?? dirInode;
        txn.putInode(vol.id, { ...parentNow, mtime: now, ctime: now });
        this.ctx.count(txn, vol, 1, version.size);
      }
      await this.ctx.meta.applyWith(txn, (ops) => this.ctx.store.commit(ops, deps));
    });
  }

  /** Every file version of a share and of its snapshots (the share's scope of segments). */
  async *versionsOf(share: string): AsyncGenerator<FileVersion> {
    const id = await this.ctx.meta.shareVolumeId(share);
    if (id === undefined) throw vmError('NOT_FOUND', `share ${share} does not exist`);
    await this.flushVolume(id);
    for await (const { vol, label } of volumesToVerify(this.ctx, { share })) {
      for await (const f of filesOf(this.ctx, vol, label)) yield f.version;
    }
  }

  /** Names of a share's snapshots (a change means a new restore point: scope caches refresh). */
  async snapshotNames(share: string): Promise<string[]> {
    const id = await this.ctx.meta.shareVolumeId(share);
    if (id === undefined) throw vmError('NOT_FOUND', `share ${share} does not exist`);
    return (await this.ctx.meta.snapshotNames(id)).map((s) => s.name);
  }
}

function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a.size === b.size && a.height === b.height && Buffer.compare(a.root, b.root) === 0;
}
