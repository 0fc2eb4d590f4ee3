// Group commit of file versions. Closing a file must not cost two fsyncs (container and
// LevelDB): an rsync of ten thousand small files would take minutes. Versions built by
// commits without fsync wait here for at most GROUP_DELAY_MS, then one store commit makes
// all their data durable and one batch points their inodes at them. fsync forces a round at
// once. Until its round lands, an open file stays registered, so every reader sees its
// newest version from memory.

import type { FileVersion } from '../store/tree/version.js';
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

  constructor(private readonly ctx: NsContext) {}

  /** Resolves once `version` is durable and recorded in the file's inode. */
  add(file: OpenFile, version: FileVersion, deps: Set<number>, now: boolean): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.queue.push({ file, version, deps, resolve, reject }));
    if (now) this.flush();
    else if (!this.timer) this.timer = setTimeout(() => this.flush(), GROUP_DELAY_MS);
    return done;
  }

  /** Starts a round with everything queued (after the round in progress). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return this.running;
    this.running = this.running.then(() => this.round(batch));
    return this.running;
  }

  private async round(batch: Pending[]): Promise<void> {
    const failed = this.ctx.store.internals.failedCids;
    const ok: Pending[] = [];
    for (const p of batch) {
      const lost = [...p.deps].find((c) => failed.has(c));
      if (lost !== undefined) p.reject(this.ctx.store.internals.writers.get(lost)?.failed ?? new Error(`container ${lost} failed to write`));
      else ok.push(p);
    }
    if (ok.length === 0) return;
    try {
      const deps = new Set<number>();
      for (const p of ok) for (const d of p.deps) deps.add(d);
      await this.ctx.store.commit([], deps);
      // Only the newest version of each file counts; earlier ones in the round are part of it.
      const newest = new Map<OpenFile, FileVersion>();
      for (const p of ok) newest.set(p.file, p.version);
      await this.ctx.lock.run(async () => {
        const txn = new Txn();
        for (const [f, version] of newest) {
          const inode = await this.ctx.meta.getInode(f.vol, f.ino);
          if (!inode) continue; // unlinked meanwhile: its data is garbage now
          const prev = txn.inodes.get(`${f.vol}/${f.ino}`) ?? inode;
          txn.putInode(f.vol, { ...prev, version, size: version.size, mtime: f.mtime, ctime: f.ctime });
          this.ctx.count(txn, await this.ctx.volume(f.vol), 0, version.size - prev.size);
        }
        await this.ctx.meta.apply(txn, true);
      });
      for (const p of ok) p.resolve();
    } catch (err) {
      for (const p of ok) p.reject(err as Error);
    }
  }
}
