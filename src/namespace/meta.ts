// Namespace metadata in LevelDB with a read cache. Every change goes through a Txn: its
// operations are written in one atomic batch. apply() lets the cache learn them only after the
// batch succeeded; applyLater() (metadata-only changes, written without sync anyway) queues
// the batch (kv/db.ts, writeLater) and lets the cache learn at once, so what the cache shows
// is on disk or queued in order ahead of every later write. Readers that go to LevelDB see the
// queue first: point reads through queuedValue, scans after settled(). The namespace
// serialises transactions, so batches never race one another.

import { vmError } from '../errors.js';
import { type Db, type DbOp, queuedValue, settled, writeBatch, writeLater } from '../kv/db.js';
import { ENTRY, entryKey, entryRange, inodeKey, nsMetaKey, shareNameKey, snapNameKey, snapNameRange, volumeKey, volumeRange } from './keys.js';
import {
  decodeEntry,
  decodeU32,
  decodeInode,
  decodeVolume,
  encodeEntry,
  encodeInode,
  encodeVolume,
  type EntryValue,
  type Inode,
  NodeType,
  type Volume,
} from './records.js';

const CACHE_MAX = 200_000;
const NAMES_MAX = 10_000;
/** Directory entries held in cached listings, all directories together. */
const LISTED_MAX = 200_000;

export interface DirEntryRow {
  name: string;
  entry: EntryValue;
}

class Lru<V> {
  private readonly map = new Map<string, V>();
  get(k: string): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }
  set(k: string, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    if (this.map.size > CACHE_MAX) this.map.delete(this.map.keys().next().value as string);
  }
  delete(k: string): void {
    this.map.delete(k);
  }
  clear(): void {
    this.map.clear();
  }
}

interface Listing {
  byName: Map<string, EntryValue>;
  /** The rows in LevelDB's key order (UTF-8 bytes of the name); rebuilt after a change. */
  sorted: DirEntryRow[] | undefined;
}

/** Rows in the order of their names' UTF-8 bytes, which is LevelDB's order of entry keys. */
function sortRows(byName: Map<string, EntryValue>): DirEntryRow[] {
  const rows: DirEntryRow[] = [];
  let surrogates = false;
  for (const [name, entry] of byName) {
    rows.push({ name, entry });
    if (!surrogates && SURROGATE.test(name)) surrogates = true;
  }
  // Without surrogates, UTF-16 order (the engine's own string comparison, several times
  // faster than compareUtf8 in JS) is UTF-8 byte order.
  if (!surrogates) return rows.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return rows.sort((a, b) => compareUtf8(a.name, b.name));
}

const SURROGATE = /[\ud800-\udfff]/;

/** UTF-8 byte order = code point order; UTF-16 units differ from it only around surrogates. */
function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // A surrogate (a code point above U+FFFF) sorts after U+E000-U+FFFF in UTF-8.
      const cx = a.codePointAt(i)!;
      const cy = b.codePointAt(i)!;
      return cx < cy ? -1 : cx > cy ? 1 : 0;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** A negative entry: the name is known not to exist. */
const ABSENT = null;

export class Txn {
  readonly ops: DbOp[] = [];
  readonly inodes = new Map<string, Inode | null>();
  readonly entries = new Map<string, EntryValue | null>();
  readonly volumes = new Map<number, Volume>();
  /** Set by raw(): such operations may name or unname shares and snapshots. */
  hasRaw = false;
  /** Directories ("vol/ino") whose entries this transaction changes. */
  readonly dirs = new Set<string>();

  putInode(vol: number, n: Inode): void {
    this.ops.push({ type: 'put', key: inodeKey(vol, n.ino), value: encodeInode(n) });
    this.inodes.set(`${vol}/${n.ino}`, n);
  }

  delInode(vol: number, ino: number): void {
    this.ops.push({ type: 'del', key: inodeKey(vol, ino) });
    this.inodes.set(`${vol}/${ino}`, null);
  }

  putEntry(vol: number, parent: number, name: string, e: EntryValue): void {
    this.ops.push({ type: 'put', key: entryKey(vol, parent, name), value: encodeEntry(e) });
    this.entries.set(`${vol}/${parent}/${name}`, e);
    this.dirs.add(`${vol}/${parent}`);
  }

  delEntry(vol: number, parent: number, name: string): void {
    this.ops.push({ type: 'del', key: entryKey(vol, parent, name) });
    this.entries.set(`${vol}/${parent}/${name}`, ABSENT);
    this.dirs.add(`${vol}/${parent}`);
  }

  putVolume(v: Volume): void {
    this.ops.push({ type: 'put', key: volumeKey(v.id), value: encodeVolume(v) });
    this.volumes.set(v.id, v);
  }

  raw(op: DbOp): void {
    this.hasRaw = true;
    this.ops.push(op);
  }
}

