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
  /** The last write handed to LevelDB or waiting its turn: every write starts after it (chain). */
  tail: Promise<void>;
}

const marks = new WeakMap<Db, Watermark>();

function markOf(db: Db): Watermark {
  let m = marks.get(db);
  if (!m) marks.set(db, (m = { completed: 0, durable: 0, tail: Promise.resolve() }));
  return m;
}

/**
 * Runs `write` after every write chained before it has finished: the writes of a database land
 * in the order they were asked for, whoever asks (the write-behind queue, the store's commits,
 * the namespace's synced batches). LevelDB alone does not promise that for writes in flight at
 * once (each goes to a thread of its own). The order is fixed when this is called, so a caller
 * may let go of its own lock as soon as its write is chained (the group commit does: its synced
 * batch is ahead of every metadata change made after it, without holding the namespace lock).
 */
function chain(db: Db, write: () => Promise<void>): Promise<void> {
  const m = markOf(db);
  const run = m.tail.then(write);
  m.tail = run.then(
    () => undefined,
    () => undefined,
  );
  return run;
}

export interface WriteOptions {
  /**
   * The caller has let others see this batch's changes before it is written (the group commit's
   * inodes, ARCHITECTURE.md "Commit rules"): if it fails, every later write of the database
   * fails too, as a failed write-behind batch does, since later changes may build on it.
   */
  failAll?: boolean;
}

/**
 * One atomic LevelDB batch; `sync` makes it (and everything completed before it) durable. A
 * chained batch: abstract-level's array form clones and re-encodes every operation (measured
 * 5x slower at checkpoint sizes of tens of thousands of index entries). Its place in the order
 * of writes is taken at the call (chain): after every change writeLater queued before it and
 * every write asked for before it, before everything asked for after.
 */
export function writeBatch(db: Db, ops: DbOp[], sync: boolean, opts: WriteOptions = {}): Promise<void> {
  const b = opts.failAll ? behindOf(db) : behind.get(db);
  if (b) queueBucket(db, b, true);
  // Seen before it is written: readers that miss the cache read it where they read queued
  // changes (queuedValue), and fsync knows it is not durable yet (allDurable).
  if (opts.failAll) for (const op of ops) b!.pending.set(op.key.toString('latin1'), op);
  return chain(db, async () => {
    if (b?.failure) throw b.failure;
    try {
      await writeNow(db, ops, sync);
    } catch (err) {
      if (opts.failAll) fail(b!, err as Error);
      throw err;
    }
    if (opts.failAll) unpend(b!, ops);
  });
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
  if (b && (b.pending.size > 0 || b.failure)) return false;
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
// moment. Every other write (writeBatch: the store's commits, fsync's synced batch) is chained
// after the queued changes made before it, every scan (settled) waits for them, and allDurable is
// false while anything is queued, so fsync still means durable. What a crash of the process may lose
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

/** Changes queued by writeLater that go to LevelDB as one batch. */
interface Bucket {
  ops: DbOp[];
  /** Its write is chained: it takes every op added until the write starts. */
  chained: boolean;
}

interface Behind {
  /** Where writeLater adds: the newest bucket, chained or not. */
  bucket: Bucket;
  timer: NodeJS.Timeout | undefined;
  failure: Error | undefined;
  /** Queued values by key (latin1 of the key): what readers must see before LevelDB has them. */
  pending: Map<string, DbOp>;
}

const behind = new WeakMap<Db, Behind>();

function behindOf(db: Db): Behind {
  let b = behind.get(db);
  if (!b) behind.set(db, (b = { bucket: { ops: [], chained: false }, timer: undefined, failure: undefined, pending: new Map() }));
  return b;
}

function fail(b: Behind, err: Error): void {
  b.failure ??= vmError('IO', `the namespace's metadata could not be written: ${err.message}; restart the appliance once the disk is fixed`, undefined, err);
  b.bucket = { ops: [], chained: false };
  b.pending.clear();
}

/** Queues one atomic batch to be written (unsynced) after every earlier write; returns at once. */
export function writeLater(db: Db, ops: DbOp[]): void {
  const b = behindOf(db);
  if (b.failure) throw b.failure;
  for (const op of ops) {
    b.bucket.ops.push(op);
    b.pending.set(op.key.toString('latin1'), op);
  }
  // The batch boundary of each writeLater call need not be kept: consecutive batches are
  // written together, which is atomic for all of them. A bucket already chained (waiting for
  // the write ahead of it) takes these too, so changes made during a long synced write go as
  // one batch after it.
  if (!b.bucket.chained && !b.timer) b.timer = setTimeout(() => queueBucket(db, b, false), WRITE_BEHIND_MS);
}

/**
 * Chains the write of the current bucket (if it holds anything and is not chained yet). With
 * `close`, changes queued from now on go into a new bucket, written after whatever is chained
 * next (a writeBatch asked for now must not be overtaken by them, nor they by it).
 */
function queueBucket(db: Db, b: Behind, close: boolean): void {
  if (b.timer) clearTimeout(b.timer);
  b.timer = undefined;
  const bucket = b.bucket;
  if (!bucket.chained && bucket.ops.length > 0) {
    bucket.chained = true;
    void chain(db, () => writeBucket(db, b, bucket)).catch(() => {});
  }
  if (close && bucket.chained) b.bucket = { ops: [], chained: false };
}

/** Written: readers find these in LevelDB now (unless a later change of the key is queued). */
function unpend(b: Behind, ops: DbOp[]): void {
  for (const op of ops) {
    const k = op.key.toString('latin1');
    if (b.pending.get(k) === op) b.pending.delete(k);
  }
}

async function writeBucket(db: Db, b: Behind, bucket: Bucket): Promise<void> {
  // From now on writeLater adds to a new bucket (written after this one).
  if (b.bucket === bucket) b.bucket = { ops: [], chained: false };
  if (b.failure) return;
  const ops = bucket.ops;
  if (ops.length === 0) return;
  try {
    await writeNow(db, ops, false);
  } catch (err) {
    fail(b, err as Error);
    return;
  }
  unpend(b, ops);
  // Changes queued while this one was written wait for company as usual.
  if (b.bucket.ops.length > 0 && !b.bucket.chained && !b.timer) b.timer = setTimeout(() => queueBucket(db, b, false), WRITE_BEHIND_MS);
}

/**
 * Resolves once everything writeLater queued before the call, and every write asked for before
 * it, is in LevelDB; rejects if a queued write failed.
 */
export async function settled(db: Db): Promise<void> {
  const b = behind.get(db);
  if (b) queueBucket(db, b, true);
  await markOf(db).tail;
  if (b?.failure) throw b.failure;
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
