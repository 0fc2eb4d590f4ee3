// An ext walk that edits the previous restore point's rows where they lie (the catalog file
// started as their copy: CatalogWriter's copy mode) and reads only what changed. Which rows
// changed is decided BEFORE any row is loaded: the store says which segments differ between
// the two points (changed-ranges.ts); in those, the inode tables are compared record by record
// (sameEntryFields), and the blocks rows were read from (`deps`: directory blocks, extent-tree
// and indirect blocks, a slow symlink's block) byte by byte. Only the directories (their blocks
// are asked about) and the rows of changed inodes are ever loaded from SQLite; every other row
// stays in the file untouched.
//
// Why the result is a full walk's rows: a row is made from its inode's record (the entry
// fields) and its `deps`; when both are as they were, so is the row. A directory whose record
// and blocks are as they were holds the same names for the same inodes, so every path down to
// an unchanged row still reaches it. A changed directory is read again and its entries matched
// with its previous children by name and inode: the ones gone lose their row and subtree, new
// ones (and a name now naming another inode) are walked as a full walk walks them.
// test/catalog-db.test.ts compares the result with a full walk on changed images.
//
// Anything unusual (a directory that is no longer one, one reached twice, a layout that moved)
// returns undefined: the caller walks the volume whole.

import type { FileEntry, Volume, WalkOptions } from '../source.js';
import { checkAbort, typeOfMode, type Extent } from './entry.js';
import { ExtFs, entryOf, readDirEntries, type Inode } from './ext.js';
import type { PrevRow } from './ext-reuse.js';

const DIR = 2;
const TYPE_CODE: Record<FileEntry['type'], number> = { file: 1, dir: 2, symlink: 3, other: 4 };

/** The previous rows of the volume, where they lie (CatalogWriter.beginEdit). */
export interface EditRows {
  /** The root row's id ('/', the writer's own: never walked, never changed). */
  root: number;
  /** Every directory row and every row with `deps` (not the root). */
  meta(): PrevRow[];
  /** The rows of these inodes, and of inodes outside [1, count] (not the root). */
  ofInodes(inodes: number[], count: number): PrevRow[];
  /** The rows under `parent` (without their deps). */
  children(parent: number): Array<Omit<PrevRow, 'deps'>>;
}

export interface EditSink {
  /** Row `row` (its id, parent and name) as read now. */
  replace(row: PrevRow, e: FileEntry): void;
  /** A new row under `parent`: its id. */
  add(parent: number, name: string, e: FileEntry): number;
  /** Drops rows `ids` and every row whose parent is one of `under`: the count dropped. */
  drop(ids: number[], under: number[]): number;
}

/** What changed, as the caller finds it from the store for the volume ranges asked about (a RangeSet, changed-ranges.ts). */
export type ChangedIn = (wanted: Array<[number, number]>) => Promise<{ overlaps(offset: number, length: number): boolean; within(from: number, to: number): Array<[number, number]> }>;

