// Which bytes of a stored file differ between two versions, from their segment trees alone:
// an entry (data segment or tree node) at the same offset with the same length and fingerprint
// holds the same bytes, so equal subtrees are skipped without being read and only the parts
// where the trees differ are descended, down to the data segments. The answer is a superset of
// the bytes that really differ (segment boundaries may move around an edit), never a subset.
//
// The catalog uses it to re-read only the metadata of a guest file system that changed since
// the previous restore point (fs/ext-reuse.ts). Cost: the tree nodes over the differing parts.

import { FP_BYTES } from '../store/codec/fingerprint.js';
import type { TreeView } from '../store/tree/reader.js';
import { childAt, type Entry, type Node } from '../store/tree/node.js';

/** Sorted, disjoint byte ranges [start, end). */
export class RangeSet {
  private constructor(private readonly starts: number[], private readonly ends: number[]) {}

  static of(ranges: Array<[number, number]>): RangeSet {
    const sorted = ranges.filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
    const starts: number[] = [];
    const ends: number[] = [];
    for (const [a, b] of sorted) {
      if (ends.length > 0 && a <= ends[ends.length - 1]) ends[ends.length - 1] = Math.max(ends[ends.length - 1], b);
      else {
        starts.push(a);
        ends.push(b);
      }
    }
    return new RangeSet(starts, ends);
  }

  get count(): number {
    return this.starts.length;
  }

  get bytes(): number {
    let n = 0;
    for (let i = 0; i < this.starts.length; i++) n += this.ends[i] - this.starts[i];
    return n;
  }

  /** Whether any byte of [off, off + len) is in the set. */
  overlaps(off: number, len: number): boolean {
    const end = off + len;
    // The last range starting before `end`.
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid] < end) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 && this.ends[lo - 1] > off;
  }

  /** The ranges that meet [from, to), cut to it (not moved). */
  within(from: number, to: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    // The first range ending after `from`.
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ends[mid] <= from) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.starts.length && this.starts[i] < to; i++) out.push([Math.max(from, this.starts[i]), Math.min(to, this.ends[i])]);
    return out;
  }

  /** The part within [from, to), moved by -from (a volume's ranges from its disk's). */
  window(from: number, to: number): RangeSet {
    const out: Array<[number, number]> = [];
    for (let i = 0; i < this.starts.length; i++) {
      const a = Math.max(from, this.starts[i]);
      const b = Math.min(to, this.ends[i]);
      if (b > a) out.push([a - from, b - from]);
    }
    return RangeSet.of(out);
  }
}

function same(a: Entry, b: Entry): boolean {
  return a.len === b.len && a.zero === b.zero && a.fp.equals(b.fp);
}

/**
 * The entries of one level of a tree, stepped through in order: the node holding them is kept,
 * so a step inside it is an index increment, and the tree is descended from its root only past
 * the node's end. (TreeView.entryAt and leaves() descend from the root for every entry or
 * range and make an object per entry: with a range asked for each of the ~1,700 directory and
 * extent blocks of a volume, that was most of the tree compare's time and garbage.)
 */
class Cursor {
  private node: Node | undefined;
  private base = 0;
  private i = 0;
  constructor(
    private readonly v: TreeView,
    private readonly level: number,
  ) {}

  get size(): number {
    return this.v.size;
  }

  /**
   * To the entry holding byte `off` (off < the tree's size): at once inside the node held (no
   * promise made: a step is the common case), else once the tree is descended.
   */
  seek(off: number): void | Promise<void> {
    const n = this.node;
    if (n !== undefined && off >= this.base && off < this.base + n.starts[n.count]) {
      this.i = childAt(n, off - this.base);
      return;
    }
    return this.v.nodeAt(this.level, off).then(({ node, base }) => {
      this.node = node;
      this.base = base;
      this.i = childAt(node, off - base);
    });
  }

  get start(): number {
    return this.base + this.node!.starts[this.i];
  }

  get end(): number {
    return this.base + this.node!.starts[this.i + 1];
  }

  /** A zero run (data level only, as childEntry says). */
  get zero(): boolean {
    if (this.level !== 0) return false;
    const fps = this.node!.fps;
    for (let k = this.i * FP_BYTES; k < (this.i + 1) * FP_BYTES; k++) if (fps[k] !== 0) return false;
    return true;
  }

