// Reading a file version: descend the segment tree by offset to the data segments covering a
// range. Zero runs read as zeros without touching the store.

import { vmError } from '../../errors.js';
import { isZeroFp } from '../codec/fingerprint.js';
import type { ReadPiece, SegmentReads } from '../segment-reader.js';
import { childAt, childEntry, childFp, type Entry, type Node } from './node.js';
import type { FileVersion } from './version.js';

export interface Placed {
  entry: Entry;
  start: number;
}

interface Frame {
  node: Node;
  idx: number;
  base: number;
}

/** How many data segments one read step fetches together. */
const FETCH_BATCH = 2048;

export class TreeView {
  constructor(
    readonly version: FileVersion,
    private readonly reader: SegmentReads,
  ) {}

  get size(): number {
    return this.version.size;
  }

  get height(): number {
    return this.version.height;
  }

  rootEntry(): Entry {
    return { fp: this.version.root, len: this.version.size, zero: this.version.height === 0 && isZeroFp(this.version.root) };
  }

  /** The entry of level `level` (0 = data) containing byte `off` (off < size). */
  async entryAt(level: number, off: number): Promise<Placed> {
    const v = this.version;
    if (level > v.height) throw vmError('INVALID_ARGUMENT', `level ${level} is above the tree (height ${v.height})`);
    if (level === v.height) return { entry: this.rootEntry(), start: 0 };
    const { node, base } = await this.nodeAt(level, off);
    const i = childAt(node, off - base);
    return { entry: childEntry(node, i), start: base + node.starts[i] };
  }

  /**
   * The node of level `level + 1` whose children (the level-`level` entries) hold byte `off`
   * (off < size, level < height), with its offset in the file: a caller that steps through
   * entries keeps it and descends again only when it steps past its end.
   */
  async nodeAt(level: number, off: number): Promise<{ node: Node; base: number }> {
    const v = this.version;
    if (level >= v.height) throw vmError('INVALID_ARGUMENT', `no node above level ${level} in a tree of height ${v.height}`);
    let node = await this.reader.node(v.root);
    let base = 0;
    while (node.level > level + 1) {
      const i = childAt(node, off - base);
      base += node.starts[i];
      node = await this.reader.node(childFp(node, i));
    }
    return { node, base };
  }

  /** Data-level entries overlapping [from, to), in order. */
  async *leaves(from: number, to: number): AsyncGenerator<Placed> {
    const v = this.version;
    if (from >= to || from >= v.size) return;
    if (v.height === 0) {
      yield { entry: this.rootEntry(), start: 0 };
      return;
    }
    const stack = await this.descend(from);
    for (;;) {
      const top = stack[stack.length - 1];
      const start = top.base + top.node.starts[top.idx];
      if (start >= to) return;
      yield { entry: childEntry(top.node, top.idx), start };
      if (++top.idx < top.node.count) continue;
      if (!(await this.nextLevel1(stack))) return;
    }
  }

  /**
   * The [start, end) runs of data within [from, to) (clipped to the file), ascending and
   * merged; the rest are zero runs the store never stored (holes). One walk with the children
   * of each node above level 1 fetched in one batch: SEEK_DATA/SEEK_HOLE step through the
   * leaves one await each and fetch the nodes one by one.
   */
  async dataRuns(from = 0, to = this.version.size): Promise<Array<{ start: number; end: number }>> {
    const v = this.version;
    to = Math.min(to, v.size);
    const out: Array<{ start: number; end: number }> = [];
    if (from >= to) return out;
    const add = (a: number, b: number) => {
      const s = Math.max(a, from);
      const e = Math.min(b, to);
      if (s >= e) return;
      const last = out[out.length - 1];
      if (last && last.end === s) last.end = e;
      else out.push({ start: s, end: e });
    };
    if (v.height === 0) {
      if (!this.rootEntry().zero) add(0, v.size);
      return out;
    }
    const visit = async (node: Node, base: number): Promise<void> => {
      // Children overlapping [from, to).
      let i = childAt(node, Math.max(0, from - base));
      let j = i;
      while (j < node.count && base + node.starts[j] < to) j++;
      if (node.level === 1) {
        for (let k = i; k < j; k++) if (!isZeroFp(childFp(node, k))) add(base + node.starts[k], base + node.starts[k + 1]);
        return;
      }
      const fps: Buffer[] = [];
      const at: number[] = [];
      for (; i < j; i++) {
        fps.push(childFp(node, i));
        at.push(base + node.starts[i]);
      }
      const kids = await this.reader.nodesOf(fps);
      for (let k = 0; k < kids.length; k++) await visit(kids[k], at[k]);
    };
    await visit(await this.reader.node(v.root), 0);
    return out;
  }

