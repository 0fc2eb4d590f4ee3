// What the parts of the namespace share: the store, the metadata, the one lock that orders
// metadata changes, the open files, and path resolution.

import { vmError } from '../errors.js';
import { Mutex } from '../kv/mutex.js';
import type { SegmentStore } from '../store/store.js';
import type { FileVersion } from '../store/store.js';
import { GroupCommit } from './group-commit.js';
import { Meta, Txn } from './meta.js';
import { MAX_COMPONENT_BYTES, SNAPSHOTS_DIR } from './names.js';
import { type CommitTarget, OpenFile } from './open-file.js';
import { type Inode, NodeType, ROOT_INO, type Volume } from './records.js';

/** Where a path points, before looking inside a volume. */
export type Place =
  | { kind: 'root' }
  | { kind: 'snapdir'; share: Volume }
  | { kind: 'vol'; vol: Volume; readOnly: boolean; parts: string[]; label: string; root: string };

export interface Resolved {
  vol: Volume;
  readOnly: boolean;
  ino: number;
  inode: Inode;
}

export interface ParentResolved {
  vol: Volume;
  readOnly: boolean;
  parent: number;
  parentInode: Inode;
  name: string;
  /** The parent is the share's (or snapshot's) root directory. */
  atRoot: boolean;
}

const EPOCH_COUNTER = 'epoch';

export class NsContext implements CommitTarget {
  readonly meta: Meta;
  readonly lock = new Mutex();
  readonly openFiles = new Map<string, OpenFile>();
  readonly group: GroupCommit = new GroupCommit(this);
  /**
   * This run's epoch: bumped and synced by Namespace.open before anything is created, written
   * into every new inode as its generation (records.ts). 0 until then.
   */
  epoch = 0;

  /**
   * The clock retention locks are judged by (ms since the epoch). Injectable so tests do not
   * wait; the appliance uses the wall clock. A clock set backwards only makes locks last longer.
   */
  readonly now: () => number;

  constructor(readonly store: SegmentStore, now: () => number = Date.now) {
    this.meta = new Meta(store.db);
    this.now = now;
  }

  /** LOCKED when the snapshot volume `snap` of share `share` is under a retention lock now. */
  refuseLocked(share: string, snap: Volume, doing: string): void {
    const until = snap.lockedUntil;
    if (until === undefined || this.now() >= until) return;
    throw vmError(
      'LOCKED',
      `snapshot ${share}/${snap.name} is under a retention lock until ${new Date(until).toISOString()}; ${doing} is refused until then (compliance mode: no flag, token or admin can lift it)`,
      { share, snapshot: snap.name, lockedUntil: new Date(until).toISOString() },
    );
  }

  // ---- path resolution ------------------------------------------------------------------

  /** Splits a mount path and finds the volume it is in. */
  async place(path: string): Promise<Place> {
    const parts = splitPath(path);
    if (parts.length === 0) return { kind: 'root' };
    const shareVol = await this.meta.shareVolumeId(parts[0]);
    if (shareVol === undefined) throw vmError('NOT_FOUND', `no share named ${parts[0]}`);
    const share = await this.volume(shareVol);
    if (parts[1] !== SNAPSHOTS_DIR) return { kind: 'vol', vol: share, readOnly: false, parts: parts.slice(1), label: `share ${share.name}`, root: share.name };
    if (parts.length === 2) return { kind: 'snapdir', share };
    const snapVol = await this.meta.snapshotVolumeId(share.id, parts[2]);
    if (snapVol === undefined) throw vmError('NOT_FOUND', `share ${share.name} has no snapshot named ${parts[2]}`);
    const snap = await this.volume(snapVol);
    return { kind: 'vol', vol: snap, readOnly: true, parts: parts.slice(3), label: `snapshot ${share.name}/${snap.name}`, root: `${share.name}/${SNAPSHOTS_DIR}/${snap.name}` };
  }

  async volume(id: number): Promise<Volume> {
    const v = await this.meta.getVolume(id);
    if (!v) throw vmError('IO', `volume ${id} is named but missing; run verify`);
    return v;
  }

  /** Walks `parts` from the volume root; `root` names that root in messages ("vms/nosuch does not exist"). */
  async walk(vol: Volume, parts: string[], root = vol.name): Promise<{ ino: number; inode: Inode }> {
    let ino = ROOT_INO;
    let inode = await this.meta.mustInode(vol.id, ino);
    for (const [i, p] of parts.entries()) {
      const shown = () => [root, ...parts.slice(0, i + 1)].join('/');
      if (inode.type !== NodeType.Dir) throw vmError('NOT_DIRECTORY', `${shown()}: ${[root, ...parts.slice(0, i)].join('/')} is not a directory`);
      const e = await this.meta.lookup(vol.id, ino, p);
      if (!e) throw vmError('NOT_FOUND', `${shown()} does not exist`);
      ino = e.ino;
      inode = await this.meta.mustInode(vol.id, ino);
    }
    return { ino, inode };
  }

