// Snapshots, clones and fastcopy. A file's content is a segment-tree root, so copying a
// volume copies its inode and entry records, never data: cost is linear in files and flat
// in their size.
//
// A snapshot is taken at one LevelDB snapshot (an instant): open files of the share are
// committed first, so data in their write buffers is included. The copy is written under a
// new volume id that no name refers to yet, and published by one batch that adds the name; a
// crash before that leaves an unnamed volume, which the next start removes (sweepOrphans).

import { vmError } from '../errors.js';
import { type DbOp, writeBatch } from '../kv/db.js';
import type { NsContext } from './context.js';
import { ENTRY, INODE, rekeyVolume, shareNameKey, snapNameKey, volumeRange } from './keys.js';
import { Txn } from './meta.js';
import { Fastcopy } from './fastcopy.js';
import { validateName, validatePathInShare } from './names.js';
import type { Volume } from './records.js';
import type { Shares, ShareInfo } from './shares.js';

export interface SnapshotInfo {
  share: string;
  name: string;
  created: string;
  files: number;
  logicalBytes: number;
  /** The end of its retention lock (ISO time), when it has one; it may lie in the past. */
  lockedUntil?: string;
}

const COPY_BATCH = 5000;

export class Snapshots {
  constructor(
    private readonly ctx: NsContext,
    private readonly shares: Shares,
    /** Commits the open files of one volume (their write buffers). */
    private readonly flushVolume: (vol: number) => Promise<void>,
  ) {}

  private info(share: Volume, snap: Volume): SnapshotInfo {
    const out: SnapshotInfo = { share: share.name, name: snap.name, created: new Date(snap.created).toISOString(), files: snap.files, logicalBytes: snap.bytes };
    if (snap.lockedUntil !== undefined) out.lockedUntil = new Date(snap.lockedUntil).toISOString();
    return out;
  }

  private async snapVolume(share: Volume, name: string): Promise<Volume> {
    validateName('snapshot', name);
    const id = await this.ctx.meta.snapshotVolumeId(share.id, name);
    if (id === undefined) throw vmError('NOT_FOUND', `share ${share.name} has no snapshot named ${name}`);
    return this.ctx.volume(id);
  }

  async list(shareName: string): Promise<SnapshotInfo[]> {
    const share = await this.shares.volumeOf(shareName);
    const out: SnapshotInfo[] = [];
    for (const s of await this.ctx.meta.snapshotNames(share.id)) out.push(this.info(share, await this.ctx.volume(s.vol)));
    return out.sort((a, b) => a.created.localeCompare(b.created) || a.name.localeCompare(b.name));
  }

  async get(shareName: string, name: string): Promise<SnapshotInfo> {
    const share = await this.shares.volumeOf(shareName);
    return this.info(share, await this.snapVolume(share, name));
  }

  /**
   * Copies every inode and entry of `from` into a new volume and publishes it under a name.
   * `publish` adds the name key(s) to the final batch.
   */
  private async copyVolume(
    from: Volume,
    make: (id: number, src: Volume) => Volume,
    publish: (v: Volume) => Promise<DbOp[]>,
  ): Promise<Volume> {
    const db = this.ctx.store.db;
    // The instant of the copy: no namespace change can land between these two lines.
    const { snapshot, src, id, made } = await this.ctx.lock.run(async () => {
      const txn = new Txn();
      const newId = await this.shares.allocVolume(txn);
      const current = await this.ctx.volume(from.id);
      const target = make(newId, current);
      // Recorded before the copy, so a crash mid-copy leaves a volume the sweep can find.
      txn.putVolume({ ...target, name: `(unfinished ${target.name})` });
      await this.ctx.meta.apply(txn, false);
      return { snapshot: db.snapshot(), src: current, id: newId, made: target };
    });
    try {
      for (const prefix of [INODE, ENTRY]) {
        let ops: DbOp[] = [];
        for await (const [k, v] of db.iterator({ ...volumeRange(prefix, src.id), snapshot })) {
          ops.push({ type: 'put', key: rekeyVolume(k, id), value: v });
          if (ops.length >= COPY_BATCH) {
            await writeBatch(db, ops, false);
            ops = [];
          }
        }
        if (ops.length) await writeBatch(db, ops, false);
      }
    } finally {
      await snapshot.close();
    }
    try {
      return await this.ctx.lock.run(async () => {
        // publish() checks the name is still free: a racing create of the same name loses here.
        const ops = await publish(made);
        const txn = new Txn();
        txn.putVolume(made);
        for (const op of ops) txn.raw(op);
        await this.ctx.meta.apply(txn, true);
        return made;
      });
    } catch (err) {
      await this.shares.clearVolume(id);
      throw err;
    }
  }

