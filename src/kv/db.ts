// The LevelDB helpers that the store and the namespace share: both keep their records in one
// database (see src/store/FORMAT.md and src/namespace/FORMAT.md for who owns which prefix), so
// one commit can write both atomically.
//
// Every write goes through writeBatch, which keeps a durability watermark per database: fsync
// must know whether anything written so far is still only in LevelDB's unsynced log. LevelDB's
// rule (its doc/index.md, "Synchronous Writes"): a synced write makes itself and every write
// that completed before it durable, since the log is one sequential file fsynced up to it.

import type { ClassicLevel } from 'classic-level';

export type Db = ClassicLevel<Buffer, Buffer>;

export interface DbOp {
  type: 'put' | 'del';
  key: Buffer;
  value?: Buffer;
}

interface Watermark {
  /** Writes completed so far, numbered in completion order. */
  completed: number;
  /** Every write numbered up to this one is durable. */
  durable: number;
}

const marks = new WeakMap<Db, Watermark>();

function markOf(db: Db): Watermark {
  let m = marks.get(db);
  if (!m) marks.set(db, (m = { completed: 0, durable: 0 }));
  return m;
}

/**
 * One atomic LevelDB batch; `sync` makes it (and everything completed before it) durable. A
 * chained batch: abstract-level's array form clones and re-encodes every operation (measured
 * 5x slower at checkpoint sizes of tens of thousands of index entries).
 */
export async function writeBatch(db: Db, ops: DbOp[], sync: boolean): Promise<void> {
  const m = markOf(db);
  const before = m.completed;
  const batch = db.batch();
  for (const op of ops) {
    if (op.type === 'put') batch.put(op.key, op.value!);
    else batch.del(op.key);
  }
  const write = batch.write as unknown as (opts: { sync: boolean }) => Promise<void>;
  await write.call(batch, { sync });
  const n = ++m.completed;
  if (sync) {
    // Writes that completed while this one was under way may be behind it in the log or not.
    if (m.durable < before) m.durable = before;
    if (n === before + 1) m.durable = n;
  }
}

/**
 * Whether every write that completed so far through writeBatch is durable. Writes made
 * otherwise are not counted: only the namespace's clearing of an unnamed volume's records
 * (db.clear), which the sweep at open redoes if a crash loses it.
 */
export function allDurable(db: Db): boolean {
  const m = markOf(db);
  return m.durable >= m.completed;
}