/**
 * Told synchronously of every transaction the cache learns (before whoever made it is
 * answered): its directory entries ("vol/parent/name" -> the entry, or null: removed), inodes
 * ("vol/ino" -> the inode, or null: deleted), the directories whose entries it changed
 * ("vol/ino") and whether it had raw operations (which may change anything); `null`: anything
 * may have changed (a volume forgotten). The maps are the transaction's own: do not change or
 * keep them. The mount follows its kernel-visible caches with it: negative entries, the addon's
 * attributes and names (fuse/ll-filesystem.ts, ll-attrs.ts, ll-names.ts).
 */
export type TxnWatcher = (
  txn: {
    readonly entries: ReadonlyMap<string, EntryValue | null>;
    readonly inodes: ReadonlyMap<string, Inode | null>;
    readonly dirs: ReadonlySet<string>;
    readonly hasRaw: boolean;
  } | null,
) => void;

export class Meta {
  /** Told of every transaction learnt (watchTxns): the mount's kernel-visible caches. */
  private readonly txnWatchers = new Set<TxnWatcher>();
  private readonly inodes = new Lru<Inode | null>();
  private readonly entries = new Lru<EntryValue | null>();
  private readonly volumes = new Map<number, Volume>();
  /**
   * Share and snapshot names -> volume ids (null: known absent). Every path a FUSE operation
   * names starts with a share, so without this each getattr cost a LevelDB read. Names change
   * only in transactions with raw operations (shares.ts, snapshots.ts), which empty it.
   */
  private readonly names = new Map<string, number | null>();
  /**
   * Whole directory listings ("vol/ino" -> entries by name), oldest use first. Reading a
   * listing from LevelDB costs ~5-30 us per entry (2,000 entries: 10-60 ms), and tools list
   * the same directory again and again (ls, rsync, find), also right after filling it. A
   * transaction that adds or removes a name in a directory whose listing is cached changes
   * the listing too (the sorted array is rebuilt at the next read); forgetting a volume drops
   * them all.
   */
  private readonly listings = new Map<string, Listing>();
  private listed = 0;
  /**
   * Bumped by every learned change. A read that missed the cache may only fill it if no
   * change landed while it waited for LevelDB; otherwise it could cache the old value after
   * the new one was learned, and keep serving it.
   */
  private generation = 0;

  constructor(readonly db: Db) {}

  async getVolume(id: number): Promise<Volume | undefined> {
    const hit = this.volumes.get(id);
    if (hit) return hit;
    await settled(this.db);
    const gen = this.generation;
    const v = await this.db.get(volumeKey(id));
    if (!v) return undefined;
    const vol = decodeVolume(v, `volume ${id}`);
    if (gen === this.generation) this.volumes.set(id, vol);
    return vol;
  }

  async shareVolumeId(name: string): Promise<number | undefined> {
    return this.named(`s/${name}`, () => shareNameKey(name));
  }

  async snapshotVolumeId(shareVol: number, name: string): Promise<number | undefined> {
    return this.named(`p/${shareVol}/${name}`, () => snapNameKey(shareVol, name));
  }

  private async named(cacheKey: string, key: () => Buffer): Promise<number | undefined> {
    const hit = this.names.get(cacheKey);
    if (hit !== undefined) return hit ?? undefined;
    await settled(this.db);
    const gen = this.generation;
    const v = await this.db.get(key());
    const id = v ? decodeU32(v, cacheKey.startsWith('s/') ? `share name ${cacheKey.slice(2)}` : `snapshot name ${cacheKey}`) : null;
    if (gen === this.generation) {
      // Negative answers too (a path of a share that does not exist); bounded all the same.
      if (this.names.size >= NAMES_MAX) this.names.clear();
      this.names.set(cacheKey, id);
    }
    return id ?? undefined;
  }

  async shareNames(): Promise<Array<{ name: string; vol: number }>> {
    const out: Array<{ name: string; vol: number }> = [];
    await settled(this.db);
    const gte = shareNameKey('');
    const lt = Buffer.from([gte[0] + 1]);
    for await (const [k, v] of this.db.iterator({ gte, lt })) out.push({ name: k.subarray(1).toString('utf8'), vol: decodeU32(v, 'share name record') });
    return out;
  }

  async snapshotNames(shareVol: number): Promise<Array<{ name: string; vol: number }>> {
    const out: Array<{ name: string; vol: number }> = [];
    await settled(this.db);
    for await (const [k, v] of this.db.iterator(snapNameRange(shareVol))) out.push({ name: k.subarray(5).toString('utf8'), vol: decodeU32(v, 'snapshot name record') });
    return out;
  }

