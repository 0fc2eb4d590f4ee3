// Builds a segment tree bottom-up from a sequence of entries, one grouper per level.
//
// Grouping after a node boundary depends only on the entries that follow (node.ts), so
// when an edit's new entries line up again with the old tree, whole old subtrees are reused
// as single entries: the builder then touches O(height x fanout) entries for an edit, not the
// file. The result is canonical: the same bytes give the same root however they were written
// (one stream, offset writes, truncates), which the tests check.

import { vmError } from '../../errors.js';
import { ZERO_FP } from '../codec/fingerprint.js';
import { encodeNode, endsGroup, type Entry, zeroEntry } from './node.js';
import type { TreeView } from './reader.js';
import { EMPTY_VERSION, type FileVersion } from './version.js';

export interface NodeSink {
  /** Stores an encoded node; returns its fingerprint. */
  storeNode(level: number, bytes: Buffer): Buffer;
}

interface Level {
  pending: Entry[];
  /** Entries this build pushed at this level (reused or made), zero runs merged. */
  pushed: number;
}

export class TreeBuilder {
  private readonly levels: Level[] = [];
  private size = 0;

  constructor(private readonly sink: NodeSink) {}

  private level(l: number): Level {
    while (this.levels.length <= l) this.levels.push({ pending: [], pushed: 0 });
    return this.levels[l];
  }

  /** True when every level below `l` stands at a node boundary. */
  atBoundaryBelow(l: number): boolean {
    for (let i = 0; i < l && i < this.levels.length; i++) if (this.levels[i].pending.length > 0) return false;
    return true;
  }

  /** Adds an entry of level `l` covering the next `e.len` bytes of the file. */
  push(l: number, e: Entry): void {
    this.size += e.len;
    this.add(l, e);
  }

  private add(l: number, e: Entry): void {
    const lv = this.level(l);
    const p = lv.pending;
    if (e.zero) {
      if (l !== 0) throw vmError('INVALID_ARGUMENT', 'zero runs exist only at the data level');
      const last = p[p.length - 1];
      if (last?.zero) {
        p[p.length - 1] = zeroEntry(last.len + e.len);
        return;
      }
    }
    p.push(e);
    lv.pushed++;
    if (endsGroup(e, p.length)) this.emit(l);
  }

  private emit(l: number): void {
    const lv = this.levels[l];
    const entries = lv.pending;
    lv.pending = [];
    let len = 0;
    for (const e of entries) len += e.len;
    const fp = this.sink.storeNode(l + 1, encodeNode(l + 1, entries));
    this.add(l + 1, { fp, len, zero: false });
  }

  /**
   * Adds the old version's bytes [from, to), which start at a data-segment boundary where the
   * new stream is cut too, taking the largest old subtrees that fit. `last` says the new file
   * ends where this range does; only then may a subtree ending at the old end be reused (its
   * last boundary was forced by the end of the file, not by content).
   */
  async reuse(old: TreeView, from: number, to: number, last: boolean): Promise<void> {
    let o = from;
    while (o < to) {
      let done = false;
      for (let l = old.height; l >= 0 && !done; l--) {
        if (!this.atBoundaryBelow(l)) continue;
        const { entry, start } = await old.entryAt(l, o);
        if (start !== o) continue;
        const end = o + entry.len;
        if (end > to) continue;
        if (end === old.size && !(last && to === old.size)) continue;
        this.push(l, entry);
        o = end;
        done = true;
      }
      if (!done) throw vmError('IO', `internal: no old entry starts at offset ${o} of ${old.size}`);
    }
  }

  /**
   * A copy of this builder's state (pending entries at every level): finishing the copy gives
   * the version of what was pushed so far while this one goes on (TreeWriter.checkpoint). The
   * copy stores the right edge's nodes through the same sink; this builder never sees them.
   */
  fork(): TreeBuilder {
    const b = new TreeBuilder(this.sink);
    b.size = this.size;
    for (const lv of this.levels) b.levels.push({ pending: [...lv.pending], pushed: lv.pushed });
    return b;
  }

  finish(): FileVersion {
    for (let l = 0; l < this.levels.length; l++) {
      const lv = this.levels[l];
      if (lv.pending.length === 0) continue;
      let higher = false;
      for (let h = l + 1; h < this.levels.length; h++) if (this.levels[h].pushed > 0) higher = true;
      if (!higher && lv.pushed === 1) {
        const root = lv.pending[0];
        return { root: root.zero ? ZERO_FP : root.fp, size: this.size, height: l };
      }
      this.emit(l);
    }
    if (this.size !== 0) throw vmError('IO', 'internal: tree builder lost its root');
    return EMPTY_VERSION;
  }
}
