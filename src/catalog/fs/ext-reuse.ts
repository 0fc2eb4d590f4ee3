// An ext walk that reuses the previous restore point's catalog below the volume level: only
// what lies in changed bytes is read again. A row of the previous catalog still holds when its
// inode's record and its `deps` (directory blocks, extent-tree and indirect blocks, a slow
// symlink's block) lie in bytes that did not change: those bytes are all the walker read to make
// it. A directory whose record and blocks did not change has the same entries, so its children
// are taken from the previous catalog without reading it; a changed one is read and its
// entries matched by name and inode against the previous ones.
//
// The result is the rows a full walk would give (test/catalog-reuse.test.ts compares both);
// its cost follows the changed metadata instead of the file count. The caller gives the bytes
// that changed (changed-ranges.ts) and checks that the previous walk was whole (no notes).

import type { FileEntry, Volume, WalkOptions } from '../source.js';
import { checkAbort, joinPath } from './entry.js';
import { ExtFs, entryOf, readDirEntries, sameEntryFields } from './ext.js';

/** A row of the previous catalog, as the reuse needs it. */
export interface PrevRow {
  id: number;
  parent: number;
  name: string;
  /** catalog-db's type code: 1 file, 2 dir, 3 symlink, 4 other. */
  type: number;
  inode: number;
  deps: Array<{ physical: number; length: number }> | null;
}

export interface ReuseSink {
  /** The previous row `prevId` holds as it is (its id is idOfPrev(prevId), its parent's too). */
  keep(prevId: number): void;
  /** A row read now, with its id and its parent's. */
  emit(id: number, parent: number, e: FileEntry): void;
  idOfPrev(prevId: number): number;
  newId(): number;
}

const TYPE_CODE: Record<FileEntry['type'], number> = { file: 1, dir: 2, symlink: 3, other: 4 };

/**
 * Walks `vol` reusing the rows of `prev` (the previous catalog's rows of this volume; `root` its
 * root row) where their bytes are as they were in `prevVol`: `changedIn` is given the volume's
 * ranges the rows were read from and answers which bytes of them changed. Returns undefined
 * when it cannot (the file system's layout moved: everything is walked anew by the caller), else
 * the counts of rows kept and read.
 */