  async getInode(vol: number, ino: number): Promise<Inode | undefined> {
    const key = `${vol}/${ino}`;
    const hit = this.inodes.get(key);
    if (hit !== undefined) return hit ?? undefined;
    // A synchronous read (see readSync): nothing can land between it and the fill.
    const v = this.readSync(inodeKey(vol, ino));
    const n = v ? decodeInode(v, `inode ${ino} of volume ${vol}`) : null;
    this.inodes.set(key, n);
    return n ?? undefined;
  }

  async mustInode(vol: number, ino: number): Promise<Inode> {
    const n = await this.getInode(vol, ino);
    if (!n) throw vmError('IO', `inode ${ino} of volume ${vol} is referenced but missing; run verify`);
    return n;
  }

  async lookup(vol: number, parent: number, name: string): Promise<EntryValue | undefined> {
    const key = `${vol}/${parent}/${name}`;
    const hit = this.entries.get(key);
    if (hit !== undefined) return hit ?? undefined;
    const v = this.readSync(entryKey(vol, parent, name));
    const e = v ? decodeEntry(v) : ABSENT;
    this.entries.set(key, e);
    return e ?? undefined;
  }

  /**
   * Cache misses of inodes and entries read LevelDB on this thread. These are small records
   * answered from LevelDB's memtable and block cache in microseconds, where an asynchronous
   * get costs two thread hand-offs, each waiting for a CPU on a busy machine (measured: a
   * negative lookup before every create, 0.3-0.8 ms). The segment index does the same for
   * tree nodes (store/ingest.ts).
   */
  private readSync(key: Buffer): Buffer | undefined {
    const q = queuedValue(this.db, key);
    if (q !== undefined) return q ?? undefined;
    return this.db.getSync(key) ?? undefined;
  }

  /** The entries of a directory in key order. The array is shared: do not change it. */
  async listDir(vol: number, ino: number): Promise<ReadonlyArray<DirEntryRow>> {
    const key = `${vol}/${ino}`;
    const hit = this.listings.get(key);
    if (hit) {
      this.listings.delete(key);
      this.listings.set(key, hit);
      hit.sorted ??= sortRows(hit.byName);
      return hit.sorted;
    }
    await settled(this.db);
    const gen = this.generation;
    // all() reads in batches (nextv); a for-await over the iterator costs a round trip to
    // LevelDB's thread per entry.
    const rows = await this.db.iterator(entryRange(vol, ino)).all();
    const list = rows.map(([k, v]) => ({ name: k.subarray(13).toString('utf8'), entry: decodeEntry(v) }));
    // Only if nothing landed while LevelDB read: the listing may predate that change.
    if (gen === this.generation && list.length <= LISTED_MAX) {
      this.listings.set(key, { byName: new Map(list.map((r) => [r.name, r.entry])), sorted: list });
      this.listed += list.length;
      this.evictListings();
    }
    return list;
  }

  /**
   * The names of directory `ino` of `vol` if its whole listing is cached, else undefined: read
   * synchronously, so with the watchers of watchTxns a caller can follow it from this instant.
   */
  cachedNames(vol: number, ino: number): string[] | undefined {
    const l = this.listings.get(`${vol}/${ino}`);
    return l ? [...l.byName.keys()] : undefined;
  }

  /**
   * Records that directory `ino` of `vol` was just made and holds nothing: its listing is
   * cached as empty, so the transactions that fill it keep it current and the first readdir
   * reads no LevelDB (a listing of 2,000 new files read back cost 30-70 ms on a loaded machine).
   * Only for a directory whose making is already learned: no entry can exist under a new
   * inode, as its number was never handed out before (ids only grow; a crash that loses the
   * allocation loses every later change in the directory with it).
   */
  madeEmptyDir(vol: number, ino: number): void {
    const key = `${vol}/${ino}`;
    if (!this.listings.has(key)) this.listings.set(key, { byName: new Map(), sorted: [] });
  }

  private evictListings(): void {
    for (const [k, l] of this.listings) {
      if (this.listed <= LISTED_MAX) break;
      this.listings.delete(k);
      this.listed -= l.byName.size;
    }
  }

  private dropListing(key: string): void {
    const l = this.listings.get(key);
    if (!l) return;
    this.listings.delete(key);
    this.listed -= l.byName.size;
  }

  /**
   * The directory whose entry names directory `ino`, by scanning every entry of the volume: for
   * directories written before inodes kept their parent (records.ts). Slow (the whole volume's
   * entries), and only asked for ".." of such a directory after the kernel forgot it.
   */
  async findParent(vol: number, ino: number): Promise<number | undefined> {
    await settled(this.db);
    for await (const [k, v] of this.db.iterator(volumeRange(ENTRY, vol))) {
      const e = decodeEntry(v);
      if (e.ino === ino && e.type === NodeType.Dir) return k.readUInt32BE(5) * 0x100000000 + k.readUInt32BE(9);
    }
    return undefined;
  }