  /** The same entry as `o`'s: length, zero-ness and fingerprint (same(), without an object). */
  sameAs(o: Cursor): boolean {
    return this.end - this.start === o.end - o.start && this.zero === o.zero &&
      this.node!.fps.compare(o.node!.fps, o.i * FP_BYTES, (o.i + 1) * FP_BYTES, this.i * FP_BYTES, (this.i + 1) * FP_BYTES) === 0;
  }

  /** To the next entry; false (staying put) when this one reaches `hi` or the end of the tree. */
  next(hi: number): boolean | Promise<boolean> {
    const e = this.end;
    if (e >= hi || e >= this.v.size) return false;
    if (this.i + 1 < this.node!.count) {
      this.i++;
      return true;
    }
    return (this.seek(e) as Promise<void>).then(() => true);
  }
}

/** Both cursors to `off`, awaiting only a descent. */
function seekBoth(a: Cursor, b: Cursor, off: number): void | Promise<unknown> {
  const x = a.seek(off);
  const y = b.seek(off);
  if (x || y) return Promise.all([x, y]);
}

/** One cursor per level below each tree's root, made when first used. */
class Cursors {
  private readonly at: Cursor[] = [];
  constructor(private readonly v: TreeView) {}
  level(l: number): Cursor {
    return (this.at[l] ??= new Cursor(this.v, l));
  }
}

/**
 * What differs between versions `a` and `b` of a file, found in two steps: the parts where
 * their trees differ above the data segments (cheap: equal subtrees are skipped at the highest
 * level they are equal), then, only for the parts a caller asks about, the data segments
 * themselves (a leaf-level compare costs an iteration per segment: 40,000 for the sample image's
 * day 2, most of them in file data that no catalog question touches).
 */
export class TreeDiff {
  private constructor(
    private readonly a: TreeView,
    private readonly b: TreeView,
    /** Differing regions of the level-1 nodes (or the whole file for a tree without them). */
    private readonly regions: Array<[number, number]>,
    /** Bytes past the shorter version's end. */
    private readonly tail: Array<[number, number]>,
  ) {}

  static async of(a: TreeView, b: TreeView): Promise<TreeDiff> {
    const regions: Array<[number, number]> = [];
    const common = Math.min(a.size, b.size);
    const tail: Array<[number, number]> = a.size !== b.size ? [[common, Math.max(a.size, b.size)]] : [];
    if (common > 0 && !(a.size === b.size && a.height === b.height && same(a.rootEntry(), b.rootEntry()))) {
      const top = Math.min(a.height, b.height) - 1;
      if (top < 1) regions.push([0, common]);
      else await compare(new Cursors(a), new Cursors(b), top, 0, common, regions);
    }
    return new TreeDiff(a, b, regions, tail);
  }

  /** A superset of the changed bytes, without reading any data-level entry. */
  coarse(): RangeSet {
    return RangeSet.of([...this.regions, ...this.tail]);
  }

  /**
   * The changed bytes, exact to the data segment within every region that overlaps one of
   * `wanted` (sorted or not); elsewhere as coarse() says.
   */
  async refine(wanted: Array<[number, number]>): Promise<RangeSet> {
    const want = RangeSet.of(wanted);
    const out: Array<[number, number]> = [...this.tail];
    // Within a region only the parts asked about are descended (a level-1 region spans
    // megabytes; a walk asks about scattered 4 KiB blocks in it): the rest stays "changed".
    await Promise.all(this.regions.map(async ([lo, hi]) => {
      let at = lo;
      // The data-level entries of both trees, stepped through in order across the region's asked parts.
      const ca = this.a.height > 0 && this.b.height > 0 ? new Cursor(this.a, 0) : undefined;
      const cb = ca && new Cursor(this.b, 0);
      for (const [a, b] of want.within(lo, hi)) {
        if (a > at) out.push([at, a]);
        if (ca && cb) await compareData(ca, cb, a, b, out);
        else await compareLeaves(this.a, this.b, a, b, out);
        at = b;
      }
      if (at < hi) out.push([at, hi]);
    }));
    return RangeSet.of(out);
  }
}

/** The bytes of [0, max size) that may differ between versions `a` and `b`, exact to the data segment. */
export async function changedRanges(a: TreeView, b: TreeView): Promise<RangeSet> {
  const d = await TreeDiff.of(a, b);
  return d.refine([[0, Math.max(a.size, b.size)]]);
}

