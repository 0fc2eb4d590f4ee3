// Names the addon answers "no such name" by itself (native/src/fuse3/names.c): a lookup of a
// name that does not exist in a stored directory whose whole listing this thread handed over is
// answered on libfuse's thread, with no hop here. rsync asks four times per file for names that
// do not exist yet (its generator's stat, its receiver's open of a basis file, the O_EXCL create
// of its temporary name and the rename's target; the kernel asks the last two whatever it
// caches): a quarter of the requests it made reach this thread.
//
// The discipline is attrs.c's: a directory's names are handed over only from the namespace's
// cached listing (Meta.cachedNames, read synchronously, so nothing can land between the read and
// the hand-over), and every transaction the namespace learns is followed synchronously
// (Meta.watchTxns, before its maker is answered): a name made in a held directory is added, a
// name removed is removed, a deleted directory is dropped, and a transaction that may change
// anything (raw records, a volume forgotten) drops them all. A name the addon still holds after
// its removal only sends that lookup here.
//
// Only stored directories (volumes' inodes): the top of the mount and `.snapshots` list shares
// and snapshots, which change without an entry; the addon never answers ".snapshots" (a share's
// top shows it without an entry), "*.files" (the catalog's views), "." or "..".

import type { Meta, TxnWatcher } from '../namespace/meta.js';
import { parseNode } from '../namespace/node-id.js';
import type { LlSession } from './ll/session.js';

/** Directories held at once: the addon's table's size (names.c, NDIRS). */
const MAX_DIRS = 4096;
/** Names held at once, all directories together (~100 bytes each in the addon). */
const MAX_NAMES = 200_000;
/** A directory with more names than this is not handed over (its listing alone would be a burst). */
const MAX_DIR_NAMES = 20_000;

export class NameTable {
  /** Directories handed over: "vol/ino" (the namespace's key) -> node id and names held, oldest first. */
  private readonly held = new Map<string, { node: bigint; names: number }>();
  private names = 0;
  private session: LlSession | undefined;
  private readonly unwatch: () => void;

  constructor(private readonly meta: Meta) {
    this.unwatch = meta.watchTxns((t) => this.learnt(t));
  }

  /**
   * Hands the addon the names of stored directory `dir` if the namespace holds its listing and
   * it is not held already (after a lookup that found no such name, or a directory just made).
   */
  offer(s: LlSession, dir: bigint): void {
    let ref;
    try {
      ref = parseNode(dir);
    } catch {
      return;
    }
    if (ref.kind !== 'vol') return;
    const key = `${ref.vol}/${ref.ino}`;
    if (this.held.has(key)) return;
    const names = this.meta.cachedNames(ref.vol, ref.ino);
    if (!names || names.length > MAX_DIR_NAMES) return;
    while (this.held.size > 0 && (this.held.size >= MAX_DIRS || this.names + names.length > MAX_NAMES)) {
      const [[old, h]] = this.held;
      this.forget(old!, h!);
    }
    this.session = s;
    if (!s.setNames(dir, names)) return;
    this.held.set(key, { node: dir, names: names.length });
    this.names += names.length;
  }

  /** Directories held now (tests). */
  get size(): number {
    return this.held.size;
  }

  /** At unmount. */
  close(): void {
    this.unwatch();
    this.held.clear();
    this.names = 0;
    this.session = undefined;
  }

  private forget(key: string, h: { node: bigint; names: number }): void {
    this.held.delete(key);
    this.names -= h.names;
    this.session?.dropNames(h.node);
  }

  private learnt(t: Parameters<TxnWatcher>[0]): void {
    const s = this.session;
    if (!s || this.held.size === 0) return;
    if (t === null || t.hasRaw) {
      this.held.clear();
      this.names = 0;
      s.clearNames();
      return;
    }
    for (const [k, e] of t.entries) {
      // "vol/parent/name": names never hold a slash.
      const cut = k.indexOf('/', k.indexOf('/') + 1);
      const dir = k.slice(0, cut);
      const h = this.held.get(dir);
      if (!h) continue;
      const name = k.slice(cut + 1);
      if (e === null) {
        s.removeName(h.node, name);
        if (h.names > 0) {
          h.names--;
          this.names--;
        }
      } else if (s.addName(h.node, name)) {
        h.names++;
        this.names++;
      } else {
        // Not held by the addon any more (its slot taken, or out of memory): lookups go to JS.
        this.held.delete(dir);
        this.names -= h.names;
      }
    }
    for (const [k, n] of t.inodes) {
      if (n !== null) continue;
      const h = this.held.get(k);
      if (h) this.forget(k, h);
    }
    if (this.names > MAX_NAMES) {
      for (const [k, h] of this.held) {
        if (this.names <= MAX_NAMES) break;
        this.forget(k, h);
      }
    }
  }
}

