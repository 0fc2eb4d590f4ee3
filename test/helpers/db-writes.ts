// Records every write a LevelDB database receives, in order, with its sync flag: the seam that
// makes durability observable in a test. A SIGKILL keeps the page cache, so a batch written
// without sync survives it and no crash test can tell an fsync that synced from one that did
// not; a power cut would, and LevelDB's rule decides: a synced write makes itself and every
// write that completed before it durable (its log is one sequential file, fsynced up to the
// synced write). This wraps the methods of the real database (nothing is faked): the batches
// still reach LevelDB unchanged.

import type { Db } from '../../src/kv/db.js';

export interface DbWrite {
  /** Event numbers when the write was issued and when it completed. */
  start: number;
  end: number;
  sync: boolean;
  keys: Buffer[];
}

export interface WriteLog {
  readonly writes: DbWrite[];
  /** The current event number: take one when an operation returns, to ask what was durable then. */
  mark(): number;
  /**
   * Whether write `w` was durable at event `at`: synced itself, or followed by a synced write
   * that was issued after `w` completed and completed before `at`.
   */
  durableAt(w: DbWrite, at: number): boolean;
  /** Synced writes that completed between two marks. */
  syncedBetween(from: number, to: number): DbWrite[];
  stop(): void;
}

export function recordWrites(db: Db): WriteLog {
  let seq = 0;
  const writes: DbWrite[] = [];
  const anyDb = db as unknown as Record<string, unknown>;
  const origBatch = db.batch;
  const origPut = db.put;
  const origDel = db.del;
  const track = async <T>(keys: Buffer[], sync: boolean, run: () => Promise<T>): Promise<T> => {
    const w: DbWrite = { start: ++seq, end: Infinity, sync, keys };
    writes.push(w);
    const r = await run();
    w.end = ++seq;
    return r;
  };
  anyDb.batch = function (this: Db, ...args: unknown[]) {
    if (args.length > 0) {
      // The array form: batch(ops, opts).
      const ops = args[0] as Array<{ key: Buffer }>;
      const opts = args[1] as { sync?: boolean } | undefined;
      return track(
        ops.map((o) => o.key),
        opts?.sync === true,
        () => (origBatch as (...a: unknown[]) => Promise<void>).apply(db, args),
      );
    }
    const b = (origBatch as () => unknown).call(db) as Record<string, unknown>;
    const keys: Buffer[] = [];
    const put = b.put as (k: Buffer, v: Buffer) => unknown;
    const del = b.del as (k: Buffer) => unknown;
    const write = b.write as (opts?: { sync?: boolean }) => Promise<void>;
    b.put = function (k: Buffer, v: Buffer) {
      keys.push(k);
      put.call(b, k, v);
      return b;
    };
    b.del = function (k: Buffer) {
      keys.push(k);
      del.call(b, k);
      return b;
    };
    b.write = (opts?: { sync?: boolean }) => track(keys, opts?.sync === true, () => write.call(b, opts));
    return b;
  };
  anyDb.put = (k: Buffer, v: Buffer, opts?: { sync?: boolean }) => track([k], opts?.sync === true, () => (origPut as (...a: unknown[]) => Promise<void>).call(db, k, v, opts));
  anyDb.del = (k: Buffer, opts?: { sync?: boolean }) => track([k], opts?.sync === true, () => (origDel as (...a: unknown[]) => Promise<void>).call(db, k, opts));
  return {
    writes,
    mark: () => ++seq,
    durableAt(w, at) {
      if (w.end > at) return false;
      if (w.sync) return true;
      return writes.some((s) => s.sync && s.start > w.end && s.end <= at);
    },
    syncedBetween: (from, to) => writes.filter((s) => s.sync && s.end > from && s.end <= to),
    stop() {
      anyDb.batch = origBatch;
      anyDb.put = origPut;
      anyDb.del = origDel;
    },
  };
}
