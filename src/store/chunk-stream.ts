// Bytes in, segments out: drives the segmenter over a stream fed in arbitrary pieces, joins
// the pieces of segments that span feeds, and turns runs of zeros into zero entries without
// ever materialising them (a hole of a terabyte costs a few arithmetic steps).

import { END_MASK, Segmenter, type ChunkerParams, ZERO_FLAG } from './segmenter.js';

export type ChunkItem = { kind: 'data'; bytes: Uint8Array } | { kind: 'zero'; len: number };

export class ChunkStream {
  private readonly seg: Segmenter;
  private readonly maxSize: number;
  private parts: Uint8Array[] = [];
  private partsLen = 0;
  private static zeros: Uint8Array | undefined;

  constructor(
    params: ChunkerParams,
    private readonly emit: (item: ChunkItem) => void,
  ) {
    this.seg = new Segmenter(params);
    this.maxSize = params.maxSize;
    if (!ChunkStream.zeros || ChunkStream.zeros.length < params.maxSize) ChunkStream.zeros = new Uint8Array(params.maxSize);
  }

  /** True when the bytes fed so far end exactly at a segment boundary. */
  get atCut(): boolean {
    return this.seg.pending === 0;
  }

  /** Feeds bytes; `buf` is only read during the call (segments are handed over as views). */
  feed(buf: Uint8Array): void {
    if (buf.length === 0) return;
    const cuts = this.seg.push(buf);
    let start = 0;
    for (let k = 0; k < cuts.length; k++) {
      const c = cuts[k];
      const end = c & END_MASK;
      if ((c & ZERO_FLAG) !== 0) {
        this.emit({ kind: 'zero', len: this.partsLen + end - start });
        this.parts = [];
        this.partsLen = 0;
      } else if (this.partsLen === 0) {
        this.emit({ kind: 'data', bytes: buf.subarray(start, end) });
      } else {
        const joined = new Uint8Array(this.partsLen + end - start);
        let at = 0;
        for (const p of this.parts) {
          joined.set(p, at);
          at += p.length;
        }
        joined.set(buf.subarray(start, end), at);
        this.parts = [];
        this.partsLen = 0;
        this.emit({ kind: 'data', bytes: joined });
      }
      start = end;
    }
    if (start < buf.length) {
      // Keep a copy: the caller may reuse its buffer after feed() returns.
      const rest = buf.slice(start);
      this.parts.push(rest);
      this.partsLen += rest.length;
    }
  }

  /** Feeds `n` zero bytes. */
  feedZeros(n: number): void {
    const zeros = ChunkStream.zeros!;
    while (n > 0) {
      if (this.atCut && this.seg.zeroFast && n >= this.maxSize) {
        // From a boundary, zeros cut exactly every maxSize bytes (packParams checks this).
        const run = Math.floor(n / this.maxSize) * this.maxSize;
        this.emit({ kind: 'zero', len: run });
        n -= run;
        continue;
      }
      // Feed only up to where the open segment must end, so the next round starts at a cut.
      const take = Math.min(n, this.maxSize - this.seg.pending);
      this.feed(zeros.subarray(0, take));
      n -= take;
    }
  }

  /** Ends the stream: the open segment, if any, becomes the last one. */
  finish(): void {
    if (this.partsLen === 0) return;
    let zero = true;
    for (const p of this.parts) {
      for (let i = 0; i < p.length; i++) {
        if (p[i] !== 0) {
          zero = false;
          break;
        }
      }
      if (!zero) break;
    }
    if (zero) {
      this.emit({ kind: 'zero', len: this.partsLen });
    } else {
      const joined = new Uint8Array(this.partsLen);
      let at = 0;
      for (const p of this.parts) {
        joined.set(p, at);
        at += p.length;
      }
      this.emit({ kind: 'data', bytes: joined });
    }
    this.parts = [];
    this.partsLen = 0;
    this.seg.reset();
  }
}
