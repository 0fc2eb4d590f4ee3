// The LevelDB helpers that the store and the namespace share: both keep their records in one
// database (see src/store/FORMAT.md and src/namespace/FORMAT.md for who owns which prefix), so
// one commit can write both atomically.
//
// Every write goes through writeBatch, which keeps a durability watermark per database: fsync
// must know whether anything written so far is still only in LevelDB's unsynced log. LevelDB's
// rule (its doc/index.md, "Synchronous Writes"): a synced write makes itself and every write
// that completed before it durable, since the log is one sequential file fsynced up to it.

import type { ClassicLevel } from 'classic-level';
import fs from 'node:fs/promises';
import { vmError } from '../errors.js';

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
  // After every write queued by writeLater before this call: writes land in call order.
  await settled(db);
  await writeNow(db, ops, sync);
}

async function writeNow(db: Db, ops: DbOp[], sync: boolean): Promise<void> {
  const m = markOf(db);
  const before = m.completed;
  const batch = db.batch();
  for (const op of ops) {
    if (op.type === 'put') batch.put(op.key, op.value!);
    else batch.del(op.key);
  }
  const write = batch.write as unknown as (opts: { sync: boolean }) => Promise<void>;
  await write.call(batch, { sync });
  if (sync) await syncDirIfChanged(db);
  const n = ++m.completed;
  if (sync) {
    // Writes that completed while this one was under way may be behind it in the log or not.
    if (m.durable < before) m.durable = before;
    if (n === before + 1) m.durable = n;
  }
}

/** The database directory's mtime, ctime and names when it was last fsynced, per database. */
const dirStamps = new WeakMap<Db, string>();

/**
 * LevelDB makes a new log file when its memtable fills (and new table files and MANIFESTs) and
 * never fsyncs the directory after it: a synced write into a log made since is in a file whose
 * name is not durable, and a power cut takes the file with every write in it (the power-cut test
 * lost fsynced files so). So after a synced write, if the directory changed since it was last
 * fsynced, fsync it before the write counts as durable. A stat and a readdir per synced write;
 * an fsync only when LevelDB made or removed a file. The names are part of the stamp because
 * timestamps alone miss changes: a directory's mtime moves in coarse ticks (ext4: a jiffy; a
 * FUSE file system may report milliseconds or cached attributes), so a log made in the tick of
 * the last fsync left the stamp as it was (the power-cut test lost fsynced files on a fast
 * machine). The stamp is taken before the fsync: a change racing it is covered by this fsync or
 * seen by the next check.
 */
async function syncDirIfChanged(db: Db): Promise<void> {
  const dir = (db as unknown as { location: string }).location;
  const st = await fs.stat(dir, { bigint: true });
  const names = (await fs.readdir(dir)).sort();
  const stamp = `${st.mtimeNs}:${st.ctimeNs}:${names.join('/')}`;
  if (dirStamps.get(db) === stamp) return;
  const h = await fs.open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
  dirStamps.set(db, stamp);
}

/**
 * Whether every write that completed so far through writeBatch is durable. Writes made
 * otherwise are not counted: only the namespace's clearing of an unnamed volume's records
 * (db.clear), which the sweep at open redoes if a crash loses it.
 */
export function allDurable(db: Db): boolean {
  const m = markOf(db);
  const b = behind.get(db);
  // Queued writes are not durable yet; a failed one never will be (sync then reports it).
  if (b && (b.writing || b.ops.length > 0 || b.failure)) return false;
  return m.durable >= m.completed;
}

// ---- write-behind (the namespace's metadata-only changes) -----------------------------------
//
// A metadata-only change (create, rename, chmod, utimens, unlink) is written without sync, so
// it is durable only at the next synced write either way. Waiting for its unsynced batch to
// reach LevelDB's log costs two thread hand-offs per operation (0.3-0.6 ms on a loaded
// machine, most of a small file's time). writeLater queues the batch and returns at once: the
// queue is written in order, all that gathered in WRITE_BEHIND_MS (or while the previous
// write ran) as one batch, so the log holds a prefix of the changes in call order at any
// moment. Every other write (writeBatch: the store's commits, fsync's synced batch) and every
// scan (settled) writes the queue at once and waits for it, and allDurable is false while
// anything is queued, so fsync still means durable. What a crash of the process may lose
// besides a power cut's: the changes of the last WRITE_BEHIND_MS and one write's time, never a
// reordering. A failed queued write (LevelDB's log on a full or
// failing disk) fails every later write of this database, as LevelDB itself does after a log
// write error: the caller whose change was acknowledged learns it at the next change or fsync.

/**
 * How long queued changes wait for company before they are written. One batch hand-off to
 * LevelDB's thread costs the event loop ~0.1-0.3 ms on a loaded machine; an rsync makes ~7
 * metadata changes per file, which now share one or two.
 */
export const WRITE_BEHIND_MS = 5;

interface Behind {
  ops: DbOp[];
  timer: NodeJS.Timeout | undefined;
  writing: Promise<void> | undefined;
  failure: Error | undefined;
  /** Queued values by key (latin1 of the key): what readers must see before LevelDB has them. */
  pending: Map<string, DbOp>;
}

const behind = new WeakMap<Db, Behind>();

function behindOf(db: Db): Behind {
  let b = behind.get(db);
  if (!b) behind.set(db, (b = { ops: [], timer: undefined, writing: undefined, failure: undefined, pending: new Map() }));
  return b;
}

/** Queues one atomic batch to be written (unsynced) after every earlier write; returns at once. */
export function writeLater(db: Db, ops: DbOp[]): void {
  const b = behindOf(db);
  if (b.failure) throw b.failure;
  for (const op of ops) {
    b.ops.push(op);
    b.pending.set(op.key.toString('latin1'), op);
  }
  // The batch boundary of each writeLater call need not be kept: consecutive batches are
  // written together, which is atomic for all of them.
  if (!b.writing && !b.timer) b.timer = setTimeout(() => startDrain(db, b), WRITE_BEHIND_MS);
}

function startDrain(db: Db, b: Behind): void {
  if (b.timer) clearTimeout(b.timer);
  b.timer = undefined;
  b.writing ??= drain(db, b);
}

async function drain(db: Db, b: Behind): Promise<void> {
  try {
    while (b.ops.length > 0) {
      const ops = b.ops;
      b.ops = [];
      try {
        await writeNow(db, ops, false);
      } catch (err) {
        b.failure = vmError('IO', `the namespace's metadata could not be written: ${(err as Error).message}; restart the appliance once the disk is fixed`, undefined, err);
        b.ops = [];
        b.pending.clear();
        return;
      }
      for (const op of ops) {
        const k = op.key.toString('latin1');
        if (b.pending.get(k) === op) b.pending.delete(k);
      }
    }
  } finally {
    b.writing = undefined;
  }
}

/** Resolves once everything writeLater queued before the call is in LevelDB; rejects if it failed. */
export async function settled(db: Db): Promise<void> {
  const b = behind.get(db);
  if (!b) return;
  if (b.ops.length > 0) startDrain(db, b);
  while (b.writing) await b.writing;
  if (b.failure) throw b.failure;
}

/**
 * A queued value not yet in LevelDB: the value (put), null (del), or undefined when nothing
 * for the key is queued (LevelDB has the newest).
 */
export function queuedValue(db: Db, key: Buffer): Buffer | null | undefined {
  const b = behind.get(db);
  if (!b || b.pending.size === 0) return undefined;
  const op = b.pending.get(key.toString('latin1'));
  return op === undefined ? undefined : op.type === 'put' ? op.value! : null;
}
