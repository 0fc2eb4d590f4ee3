// Reading a file version: descend the segment tree by offset to the data segments covering a
// range. Zero runs read as zeros without touching the store.

import { vmError } from '../errors.js';
import { isZeroFp } from './fingerprint.js';
import type { SegmentReader } from './segment-reader.js';
import { childAt, childEntry, childFp, type Entry, type Node } from './tree-node.js';
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
const FETCH_BATCH = 512;

export class TreeView {
  constructor(
    readonly version: FileVersion,
    private readonly reader: SegmentReader,
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
    let node = await this.reader.node(v.root);
    let base = 0;
    while (node.level > level + 1) {
      const i = childAt(node, off - base);
      base += node.starts[i];
      node = await this.reader.node(childFp(node, i));
    }
    const i = childAt(node, off - base);
    return { entry: childEntry(node, i), start: base + node.starts[i] };
  }

  /** Data-level entries overlapping [from, to), in order. */
  async *leaves(from: number, to: number): AsyncGenerator<Placed> {
    const v = this.version;
    if (from >= to || from >= v.size) return;
    if (v.height === 0) {
      yield { entry: this.rootEntry(), start: 0 };
      return;
    }
    const stack: Frame[] = [];
    let node = await this.reader.node(v.root);
    let base = 0;
    for (;;) {
      const idx = childAt(node, from - base);
      stack.push({ node, idx, base });
      if (node.level === 1) break;
      base += node.starts[idx];
      node = await this.reader.node(childFp(node, idx));
    }
    for (;;) {
      const top = stack[stack.length - 1];
      const start = top.base + top.node.starts[top.idx];
      if (start >= to) return;
      yield { entry: childEntry(top.node, top.idx), start };
      // advance to the next leaf
      let level = stack.length - 1;
      stack[level].idx++;
      while (level >= 0 && stack[level].idx >= stack[level].node.count) {
        stack.pop();
        level--;
        if (level >= 0) stack[level].idx++;
      }
      if (level < 0) return;
      while (stack.length > 0 && stack[stack.length - 1].node.level > 1) {
        const f = stack[stack.length - 1];
        const child = await this.reader.node(childFp(f.node, f.idx));
        stack.push({ node: child, idx: 0, base: f.base + f.node.starts[f.idx] });
      }
    }
  }

  /** Bytes [off, off + len) clipped to the file size. */
  async read(off: number, len: number): Promise<Buffer> {
    const end = Math.min(this.version.size, off + len);
    if (off >= end) return Buffer.alloc(0);
    const out = Buffer.alloc(end - off);
    let batch: Placed[] = [];
    const flush = async (): Promise<void> => {
      const data = batch.filter((p) => !p.entry.zero);
      const bufs = await this.reader.segments(data.map((p) => p.entry.fp));
      data.forEach((p, i) => copyInto(out, off, end, p.start, bufs[i]));
      batch = [];
    };
    for await (const p of this.leaves(off, end)) {
      if (p.entry.zero) continue; // out is zero-filled
      batch.push(p);
      if (batch.length >= FETCH_BATCH) await flush();
    }
    if (batch.length) await flush();
    return out;
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

function copyInto(out: Buffer, off: number, end: number, start: number, data: Buffer): void {
  const from = Math.max(off, start);
  const to = Math.min(end, start + data.length);
  if (from < to) data.copy(out, from - off, from - start, to - start);
}
