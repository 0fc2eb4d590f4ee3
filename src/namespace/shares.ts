// Shares: the top-level directories of the mount, each a volume of its own.

import { vmError } from '../errors.js';
import { EMPTY_VERSION } from '../store/store.js';
import type { NsContext } from './context.js';
import { shareNameKey, volumeRange, INODE, ENTRY, volumeKey, snapNameKey } from './keys.js';
import { Txn } from './meta.js';
import { validateName } from './names.js';
import { NodeType, ROOT_INO, type Volume } from './records.js';

export interface ShareInfo {
  name: string;
  created: string;
  files: number;
  logicalBytes: number;
  snapshots: number;
  origin?: { share: string; snapshot: string };
}

const VOL_COUNTER = 'nextVolume';

export class Shares {
  constructor(private readonly ctx: NsContext) {}

  async list(): Promise<ShareInfo[]> {
    const out: ShareInfo[] = [];
    for (const { vol } of await this.ctx.meta.shareNames()) out.push(await this.info(await this.ctx.volume(vol)));
    return out;
  }

  async info(v: Volume): Promise<ShareInfo> {
    const snaps = await this.ctx.meta.snapshotNames(v.id);
    return {
      name: v.name,
      created: new Date(v.created).toISOString(),
      files: v.files,
      logicalBytes: v.bytes,
      snapshots: snaps.length,
      ...(v.origin ? { origin: v.origin } : {}),
    };
  }

  async volumeOf(name: string): Promise<Volume> {
    validateName('share', name);
    const id = await this.ctx.meta.shareVolumeId(name);
    if (id === undefined) throw vmError('NOT_FOUND', `no share named ${name}`);
    return this.ctx.volume(id);
  }

  async get(name: string): Promise<ShareInfo> {
    return this.info(await this.volumeOf(name));
  }

  async snapshotNames(share: Volume): Promise<string[]> {
    return (await this.ctx.meta.snapshotNames(share.id)).map((s) => s.name);
  }

  /** A new volume id, counted in `txn`. */
  async allocVolume(txn: Txn): Promise<number> {
    const id = await this.ctx.meta.counter(VOL_COUNTER, 1);
    txn.raw(this.ctx.meta.counterOp(VOL_COUNTER, id + 1));
    return id;
  }

  async create(name: string): Promise<ShareInfo> {
    validateName('share', name);
    return this.ctx.lock.run(async () => {
      if ((await this.ctx.meta.shareVolumeId(name)) !== undefined) throw vmError('ALREADY_EXISTS', `share ${name} already exists`);
      const txn = new Txn();
      const id = await this.allocVolume(txn);
      const now = Date.now();
      const vol: Volume = { id, kind: 'share', name, created: now, nextIno: ROOT_INO + 1, files: 0, bytes: 0 };
      txn.putVolume(vol);
      txn.putInode(id, { ino: ROOT_INO, type: NodeType.Dir, mode: 0o755, uid: 0, gid: 0, nlink: 2, atime: now, mtime: now, ctime: now, size: 0, version: EMPTY_VERSION });
      const v = Buffer.allocUnsafe(4);
      v.writeUInt32BE(id, 0);
      txn.raw({ type: 'put', key: shareNameKey(name), value: v });
      await this.ctx.meta.apply(txn, true);
      return this.info(vol);
    });
  }

  /**
   * Removes a share. Refused while it holds files or snapshots unless forced; refused while
   * files in it are open. The name goes first (atomically); the volume's records are cleared
   * afterwards, and a crash in between is finished by the next start (sweepOrphans).
   */
  async remove(name: string, opts: { force: boolean }): Promise<void> {
    validateName('share', name);
    const doomed = await this.ctx.lock.run(async () => {
      const vol = await this.volumeOf(name);
      this.ctx.refuseOpenFiles(vol.id, `share ${name}`);
      const snaps = await this.ctx.meta.snapshotNames(vol.id);
      if (!opts.force) {
        if (await this.ctx.meta.hasChildren(vol.id, ROOT_INO)) throw vmError('NOT_EMPTY', `share ${name} is not empty; delete its files or use --force`);
        if (snaps.length > 0) throw vmError('NOT_EMPTY', `share ${name} has ${snaps.length} snapshot(s); delete them or use --force`);
      }
      const txn = new Txn();
      txn.raw({ type: 'del', key: shareNameKey(name) });
      for (const s of snaps) txn.raw({ type: 'del', key: snapNameKey(vol.id, s.name) });
      await this.ctx.meta.apply(txn, true);
      for (const f of [...this.ctx.openFiles.entries()]) if (f[1].vol === vol.id) this.ctx.openFiles.delete(f[0]);
      return [vol.id, ...snaps.map((s) => s.vol)];
    });
    for (const id of doomed) await this.clearVolume(id);
  }

  /** Deletes every record of a volume that no name refers to any more. */
  async clearVolume(id: number): Promise<void> {
    await this.ctx.store.db.clear(volumeRange(ENTRY, id));
    await this.ctx.store.db.clear(volumeRange(INODE, id));
    await this.ctx.store.db.del(volumeKey(id));
    this.ctx.meta.forgetVolume(id);
  }

  /** Finishes removals a crash interrupted: volumes no share or snapshot name points at. */
  async sweepOrphans(): Promise<number> {
    const named = new Set<number>();
    for (const s of await this.ctx.meta.shareNames()) {
      named.add(s.vol);
      for (const p of await this.ctx.meta.snapshotNames(s.vol)) named.add(p.vol);
    }
    const orphans: number[] = [];
    const r = { gte: volumeKey(0), lt: volumeKey(0xffffffff) };
    for await (const k of this.ctx.store.db.keys(r)) {
      const id = k.readUInt32BE(1);
      if (!named.has(id)) orphans.push(id);
    }
    for (const id of orphans) await this.clearVolume(id);
    return orphans.length;
  }
}
