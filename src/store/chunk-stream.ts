// Bytes in, segments out. Incoming bytes are copied once, in large pieces, into a shared
// slab; the segmenter cuts them there and segments are handed on as (slab, offset, length),
// so codec workers read them in place and no per-segment copy is ever made. A segment still
// open when a slab fills moves to the start of the next slab. Runs of zeros become zero
// entries without being materialised (a hole of a terabyte costs a few arithmetic steps).

import { END_MASK, Segmenter, type ChunkerParams, ZERO_FLAG } from './segmenter.js';
import { type Slab, slabPool } from './slab-pool.js';

export type ChunkItem = { kind: 'data'; slab: Slab; off: number; len: number } | { kind: 'zero'; len: number };

export interface ChunkSink {
  item(item: ChunkItem): void;
  /** The stream is about to leave `slab`: no more segments will come from it. */
  leaving(slab: Slab): void;
}

export class ChunkStream {
  private readonly seg: Segmenter;
  private readonly maxSize: number;
  private slab: Slab;
  private used = 0;
  private chunkStart = 0;
  private static zeros: Buffer | undefined;

  constructor(
    params: ChunkerParams,
    private readonly sink: ChunkSink,
  ) {
    this.seg = new Segmenter(params);
    this.maxSize = params.maxSize;
    this.slab = slabPool.get();
    if (!ChunkStream.zeros || ChunkStream.zeros.length < params.maxSize) ChunkStream.zeros = Buffer.alloc(params.maxSize);
  }

  /** True when the bytes fed so far end exactly at a segment boundary. */
  get atCut(): boolean {
    return this.seg.pending === 0;
  }

  /** Feeds bytes; `buf` is copied before feed() returns. */
  feed(buf: Uint8Array): void {
    const src = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    let at = 0;
    while (at < src.length) {
      if (this.used === this.slab.buf.length) this.rotate();
      const n = Math.min(src.length - at, this.slab.buf.length - this.used);
      src.copy(this.slab.buf, this.used, at, at + n);
      this.scan(this.used, n);
      this.used += n;
      at += n;
    }
  }

  private scan(from: number, n: number): void {
    const cuts = this.seg.push(this.slab.buf.subarray(from, from + n));
    for (let k = 0; k < cuts.length; k++) {
      const c = cuts[k];
      const end = from + (c & END_MASK);
      if ((c & ZERO_FLAG) !== 0) this.sink.item({ kind: 'zero', len: end - this.chunkStart });
      else this.sink.item({ kind: 'data', slab: this.slab, off: this.chunkStart, len: end - this.chunkStart });
      this.chunkStart = end;
    }
  }

  private rotate(): void {
    const old = this.slab;
    this.sink.leaving(old);
    const next = slabPool.get();
    const open = this.used - this.chunkStart;
    old.buf.copy(next.buf, 0, this.chunkStart, this.used);
    old.unref();
    this.slab = next;
    this.used = open;
    this.chunkStart = 0;
  }

  /** Feeds `n` zero bytes. */
  feedZeros(n: number): void {
    const zeros = ChunkStream.zeros!;
    while (n > 0) {
      if (this.atCut && this.seg.zeroFast && n >= this.maxSize) {
        // From a boundary, zeros cut exactly every maxSize bytes (packParams checks this).
        const run = Math.floor(n / this.maxSize) * this.maxSize;
        this.sink.item({ kind: 'zero', len: run });
        n -= run;
        continue;
      }
      // Feed only up to where the open segment must end, so the next round starts at a cut.
      const take = Math.min(n, this.maxSize - this.seg.pending);
      this.feed(zeros.subarray(0, take));
      n -= take;
    }
  }

  /** Ends the stream: the open segment, if any, becomes the last one. Releases the slab. */
  finish(): void {
    if (this.used > this.chunkStart) {
      const b = this.slab.buf;
      let zero = true;
      for (let i = this.chunkStart; i < this.used; i++) {
        if (b[i] !== 0) {
          zero = false;
          break;
        }
      }
      const len = this.used - this.chunkStart;
      if (zero) this.sink.item({ kind: 'zero', len });
      else this.sink.item({ kind: 'data', slab: this.slab, off: this.chunkStart, len });
      this.chunkStart = this.used;
    }
    this.sink.leaving(this.slab);
    this.slab.unref();
    this.seg.reset();
  }
}