  async hasChildren(vol: number, ino: number): Promise<boolean> {
    await settled(this.db);
    for await (const _ of this.db.keys({ ...entryRange(vol, ino), limit: 1 })) return true;
    return false;
  }

  async counter(name: string, start: number): Promise<number> {
    await settled(this.db);
    const v = await this.db.get(nsMetaKey(name));
    return v ? decodeU32(v, `namespace counter ${name}`) : start;
  }

  counterOp(name: string, value: number): DbOp {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(value, 0);
    return { type: 'put', key: nsMetaKey(name), value: b };
  }

  /** Writes a transaction in one batch (after every queued one), then lets the cache see it. */
  async apply(txn: Txn, sync = false): Promise<void> {
    if (txn.ops.length === 0) return;
    await writeBatch(this.db, txn.ops, sync);
    this.learn(txn);
  }

  /**
   * A metadata-only change (ARCHITECTURE.md, "Commit rules"): queues its batch behind every
   * earlier write and lets the cache see it now. Throws (nothing changed) if an earlier queued
   * write failed. Names of shares and snapshots never change this way.
   */
  applyLater(txn: Txn): void {
    if (txn.ops.length === 0) return;
    if (txn.hasRaw) throw new Error('applyLater: raw operations (names of shares and snapshots) are written with apply');
    writeLater(this.db, txn.ops);
    this.learn(txn);
  }

  /** Resolves once every change applyLater queued is in LevelDB (not necessarily synced). */
  settled(): Promise<void> {
    return settled(this.db);
  }

  /**
   * Hands a transaction's operations to `write`, which puts them into a batch of its own (the
   * store's commit: index entries, counters and these in one synced batch), then lets the
   * cache see them. `write` must write all of them atomically or throw.
   */
  async applyWith(txn: Txn, write: (ops: DbOp[]) => Promise<void>): Promise<void> {
    await write(txn.ops);
    this.learn(txn);
  }

  /**
   * Like applyWith, but the cache learns the change as soon as its batch has its place among
   * the database's writes (`write` calls `queued`), not once it is written: resolves `queued`
   * then, so the caller can let go of the namespace lock while the batch is written (the group
   * commit). Every later change is written after it; if it fails, every later write fails
   * (kv/db.ts, failAll). `written` rejects if `write` failed, before or after `queued`.
   */
  applyQueued(txn: Txn, write: (ops: DbOp[], queued: () => void) => Promise<void>): { queued: Promise<void>; written: Promise<void> } {
    let onQueued!: () => void;
    let notQueued!: (err: Error) => void;
    const queued = new Promise<void>((resolve, reject) => {
      onQueued = resolve;
      notQueued = reject;
    });
    let learned = false;
    const written = write(txn.ops, () => {
      learned = true;
      this.learn(txn);
      onQueued();
    });
    written.then(
      () => (learned ? undefined : (this.learn(txn), onQueued())),
      (err: Error) => notQueued(err),
    );
    return { queued, written };
  }

  /** Calls `w` for every transaction learnt from now on; returns what stops it. */
  watchTxns(w: TxnWatcher): () => void {
    this.txnWatchers.add(w);
    return () => void this.txnWatchers.delete(w);
  }

  private tell(txn: Txn | null): void {
    for (const w of this.txnWatchers) w(txn);
  }

  /** After the batch is on disk, or queued ahead of every later write (applyLater). */
  private learn(txn: Txn): void {
    this.generation++;
    if (txn.hasRaw) {
      this.names.clear();
      for (const d of txn.dirs) this.dropListing(d);
    }
    for (const [k, e] of txn.entries) {
      // "vol/parent/name": names never hold a slash.
      const cut = k.indexOf('/', k.indexOf('/') + 1);
      const l = this.listings.get(k.slice(0, cut));
      if (!l) continue;
      const name = k.slice(cut + 1);
      const had = l.byName.has(name);
      if (e === ABSENT) {
        if (had) l.byName.delete(name);
      } else {
        l.byName.set(name, e);
      }
      this.listed += (e === ABSENT ? 0 : 1) - (had ? 1 : 0);
      l.sorted = undefined;
    }
    this.evictListings();
    for (const [k, inode] of txn.inodes) this.inodes.set(k, inode);
    for (const [k, e] of txn.entries) this.entries.set(k, e);
    for (const [id, v] of txn.volumes) this.volumes.set(id, v);
    this.tell(txn);
  }

  /** Forgets everything cached about a volume (after it is deleted or replaced). */
  forgetVolume(id: number): void {
    this.generation++;
    this.volumes.delete(id);
    this.names.clear();
    this.listings.clear();
    this.listed = 0;
    this.inodes.clear();
    this.entries.clear();
    this.tell(null);
  }
}