  async resolve(path: string): Promise<Resolved> {
    const pl = await this.place(path);
    if (pl.kind !== 'vol') throw vmError('INVALID_ARGUMENT', `${path} is not inside a share`);
    const { ino, inode } = await this.walk(pl.vol, pl.parts, pl.root);
    return { vol: pl.vol, readOnly: pl.readOnly, ino, inode };
  }

  /** The directory a new or removed name lives in. */
  async resolveParent(path: string): Promise<ParentResolved> {
    const pl = await this.place(path);
    if (pl.kind !== 'vol' || pl.parts.length === 0) throw vmError('NOT_PERMITTED', `${path}: not a place for a file or directory`);
    const name = pl.parts[pl.parts.length - 1];
    if (Buffer.byteLength(name, 'utf8') > MAX_COMPONENT_BYTES) throw vmError('NAME_TOO_LONG', `${name.slice(0, 40)}...: names are limited to ${MAX_COMPONENT_BYTES} bytes`);
    const { ino, inode } = await this.walk(pl.vol, pl.parts.slice(0, -1), pl.root);
    if (inode.type !== NodeType.Dir) throw vmError('NOT_DIRECTORY', `the parent of ${path} is not a directory`);
    return { vol: pl.vol, readOnly: pl.readOnly, parent: ino, parentInode: inode, name, atRoot: pl.parts.length === 1 };
  }

  // ---- open files ------------------------------------------------------------------------

  openFile(vol: number, inode: Inode): OpenFile {
    const key = `${vol}/${inode.ino}`;
    let f = this.openFiles.get(key);
    if (!f) {
      f = new OpenFile(vol, inode.ino, inode.version, { mtime: inode.mtime, ctime: inode.ctime }, this.store, this);
      this.openFiles.set(key, f);
    }
    return f;
  }

  findOpen(vol: number, ino: number): OpenFile | undefined {
    return this.openFiles.get(`${vol}/${ino}`);
  }

  /** Refuses removing a volume while descriptors are open on it: they would read cleared records. */
  refuseOpenFiles(vol: number, what: string): void {
    for (const f of this.openFiles.values()) {
      if (f.vol === vol && f.handles > 0) throw vmError('CONFLICT', `${what} has open files; close them first`);
    }
  }

  /** CommitTarget: the group commit makes a version durable and records it in the inode. */
  record(f: OpenFile, version: FileVersion, deps: Set<number>, now: boolean): Promise<void> {
    return this.group.add(f, version, deps, now);
  }

  /** Allocates the next inode number of a volume inside a transaction. */
  allocIno(txn: Txn, vol: Volume): number {
    const cur = latest(txn, vol);
    txn.putVolume({ ...cur, nextIno: cur.nextIno + 1 });
    return cur.nextIno;
  }

  /** Bumps the epoch counter, synced, and makes the new value this run's (Namespace.open). */
  async startEpoch(): Promise<void> {
    const next = (await this.meta.counter(EPOCH_COUNTER, 0)) + 1;
    const txn = new Txn();
    txn.raw(this.meta.counterOp(EPOCH_COUNTER, next));
    await this.meta.apply(txn, true);
    this.epoch = next;
  }

  /** Adjusts a volume's file and byte counters inside a transaction. */
  count(txn: Txn, vol: Volume, files: number, bytes: number): void {
    if (files === 0 && bytes === 0) return;
    const cur = latest(txn, vol);
    txn.putVolume({ ...cur, files: cur.files + files, bytes: cur.bytes + bytes });
  }
}

/** The volume record as this transaction has it so far. */
export function latest(txn: Txn, vol: Volume): Volume {
  return txn.volumes.get(vol.id) ?? vol;
}

export function splitPath(path: string): string[] {
  if (!path.startsWith('/')) throw vmError('INVALID_ARGUMENT', `path ${path} is not absolute`);
  const parts = path.split('/').filter((p) => p.length > 0);
  for (const p of parts) {
    if (p === '.' || p === '..') throw vmError('INVALID_ARGUMENT', `path ${path} is not canonical`);
    if (p.includes('\0')) throw vmError('INVALID_ARGUMENT', 'path contains a NUL byte');
  }
  return parts;
}
