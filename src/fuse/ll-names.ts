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
// The kernel keeps the addon's answers as it keeps this thread's (NEG_TIMEOUT_S): a name made
// in a held directory, or in one dropped less than that long ago, is told to `madeElsewhere`,
// which invalidates the kernel's entry unless the kernel's own request made the name.
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
/** Directories followed after they were dropped, at most (past that, none is handed over until some expire). */
const MAX_DROPPED = 50_000;
/** A directory with more names than this is not handed over (its listing alone would be a burst). */
const MAX_DIR_NAMES = 20_000;

export class NameTable {
  /** Directories handed over: "vol/ino" (the namespace's key) -> node id and names held, oldest first. */
  private readonly held = new Map<string, { node: bigint; names: number }>();
  private names = 0;
  /**
   * Directories no longer held whose absent names the kernel may still keep from the addon's
   * answers: "vol/ino" -> node id and until when (performance.now() ms), oldest first. A name
   * made in one meanwhile is still told to madeElsewhere.
   */
  private readonly dropped = new Map<string, { node: bigint; until: number }>();
  private session: LlSession | undefined;
  private readonly unwatch: () => void;

  /**
   * `timeout`: seconds the kernel may keep the addon's "no such name"; `madeElsewhere` is told of
   * every name made in a held directory (synchronously, before its maker is answered), so an
   * answer the kernel keeps can be invalidated when something else than the kernel made the name.
   */
  constructor(
    private readonly meta: Meta,
    private readonly timeout: number,
    private readonly madeElsewhere: (dir: bigint, name: string) => void,
  ) {
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
    this.prune();
    if (this.dropped.size >= MAX_DROPPED) return;
    const names = this.meta.cachedNames(ref.vol, ref.ino);
    if (!names || names.length > MAX_DIR_NAMES) return;
    while (this.held.size > 0 && (this.held.size >= MAX_DIRS || this.names + names.length > MAX_NAMES)) {
      const [[old, h]] = this.held;
      this.forget(old!, h!);
    }
    this.session = s;
    if (!s.setNames(dir, names, this.timeout)) return;
    this.dropped.delete(key);
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
    this.dropped.clear();
    this.names = 0;
    this.session = undefined;
  }

  private forget(key: string, h: { node: bigint; names: number }): void {
    this.retire(key, h);
    this.session?.dropNames(h.node);
  }

  /** No longer held (the addon forgot it, or is told to): followed while the kernel may keep its answers. */
  private retire(key: string, h: { node: bigint; names: number }): void {
    this.held.delete(key);
    this.names -= h.names;
    this.dropped.delete(key);
    this.dropped.set(key, { node: h.node, until: performance.now() + (this.timeout + 1) * 1000 });
  }

  private prune(): void {
    const now = performance.now();
    for (const [k, d] of this.dropped) {
      if (d.until > now) break;
      this.dropped.delete(k);
    }
  }

  private learnt(t: Parameters<TxnWatcher>[0]): void {
    const s = this.session;
    if (!s || (this.held.size === 0 && this.dropped.size === 0)) return;
    this.prune();
    if (t === null || t.hasRaw) {
      // Raw records may change anything; a forgotten volume is gone (no name appears in it).
      if (this.held.size > 0) {
        for (const [k, h] of [...this.held]) this.retire(k, h);
        s.clearNames();
      }
      if (t === null) return;
    }
    for (const [k, e] of t.entries) {
      // "vol/parent/name": names never hold a slash.
      const cut = k.indexOf('/', k.indexOf('/') + 1);
      const dir = k.slice(0, cut);
      const h = this.held.get(dir);
      if (!h) {
        const d = e === null ? undefined : this.dropped.get(dir);
        if (d) this.madeElsewhere(d.node, k.slice(cut + 1));
        continue;
      }
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
        this.madeElsewhere(h.node, name);
      } else {
        this.madeElsewhere(h.node, name);
        // Not held by the addon any more (its slot taken, or out of memory): lookups go to JS.
        this.retire(dir, h);
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