  async create(shareName: string, name: string): Promise<SnapshotInfo> {
    validateName('snapshot', name);
    const share = await this.shares.volumeOf(shareName);
    if ((await this.ctx.meta.snapshotVolumeId(share.id, name)) !== undefined) {
      throw vmError('ALREADY_EXISTS', `share ${shareName} already has a snapshot named ${name}`);
    }
    await this.flushVolume(share.id);
    const now = Date.now();
    const snap = await this.copyVolume(
      share,
      (id, src) => ({ id, kind: 'snapshot', name, shareVol: src.id, created: now, nextIno: src.nextIno, files: src.files, bytes: src.bytes }),
      async (v) => {
        if ((await this.ctx.meta.snapshotVolumeId(share.id, name)) !== undefined) {
          throw vmError('ALREADY_EXISTS', `share ${shareName} already has a snapshot named ${name}`);
        }
        if ((await this.ctx.meta.shareVolumeId(shareName)) !== share.id) throw vmError('NOT_FOUND', `share ${shareName} was deleted meanwhile`);
        return [{ type: 'put', key: snapNameKey(share.id, name), value: u32(v.id) }];
      },
    );
    return this.info(share, snap);
  }

  async remove(shareName: string, name: string): Promise<void> {
    const share = await this.shares.volumeOf(shareName);
    const snap = await this.ctx.lock.run(async () => {
      const s = await this.snapVolume(share, name);
      this.ctx.refuseLocked(share.name, s, 'deleting it');
      this.ctx.refuseOpenFiles(s.id, `snapshot ${shareName}/${name}`);
      const txn = new Txn();
      txn.raw({ type: 'del', key: snapNameKey(share.id, name) });
      await this.ctx.meta.apply(txn, true);
      return s;
    });
    await this.shares.clearVolume(snap.id);
  }

  /**
   * Puts a retention lock on a snapshot until `until` (ms since the epoch): from then on nothing
   * deletes it, or the share holding it, before that time (ctx.refuseLocked). A lock is only ever
   * extended: an earlier `until` than the one it has leaves the later one (and says so in the
   * result). One synced batch under the namespace lock.
   */
  async lock(shareName: string, name: string, until: number): Promise<SnapshotInfo> {
    if (!Number.isSafeInteger(until) || until < 0) throw vmError('INVALID_ARGUMENT', `a lock's end must be a time in ms since the epoch, not ${String(until)}`);
    const share = await this.shares.volumeOf(shareName);
    return this.ctx.lock.run(async () => {
      const s = await this.snapVolume(share, name);
      if (s.lockedUntil !== undefined && s.lockedUntil >= until) return this.info(share, s);
      const next: Volume = { ...s, lockedUntil: until };
      const txn = new Txn();
      txn.putVolume(next);
      await this.ctx.meta.apply(txn, true);
      return this.info(share, next);
    });
  }

  /** A new writable share with the snapshot's files; it shares every segment. */
  async clone(shareName: string, snapName: string, newShare: string): Promise<ShareInfo> {
    validateName('share', newShare);
    const share = await this.shares.volumeOf(shareName);
    const snap = await this.snapVolume(share, snapName);
    if ((await this.ctx.meta.shareVolumeId(newShare)) !== undefined) throw vmError('ALREADY_EXISTS', `share ${newShare} already exists`);
    const now = Date.now();
    const made = await this.copyVolume(
      snap,
      (id, src) => ({ id, kind: 'share', name: newShare, created: now, nextIno: src.nextIno, files: src.files, bytes: src.bytes, origin: { share: shareName, snapshot: snapName } }),
      async (v) => {
        if ((await this.ctx.meta.shareVolumeId(newShare)) !== undefined) throw vmError('ALREADY_EXISTS', `share ${newShare} already exists`);
        return [{ type: 'put', key: shareNameKey(newShare), value: u32(v.id) }];
      },
    );
    return this.shares.info(made);
  }

  /**
   * Copies a file or directory of a share by reference, inside that share; `from` may also be
   * `.snapshots/<snap>/<path>` (a restore). Fastcopy (fastcopy.ts) does the work; this keeps the
   * share-relative form of the per-share route. Refuses to overwrite.
   */
  async fastcopy(shareName: string, from: string, to: string): Promise<{ share: string; from: string; to: string; logicalBytes: number }> {
    validateName('share', shareName);
    validatePathInShare(to, 'to');
    const r = await new Fastcopy(this.ctx, this.flushVolume).copy(`${shareName}/${from}`, `${shareName}/${to}`);
    const rel = (p: string) => p.slice(shareName.length + 1);
    return { share: shareName, from: rel(r.from), to: rel(r.to), logicalBytes: r.logicalBytes };
  }
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}