export async function walkExtEdit(
  vol: Volume,
  prevVol: Volume,
  rows: EditRows,
  changedIn: ChangedIn,
  sink: EditSink,
  opts: WalkOptions,
): Promise<{ read: number; added: number; dropped: number } | undefined> {
  const fs = await ExtFs.open(vol);
  const pfs = await ExtFs.open(prevVol);
  if (!fs.sameLayout(pfs)) return undefined;
  const note = (s: string) => opts.onNote?.(`${vol.name}: ${s}`);

  // '/' is never a walked entry (its row has no deps): its blocks, as the previous point had
  // them, are asked about here (read while SQLite answers the query below).
  const rootDepsRead = (async () => {
    const m: Extent[] = [];
    return [...(await pfs.extents(await pfs.inode(2), m)), ...m];
  })().catch(() => undefined);
  // The inode tables first: their changed segments (both points') are read and decoded on the
  // store's threads while SQLite answers meta() on this one (it blocks it ~10 ms). Found apart
  // from the blocks' changes below: refine() answers each range asked exactly, whichever call.
  const tables = await changedIn(fs.inodeTableRanges());
  const dirtyRead = fs.changedInodes(pfs, (a, b) => tables.within(a, b));
  dirtyRead.catch(() => undefined); // awaited below; not unhandled meanwhile
  // Let the reads reach the store's threads before this thread is taken.
  await new Promise((resolve) => setImmediate(resolve));
  const meta = rows.meta();
  const rootDeps = await rootDepsRead;
  if (!rootDeps) return undefined;
  const wanted: Array<[number, number]> = [];
  for (const r of meta) if (r.deps) for (const d of r.deps) wanted.push([d.physical, d.physical + d.length]);
  for (const d of rootDeps) wanted.push([d.physical, d.physical + d.length]);
  const changed = await changedIn(wanted);
  const dirty = await dirtyRead;

  const depsClean = async (deps: Array<{ physical: number; length: number }>): Promise<boolean> => {
    for (const d of deps) {
      if (!changed.overlaps(d.physical, d.length)) continue;
      const [x, y] = await Promise.all([prevVol.read(d.physical, d.length), vol.read(d.physical, d.length)]);
      if (!x.equals(y)) return false;
    }
    return true;
  };

  // The rows to read again: a changed record, changed blocks, or a directory without blocks
  // recorded (inline: its entries are in its record, read again to be sure).
  const touched: PrevRow[] = [];
  const considered = new Set<number>();
  // A promise only for a row whose blocks must be compared: most of the ~1,700 rows are
  // decided at once, and an async call per row was a promise each.
  const consider = (r: PrevRow): void | Promise<void> => {
    if (considered.has(r.id)) return;
    considered.add(r.id);
    if (r.inode < 1 || r.inode > fs.inodeCount || dirty.has(r.inode) || (r.type === DIR && !r.deps)) touched.push(r);
    else if (r.deps && r.deps.some((d) => changed.overlaps(d.physical, d.length))) {
      return depsClean(r.deps).then((clean) => {
        if (!clean) touched.push(r);
      });
    }
  };
  const considerAll = async (rs: PrevRow[]): Promise<void> => {
    const waits: Array<Promise<void>> = [];
    for (const r of rs) {
      const w = consider(r);
      if (w) waits.push(w);
    }
    await Promise.all(waits);
  };
  await considerAll(meta);
  const rootTouched = dirty.has(2) || !(await depsClean(rootDeps));

  // 1. Changed directories read again; their entries against their previous children.
  const rootRow: PrevRow = { id: rows.root, parent: 0, name: '', type: DIR, inode: 2, deps: null };
  const dirs = touched.filter((r) => r.type === DIR);
  if (rootTouched) dirs.unshift(rootRow);
  // What went away: `dropped` holds the rows dropped by id (files, and every directory of a
  // subtree that went, found here from `meta`'s directory rows), `droppedDirs` the directories
  // whose rows below go too (SQLite deletes those by parent; no row of theirs reaches JS).
  const dropped = new Set<number>();
  const droppedDirs = new Set<number>();
  const isDropped = (r: { id: number; parent: number }) => dropped.has(r.id) || droppedDirs.has(r.parent);
  let subdirs: Map<number, number[]> | undefined;
  const dropDir = (id: number) => {
    if (!subdirs) {
      subdirs = new Map();
      for (const r of meta) {
        if (r.type !== DIR) continue;
        const l = subdirs.get(r.parent);
        if (l) l.push(r.id);
        else subdirs.set(r.parent, [r.id]);
      }
    }
    const stack = [id];
    while (stack.length > 0) {
      const d = stack.pop()!;
      if (droppedDirs.has(d)) continue;
      droppedDirs.add(d);
      dropped.add(d);
      for (const k of subdirs.get(d) ?? []) stack.push(k);
    }
  };
  const adds: Array<{ dir: PrevRow; kids: Array<{ ino: number; name: string }> }> = [];
  const typeNow = async (ino: number): Promise<number | undefined> => {
    try {
      return TYPE_CODE[typeOfMode((await fs.inode(ino)).mode)];
    } catch {
      return undefined;
    }
  };
  // A directory's entries, or 'freed' for one deleted (no links) or whose inode is now
  // something else: it is in a subtree that went away, unless the file system is damaged, and
  // is read only if it is still reached after its parents were read.
  type Entries = Array<{ ino: number; name: string }> | 'freed' | null | Error;
  const entriesOf = (ino: Inode | Error, evenFreed: boolean): Entries | Promise<Entries> => {
    if (ino instanceof Error) return ino;
    if ((ino.links === 0 || typeOfMode(ino.mode) !== 'dir') && !evenFreed) return 'freed';
    if (typeOfMode(ino.mode) !== 'dir') return null; // no longer a directory, yet reached
    return (async () => readDirEntries(fs, ino, await fs.extents(ino)))().catch((err) => err as Error);
  };
  let round = dirs;
  for (let evenFreed = false; round.length > 0; evenFreed = true) {
    checkAbort(opts);
    // The records first (mostly in the table bytes changedInodes read), then the blocks of the
    // living directories, all at once: the reads wait on the store, not on each other.
    const inodes = await Promise.all(round.map((d) => fs.inode(d.inode).catch((err) => err as Error)));
    const reading = round.map((d, i) => entriesOf(inodes[i], evenFreed));
    // While the store's threads decode those blocks, SQLite gives their previous children here
    // (only for the directories being read: a deleted one's children are never asked for).
    await new Promise((resolve) => setImmediate(resolve));
    const before = reading.map((r, i) => (r instanceof Promise ? rows.children(round[i].id) : undefined));
    const entries = await Promise.all(reading);
    const later: PrevRow[] = [];
    for (let i = 0; i < round.length; i++) {
      const d = round[i];
      const kids = entries[i];
      if (kids === 'freed') {
        later.push(d);
        continue;
      }
      if (kids === null) return undefined;
      if (kids instanceof Error) {
        note(`directory ${d.name || '/'} (inode ${d.inode}) could not be read: ${kids.message}`);
        return undefined;
      }
      const byName = new Map(before[i]!.map((c) => [c.name, c]));
      const add: Array<{ ino: number; name: string }> = [];
      for (const k of kids) {
        const c = byName.get(k.name);
        // The same name for the same inode (of the same type, if its record changed) stays.
        if (c && c.inode === k.ino && (!dirty.has(k.ino) || (await typeNow(k.ino)) === c.type)) byName.delete(k.name);
        else add.push(k);
      }
      // What went away, with everything below it: gone from the file before the rows of
      // changed inodes are asked for, so that those are only the living ones (a deleted file's
      // record changed too).
      for (const g of byName.values()) {
        if (g.type === DIR) dropDir(g.id);
        else dropped.add(g.id);
      }
      if (add.length > 0) adds.push({ dir: d, kids: add });
    }
    round = later.filter((d) => !isDropped(d));
  }
  const droppedRows = dropped.size > 0 ? sink.drop([...dropped], [...droppedDirs]) : 0;
  // The other rows of changed inodes (files, symlinks: directories were all in `meta`).
  await considerAll(rows.ofInodes([...dirty], fs.inodeCount));

  // 2. The changed rows that stay, read again under their ids.
  let read = 0;
  const becameDirs: PrevRow[] = [];
  for (const r of touched) {
    checkAbort(opts);
    if (isDropped(r)) continue;
    let inode;
    try {
      inode = await fs.inode(r.inode);
    } catch (err) {
      note(`${r.name}: ${(err as Error).message}`);
      return undefined;
    }
    const { entry } = await entryOf(fs, inode, `/${r.name}`, note);
    if (TYPE_CODE[entry.type] !== r.type) {
      // A directory's rows below it would go too: a full walk says that in its own order.
      if (r.type === DIR) return undefined;
      if (entry.type === 'dir') becameDirs.push(r);
    }
    sink.replace(r, entry);
    read++;
  }

  // 3. New entries, walked as a full walk would (depth first, each directory once).
  const live = new Set<number>([2]);
  for (const r of meta) if (r.type === DIR && !dropped.has(r.id)) live.add(r.inode);
  let added = 0;
  const stack: Array<{ parent: number; name: string; ino: number }> = [];
  for (const { dir, kids } of adds) if (!isDropped(dir)) for (const k of kids) stack.push({ parent: dir.id, name: k.name, ino: k.ino });
  for (const r of becameDirs) {
    if (live.has(r.inode)) return undefined;
    live.add(r.inode);
    try {
      const ino = await fs.inode(r.inode);
      for (const k of await readDirEntries(fs, ino, await fs.extents(ino))) stack.push({ parent: r.id, name: k.name, ino: k.ino });
    } catch {
      return undefined;
    }
  }
  while (stack.length > 0) {
    checkAbort(opts);
    const x = stack.pop()!;
    let inode;
    try {
      inode = await fs.inode(x.ino);
    } catch (err) {
      note(`${x.name}: ${(err as Error).message}`);
      return undefined;
    }
    const { entry, dirExtents } = await entryOf(fs, inode, `/${x.name}`, note);
    const id = sink.add(x.parent, x.name, entry);
    added++;
    if (entry.type !== 'dir') continue;
    if (live.has(x.ino)) return undefined; // a directory reached twice (damage): a full walk orders that
    live.add(x.ino);
    try {
      for (const k of await readDirEntries(fs, inode, dirExtents ?? (await fs.extents(inode)))) stack.push({ parent: id, name: k.name, ino: k.ino });
    } catch (err) {
      note(`directory ${x.name} (inode ${x.ino}) could not be read: ${(err as Error).message}`);
      return undefined;
    }
  }
  return { read, added, dropped: droppedRows };
}