/**
 * Compares the level-`level` entries of both versions over [lo, hi), where lo and hi are entry
 * boundaries of both at this level (or the common end); differing runs of level-1 entries go
 * to `out`.
 */
async function compare(ta: Cursors, tb: Cursors, level: number, lo: number, hi: number, out: Array<[number, number]>): Promise<void> {
  const a = ta.level(level);
  const b = tb.level(level);
  const s = seekBoth(a, b, lo);
  if (s) await s;
  for (;;) {
    if (a.start === b.start && a.sameAs(b)) {
      let m = a.next(hi);
      if (m !== true && (m === false || !(await m))) return;
      m = b.next(hi);
      if (m !== true && (m === false || !(await m))) return;
      continue;
    }
    // A differing run: extend it until both sides end at the same offset again.
    const from = Math.max(lo, Math.min(a.start, b.start));
    let endA = a.end;
    let endB = b.end;
    while (endA !== endB && Math.min(endA, endB) < hi) {
      // The side that ends first ends below hi and below its size (hi <= both sizes): it has a next.
      if (endA < endB) {
        const m = a.next(hi);
        if (typeof m !== 'boolean') await m;
        endA = a.end;
      } else {
        const m = b.next(hi);
        if (typeof m !== 'boolean') await m;
        endB = b.end;
      }
    }
    const to = Math.min(hi, endA, endB);
    if (endA !== endB) {
      out.push([from, hi]);
      return;
    }
    if (level === 1) out.push([from, to]);
    else await compare(ta, tb, level - 1, from, to, out);
    if (to >= hi) return;
    let m = a.next(hi);
    if (m !== true && (m === false || !(await m))) return;
    m = b.next(hi);
    if (m !== true && (m === false || !(await m))) return;
  }
}

/** compareLeaves() with cursors at the data level (both trees of height >= 1), kept from one range to the next. */
async function compareData(a: Cursor, b: Cursor, lo: number, hi: number, out: Array<[number, number]>): Promise<void> {
  if (lo >= hi || lo >= a.size || lo >= b.size) return;
  const s = seekBoth(a, b, lo);
  if (s) await s;
  for (;;) {
    const endA = a.end;
    const endB = b.end;
    if (!(a.zero && b.zero) && !(a.start === b.start && a.sameAs(b))) {
      const from = Math.max(lo, a.start, b.start);
      const to = Math.min(hi, endA, endB);
      if (to > from) {
        const last = out[out.length - 1];
        if (last && last[1] === from) last[1] = to;
        else out.push([from, to]);
      }
    }
    let moreA = endA <= endB ? a.next(hi) : true;
    if (typeof moreA !== 'boolean') moreA = await moreA;
    let moreB = endB <= endA ? b.next(hi) : true;
    if (typeof moreB !== 'boolean') moreB = await moreB;
    if (!moreA || !moreB) return;
  }
}

/**
 * The data segments of both over [lo, hi), in step: where two overlap, their common bytes may
 * differ unless both are the same segment at the same offset or both are zero runs.
 */
async function compareLeaves(a: TreeView, b: TreeView, lo: number, hi: number, out: Array<[number, number]>): Promise<void> {
  const ia = a.leaves(lo, hi)[Symbol.asyncIterator]();
  const ib = b.leaves(lo, hi)[Symbol.asyncIterator]();
  let ra = await ia.next();
  let rb = await ib.next();
  while (!ra.done && !rb.done) {
    const pa = ra.value;
    const pb = rb.value;
    const endA = pa.start + pa.entry.len;
    const endB = pb.start + pb.entry.len;
    if (!(pa.entry.zero && pb.entry.zero) && !(pa.start === pb.start && same(pa.entry, pb.entry))) {
      const from = Math.max(lo, pa.start, pb.start);
      const to = Math.min(hi, endA, endB);
      if (to > from) {
        const last = out[out.length - 1];
        if (last && last[1] === from) last[1] = to;
        else out.push([from, to]);
      }
    }
    if (endA <= endB) ra = await ia.next();
    if (endB <= endA) rb = await ib.next();
  }
  await ia.return?.(undefined);
  await ib.return?.(undefined);
}