  /** Bytes [off, off + len) clipped to the file size. */
  async read(off: number, len: number): Promise<Buffer> {
    const end = Math.min(this.version.size, off + len);
    if (off >= end) return Buffer.alloc(0);
    const out = Buffer.allocUnsafe(end - off);
    await this.readInto(off, out);
    return out;
  }

  /**
   * Fills `out` with bytes [off, off + out.length), which must lie within the file. Zero runs
   * are filled in place, or, given `zeros`, left unwritten and listed there instead as
   * (start, end) pairs of out's offsets, in order and merged; data segments wanted whole are
   * decoded straight into `out`.
   */
  async readInto(off: number, out: Buffer, zeros?: number[]): Promise<void> {
    const end = off + out.length;
    if (end > this.version.size) throw vmError('INVALID_ARGUMENT', `read of [${off}, ${end}) beyond the end of a ${this.version.size}-byte version`);
    if (off >= end) return;
    let pieces: ReadPiece[] = [];
    await this.walk(off, end, (fp, start, n, zero) => {
      const a = Math.max(off, start);
      const b = Math.min(end, start + n);
      if (zero) {
        if (!zeros) out.fill(0, a - off, b - off);
        else if (zeros.length > 0 && zeros[zeros.length - 1] === a - off) zeros[zeros.length - 1] = b - off;
        else zeros.push(a - off, b - off);
      } else pieces.push({ fp, dst: a - off, skip: a - start, take: b - a });
      if (pieces.length < FETCH_BATCH) return undefined;
      const batch = pieces;
      pieces = [];
      return this.reader.readInto(out, batch);
    });
    if (pieces.length) await this.reader.readInto(out, pieces);
  }

  /**
   * Calls `visit` for each data-level entry overlapping [from, to), in order, awaiting only
   * node fetches (most come from the node cache) and whatever `visit` returns.
   */
  private async walk(from: number, to: number, visit: (fp: Buffer, start: number, len: number, zero: boolean) => Promise<void> | undefined): Promise<void> {
    const v = this.version;
    if (from >= to || from >= v.size) return;
    if (v.height === 0) {
      const e = this.rootEntry();
      await visit(e.fp, 0, e.len, e.zero);
      return;
    }
    const stack = await this.descend(from);
    for (;;) {
      // All the leaves of the level-1 node on top, then on to the next one.
      const top = stack[stack.length - 1];
      const n = top.node;
      for (let i = top.idx; i < n.count; i++) {
        const start = top.base + n.starts[i];
        if (start >= to) return;
        const fp = childFp(n, i);
        const p = visit(fp, start, n.starts[i + 1] - n.starts[i], isZeroFp(fp));
        if (p) await p;
      }
      if (!(await this.nextLevel1(stack))) return;
    }
  }

  /** The path from the root down to the level-1 node holding offset `from`. */
  private async descend(from: number): Promise<Frame[]> {
    const stack: Frame[] = [];
    let node = await this.reader.node(this.version.root);
    let base = 0;
    for (;;) {
      const idx = childAt(node, from - base);
      stack.push({ node, idx, base });
      if (node.level === 1) return stack;
      base += node.starts[idx];
      node = await this.reader.node(childFp(node, idx));
    }
  }

  /**
   * Moves `stack` (whose level-1 node on top is done) to the next level-1 node, at its first
   * entry; false at the end of the tree.
   */
  private async nextLevel1(stack: Frame[]): Promise<boolean> {
    stack.pop();
    let level = stack.length - 1;
    if (level >= 0) stack[level].idx++;
    while (level >= 0 && stack[level].idx >= stack[level].node.count) {
      stack.pop();
      level--;
      if (level >= 0) stack[level].idx++;
    }
    if (level < 0) return false;
    while (stack[stack.length - 1].node.level > 1) {
      const f = stack[stack.length - 1];
      const child = await this.reader.node(childFp(f.node, f.idx));
      stack.push({ node: child, idx: 0, base: f.base + f.node.starts[f.idx] });
    }
    return true;
  }

  /**
   * The whole range as a stream of buffers, fetching ahead while the consumer works: the
   * sequential read path.
   */
  async *stream(from = 0, to = this.version.size, chunkBytes = 4 * 1024 * 1024): AsyncGenerator<Buffer> {
    to = Math.min(to, this.version.size);
    const window: Array<Promise<Buffer>> = [];
    let pos = from;
    const ahead = 3;
    while (pos < to || window.length > 0) {
      while (pos < to && window.length < ahead) {
        const n = Math.min(chunkBytes, to - pos);
        window.push(this.read(pos, n));
        pos += n;
      }
      yield await window.shift()!;
    }
  }
}

