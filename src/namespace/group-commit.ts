// Group commit of file versions. Closing a file must not cost two fsyncs (container and
// LevelDB): an rsync of ten thousand small files would take minutes. Versions built by
// commits without fsync wait here for at most GROUP_DELAY_MS, then one store commit makes
// all their data durable and points their inodes at them in the same synced LevelDB batch as
// the index entries (src/namespace/FORMAT.md, "Rules"). fsync forces a round at once. Until its round lands, an open file stays registered, so every reader sees its
// newest version from memory.

import type { FileVersion } from '../store/store.js';
import type { NsContext } from './context.js';
import { Txn } from './meta.js';
import type { OpenFile } from './open-file.js';

export const GROUP_DELAY_MS = 200;

interface Pending {
  file: OpenFile;
  version: FileVersion;
  deps: Set<number>;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class GroupCommit {
  private queue: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  /** A round is chained that has not started yet (it will take whatever is queued then). */
  private scheduled = false;

  constructor(private readonly ctx: NsContext) {}

  /** Resolves once `version` is durable and recorded in the file's inode. */
  add(file: OpenFile, version: FileVersion, deps: Set<number>, now: boolean): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.queue.push({ file, version, deps, resolve, reject }));
    if (now) this.flush();
    else if (!this.timer) this.timer = setTimeout(() => this.flush(), GROUP_DELAY_MS);
    return done;
  }

  /**
   * Starts a round with everything queued (after the round in progress). The round takes the
   * queue when it starts, not when it is asked for: fsyncs that arrive while a round runs (a
   * snapshot committing every open file of its share, many writers fsyncing) share the next
   * round instead of making one synced batch each.
   */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.queue.length === 0 || this.scheduled) return this.running;
    this.scheduled = true;
    this.running = this.running.then(() => {
      this.scheduled = false;
      const batch = this.queue;
      this.queue = [];
      return this.round(batch);
    });
    return this.running;
  }

  /**
   * One round: the containers the versions live in are fsynced first, outside the namespace
   * lock (the long part); then, under the lock, the inodes are read, changed and handed to the
   * store's commit, which writes them with the index entries and counters in one synced
   * LevelDB batch (commitSynced: only the records that syncData made durable are indexed, so
   * no container fsync runs under the lock for records other files appended meanwhile). Lock order: the namespace lock, then the store's commit lock (the store
   * never takes the namespace's), so no deadlock. The namespace lock is held only until the
   * batch has its place among the database's writes (kv/db.ts, chain), not through its synced
   * write: every change made after it is written after it, so creates and unlinks go on while
   * it syncs (an rsync's metadata requests waited for these writes ~6% of its time). The cache
   * learns the new inodes at that point; the versions are reported durable (close, fsync) only
   * once the batch is written and synced. If that write fails, every later write fails with it
   * (ARCHITECTURE.md, "Commit rules"), since later changes may build on the inodes.
   */
  private async round(batch: Pending[]): Promise<void> {
    const ok: Pending[] = [];
    for (const p of batch) {
      const lost = this.ctx.store.failure(p.deps);
      if (lost) p.reject(lost);
      else ok.push(p);
    }
    if (ok.length === 0) return;
    try {
      const deps = new Set<number>();
      for (const p of ok) for (const d of p.deps) deps.add(d);
      await this.ctx.store.syncData();
      // Only the newest version of each file counts; earlier ones in the round are part of it.
      const newest = new Map<OpenFile, FileVersion>();
      for (const p of ok) newest.set(p.file, p.version);
      const written = await this.ctx.lock.run(async () => {
        const txn = new Txn();
        for (const [f, version] of newest) {
          const inode = await this.ctx.meta.getInode(f.vol, f.ino);
          if (!inode) continue; // unlinked meanwhile: its data is garbage now
          const prev = txn.inodes.get(`${f.vol}/${f.ino}`) ?? inode;
          txn.putInode(f.vol, { ...prev, version, size: version.size, mtime: f.mtime, ctime: f.ctime });
          this.ctx.count(txn, await this.ctx.volume(f.vol), 0, version.size - prev.size);
        }
        const w = this.ctx.meta.applyQueued(txn, (ops, queued) => this.ctx.store.commitSynced(ops, deps, queued));
        await w.queued;
        // Not the promise itself: the lock's section would wait for it.
        return { done: w.written };
      });
      await written.done;
      for (const p of ok) p.resolve();
    } catch (err) {
      for (const p of ok) p.reject(err as Error);
    }
  }
}
