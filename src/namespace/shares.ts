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

export interface RemoveShareOptions {
  /** Delete the share's files too. */
  force: boolean;
  /** Delete its snapshots too (never implied by force). */
  deleteSnapshots?: boolean;
}

/** At most this many snapshot names in a refusal; the rest are counted. */
const NAMES_SHOWN = 10;

function refuseUnlessAllowed(vol: Volume, hasFiles: boolean, snaps: string[], opts: RemoveShareOptions): void {
  const files = vol.files === 0 ? 'empty directories' : `${vol.files} ${vol.files === 1 ? 'file' : 'files'}`;
  if (snaps.length > 0 && opts.deleteSnapshots !== true) {
    const shown = snaps.slice(0, NAMES_SHOWN).join(', ') + (snaps.length > NAMES_SHOWN ? ` and ${snaps.length - NAMES_SHOWN} more` : '');
    const count = `${snaps.length} ${snaps.length === 1 ? 'snapshot' : 'snapshots'}`;
    const alsoFiles = hasFiles ? ` and its ${files}` : '';
    const flags = hasFiles ? '--force --delete-snapshots' : '--delete-snapshots';
    const why = opts.force ? '--force deletes files, not snapshots; ' : '';
    throw vmError('NOT_EMPTY', `share ${vol.name} has ${count} (${shown}); ${why}to delete the share with its snapshots${alsoFiles}, pass ${flags}`, {
      snapshots: snaps.length,
    });
  }
  if (hasFiles && !opts.force) throw vmError('NOT_EMPTY', `share ${vol.name} is not empty (${files}); delete them, or pass --force to delete the share with them`);
}

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
      txn.putInode(id, { ino: ROOT_INO, type: NodeType.Dir, mode: 0o755, uid: 0, gid: 0, nlink: 2, atime: now, mtime: now, ctime: now, size: 0, version: EMPTY_VERSION, generation: this.ctx.epoch });
      const v = Buffer.allocUnsafe(4);
      v.writeUInt32BE(id, 0);
      txn.raw({ type: 'put', key: shareNameKey(name), value: v });
      await this.ctx.meta.apply(txn, true);
      this.ctx.meta.madeEmptyDir(id, ROOT_INO);
      return this.info(vol);
    });
  }

  /**
   * Removes a share. Refused while it holds files unless `force`, and while it has snapshots
   * unless `deleteSnapshots` (force alone never deletes restore points: the refusal names
   * them); refused while files in it are open. The name goes first (atomically); the volume's
   * records are cleared afterwards, and a crash in between is finished by the next start
   * (sweepOrphans).
   */
  async remove(name: string, opts: RemoveShareOptions): Promise<void> {
    validateName('share', name);
    const doomed = await this.ctx.lock.run(async () => {
      const vol = await this.volumeOf(name);
      this.ctx.refuseOpenFiles(vol.id, `share ${name}`);
      const snaps = await this.ctx.meta.snapshotNames(vol.id);
      // Retention locks (the policies issue) refuse here, before any flag is looked at: a
      // locked snapshot outlives --force and --delete-snapshots alike.
      await this.refuseProtected(name, snaps.map((s) => s.vol));
      const hasFiles = await this.ctx.meta.hasChildren(vol.id, ROOT_INO);
      refuseUnlessAllowed(vol, hasFiles, snaps.map((s) => s.name), opts);
      const txn = new Txn();
      txn.raw({ type: 'del', key: shareNameKey(name) });
      for (const s of snaps) txn.raw({ type: 'del', key: snapNameKey(vol.id, s.name) });
      await this.ctx.meta.apply(txn, true);
      for (const f of [...this.ctx.openFiles.entries()]) if (f[1].vol === vol.id) this.ctx.openFiles.delete(f[0]);
      return [vol.id, ...snaps.map((s) => s.vol)];
    });
    for (const id of doomed) await this.clearVolume(id);
  }

  /**
   * Retention locks: LOCKED when any of the snapshot volumes `snapshots` may not be deleted
   * yet, whatever the caller's flags (--force, --delete-snapshots). Names the lock that ends last.
   */
  async refuseProtected(share: string, snapshots: number[]): Promise<void> {
    let last: Volume | undefined;
    let count = 0;
    for (const id of snapshots) {
      const v = await this.ctx.volume(id);
      if (v.lockedUntil === undefined || this.ctx.now() >= v.lockedUntil) continue;
      count++;
      if (last === undefined || v.lockedUntil > last.lockedUntil!) last = v;
    }
    if (last === undefined) return;
    const more = count > 1 ? ` (one of ${count} locked snapshots; this lock ends last)` : '';
    this.ctx.refuseLocked(share, last, `deleting share ${share}${more}`);
  }

  /** Deletes every record of a volume that no name refers to any more. */
  async clearVolume(id: number): Promise<void> {
    // No queued change of this volume may land after the clear (kv/db.ts, writeLater).
    await this.ctx.meta.settled();
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