export async function walkExtReusing(
  vol: Volume,
  prevVol: Volume,
  prev: { root: number; rows: PrevRow[] },
  changedIn: (wanted: Array<[number, number]>) => Promise<(offset: number, length: number) => boolean>,
  sink: ReuseSink,
  opts: WalkOptions,
): Promise<{ kept: number; read: number } | undefined> {
  const fs = await ExtFs.open(vol);
  const pfs = await ExtFs.open(prevVol);
  if (!fs.sameLayout(pfs)) return undefined;
  const note = (s: string) => opts.onNote?.(`${vol.name}: ${s}`);
  const children = new Map<number, PrevRow[]>();
  let rootRow: PrevRow | undefined;
  for (const r of prev.rows) {
    if (r.id === prev.root) rootRow = r;
    else {
      let l = children.get(r.parent);
      if (!l) children.set(r.parent, (l = []));
      l.push(r);
    }
  }
  if (!rootRow) return undefined;
  const rec = fs.recordBytes;
  // Every record lies in an inode table: the tables and the rows' blocks are what is asked.
  const wanted: Array<[number, number]> = fs.inodeTableRanges();
  for (const r of prev.rows) if (r.deps) for (const d of r.deps) wanted.push([d.physical, d.physical + d.length]);
  const changed = await changedIn(wanted);
  // The store's answer is by segment (8 KiB on average, 32 inode records): where it says
  // "changed", the bytes are compared, and for a record only the fields an entry is made of
  // (the sample's day 2 changed 5,063 records, 3,495 of them deleted files, most others only
  // in their access time and checksum).
  // Both points' inode tables held whole where they changed (a few MiB), so that most rows are
  // judged without a promise.
  const tableChanged = (start: number, end: number) => changed(start, end - start);
  await Promise.all([fs.loadTables(tableChanged), pfs.loadTables(tableChanged)]);
  const depsClean = async (r: PrevRow): Promise<boolean> => {
    for (const d of r.deps!) {
      if (!changed(d.physical, d.length)) continue;
      const [x, y] = await Promise.all([prevVol.read(d.physical, d.length), vol.read(d.physical, d.length)]);
      if (!x.equals(y)) return false;
    }
    return true;
  };
  const recordClean = async (ino: number): Promise<boolean> => {
    const [x, y] = await Promise.all([pfs.record(ino), fs.record(ino)]);
    return sameEntryFields(x, y);
  };
  const clean = (r: PrevRow): boolean | Promise<boolean> => {
    if (r.inode < 1 || r.inode > fs.inodeCount) return false;
    // A directory's entries are in its blocks: without them recorded (an inline directory has
    // none; '/' is never yielded by the walk) it is read again.
    if (r.type === TYPE_CODE.dir && !r.deps) return false;
    if (changed(fs.inodeOffset(r.inode), rec)) {
      const x = pfs.recordNow(r.inode);
      const y = fs.recordNow(r.inode);
      if (!x || !y) return recordClean(r.inode).then((ok) => ok && (!r.deps || depsClean(r)));
      if (!sameEntryFields(x, y)) return false;
    }
    if (!r.deps || !r.deps.some((d) => changed(d.physical, d.length))) return true;
    return depsClean(r);
  };

  let kept = 0;
  let read = 0;
  // The root row is the writer's own ('/' is never walked): kept, and its entries read again.
  sink.keep(rootRow.id);
  kept++;
  const seen = new Set<number>([2]);
  type Dir = { ino: number; path: string; id: number; prev?: PrevRow; clean: boolean };
  const stack: Dir[] = [{ ino: 2, path: '/', id: sink.idOfPrev(rootRow.id), prev: rootRow, clean: false }];
  const subdirs: Dir[] = [];

  const fresh = async (dir: Dir, name: string, ino: number, match: PrevRow | undefined): Promise<void> => {
    const path = joinPath(dir.path, name);
    let inode;
    try {
      inode = await fs.inode(ino);
    } catch (err) {
      note(`${path}: ${(err as Error).message}`);
      return;
    }
    const { entry } = await entryOf(fs, inode, path, note);
    const same = match && match.inode === ino && match.type === TYPE_CODE[entry.type] ? match : undefined;
    const id = same ? sink.idOfPrev(same.id) : sink.newId();
    sink.emit(id, dir.id, entry);
    read++;
    if (entry.type === 'dir' && !seen.has(ino)) {
      seen.add(ino);
      subdirs.push({ ino, path, id, prev: same, clean: false });
    }
  };
  const keep = (dir: Dir, c: PrevRow): void => {
    sink.keep(c.id);
    kept++;
    if (c.type === TYPE_CODE.dir && !seen.has(c.inode)) {
      seen.add(c.inode);
      subdirs.push({ ino: c.inode, path: joinPath(dir.path, c.name), id: sink.idOfPrev(c.id), prev: c, clean: true });
    }
  };

  while (stack.length) {
    checkAbort(opts);
    const dir = stack.pop()!;
    const before = dir.prev ? children.get(dir.prev.id) ?? [] : [];
    if (dir.clean) {
      // Same record, same blocks: the same entries.
      for (const c of before) {
        let ok = clean(c);
        if (typeof ok !== 'boolean') ok = await ok;
        if (ok) keep(dir, c);
        else await fresh(dir, c.name, c.inode, c);
      }
    } else {
      let kids: Array<{ ino: number; name: string }>;
      try {
        const d = await fs.inode(dir.ino);
        kids = await readDirEntries(fs, d, await fs.extents(d));
      } catch (err) {
        note(`directory ${dir.path} (inode ${dir.ino}) could not be read: ${(err as Error).message}`);
        continue;
      }
      const byName = new Map(before.map((c) => [c.name, c]));
      for (const k of kids) {
        const c = byName.get(k.name);
        let ok = c !== undefined && c.inode === k.ino && clean(c);
        if (typeof ok !== 'boolean') ok = await ok;
        if (ok) keep(dir, c!);
        else await fresh(dir, k.name, k.ino, c);
      }
    }
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]);
    subdirs.length = 0;
  }
  return { kept, read };
}
