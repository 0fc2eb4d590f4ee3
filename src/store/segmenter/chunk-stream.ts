// Bytes in, segments out. Incoming bytes are copied once, in large pieces, into a slab; the
// segmenter cuts them there and segments are handed on as (slab, offset, length), so the codec
// reads them in place and no per-segment copy is ever made. A segment still open when a slab
// fills moves to the start of the next slab. Runs of zeros become zero entries without being
// materialised (a hole of a terabyte costs a few arithmetic steps).
//
// Cutting runs behind the copying: feed() copies and queues the new bytes for the segmenter
// (on the libuv pool with the addon), and items reach the sink in stream order as each cut
// completes, so the main thread copies and stores while another core cuts. settle() waits
// for every queued cut; whatever needs to know where the open segment starts awaits it.

import { END_MASK, Segmenter, type ChunkerParams, ZERO_FLAG } from './segmenter.js';
import { type Slab, slabPool } from '../slab-pool.js';

export type ChunkItem = { kind: 'data'; slab: Slab; off: number; len: number } | { kind: 'zero'; len: number };

export interface ChunkSink {
  item(item: ChunkItem): void;
  /** The stream is about to leave `slab`: no more segments will come from it. */
  leaving(slab: Slab): void;
}

/** Bytes fed before a cut is queued (smaller pieces wait for more, up to a settle). */
const CUT_STEP = 1024 * 1024;
/** Zero runs of whole blocks of this size in fed bytes are not copied (see feed). */
const ZERO_BLOCK = 1024 * 1024;
const ZERO_BLOCK_BYTES = Buffer.alloc(ZERO_BLOCK);

export class ChunkStream {
  private readonly seg: Segmenter;
  private readonly maxSize: number;
  private slab: Slab;
  /** Bytes of the slab filled. */
  private used = 0;
  /** Bytes of the slab queued for cutting (<= used). */
  private queued = 0;
  /** Where the open segment starts, as far as completed cuts know. */
  private chunkStart = 0;
  private cutting: Promise<void> = Promise.resolve();
  /** The slab went back to the pool (finish or release): nothing may use the stream. */
  private released = false;
  private failure: unknown;
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

  /** Waits for every queued cut; afterwards the segmenter's state covers all bytes fed. */
  async settle(): Promise<void> {
    this.queue();
    await this.cutting;
    if (this.failure) throw this.failure;
  }

  /** True when the bytes fed so far end exactly at a segment boundary. */
  async atCut(): Promise<boolean> {
    await this.settle();
    return this.seg.pending === 0;
  }

  /**
   * Feeds bytes. Whole MiB-blocks of zeros (from the start of `buf`) go the way of
   * feedZeros, neither copied nor scanned: VM images are mostly such runs. `buf` must not
   * change until the promise settles.
   */
  async feed(buf: Uint8Array): Promise<void> {
    const src = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    if (src.length < ZERO_BLOCK) return this.copyIn(src);
    let from = 0; // bytes before `at` not yet fed
    let zeros = 0; // of which, a run of zero blocks at the end
    for (let at = 0; at < src.length; at += ZERO_BLOCK) {
      const end = Math.min(src.length, at + ZERO_BLOCK);
      // memcmp stops at the first difference, so data costs next to nothing here.
      if (end - at === ZERO_BLOCK && src.compare(ZERO_BLOCK_BYTES, 0, ZERO_BLOCK, at, end) === 0) {
        zeros += ZERO_BLOCK;
        continue;
      }
      if (zeros > 0) {
        await this.copyIn(src.subarray(from, at - zeros));
        await this.feedZeros(zeros);
        from = at;
        zeros = 0;
      }
    }
    await this.copyIn(src.subarray(from, src.length - zeros));
    if (zeros > 0) await this.feedZeros(zeros);
  }

  /** Copies bytes into slabs and queues their cut. */
  private async copyIn(src: Buffer): Promise<void> {
    let at = 0;
    while (at < src.length) {
      // The caller's buffer stays valid across this await: write() has not resolved yet.
      if (this.used === this.slab.buf.length) await this.rotate();
      const n = Math.min(src.length - at, this.slab.buf.length - this.used);
      src.copy(this.slab.buf, this.used, at, at + n);
      this.used += n;
      at += n;
      if (this.used - this.queued >= CUT_STEP) this.queue();
    }
  }

  /** Queues a cut of the bytes fed since the last one. */
  private queue(): void {
    const from = this.queued;
    const n = this.used - from;
    if (n === 0) return;
    this.queued = this.used;
    const slab = this.slab;
    this.cutting = this.cutting.then(async () => {
      if (this.failure) return;
      try {
        const cuts = await this.seg.pushAsync(slab.buf.subarray(from, from + n));
        this.emit(slab, from, cuts);
      } catch (err) {
        this.failure ??= err;
      }
    });
  }

  private emit(slab: Slab, from: number, cuts: Uint32Array): void {
    for (let k = 0; k < cuts.length; k++) {
      const c = cuts[k];
      const end = from + (c & END_MASK);
      if ((c & ZERO_FLAG) !== 0) this.sink.item({ kind: 'zero', len: end - this.chunkStart });
      else this.sink.item({ kind: 'data', slab, off: this.chunkStart, len: end - this.chunkStart });
      this.chunkStart = end;
    }
  }

  /** Moves to a new slab, carrying the open segment's bytes over. */
  private async rotate(): Promise<void> {
    await this.settle();
    const old = this.slab;
    this.sink.leaving(old);
    const next = slabPool.get();
    const open = this.used - this.chunkStart;
    old.buf.copy(next.buf, 0, this.chunkStart, this.used);
    old.unref();
    this.slab = next;
    this.used = this.queued = open;
    this.chunkStart = 0;
  }

  /** Feeds `n` zero bytes. */
  async feedZeros(n: number): Promise<void> {
    const zeros = ChunkStream.zeros!;
    while (n > 0) {
      await this.settle();
      if (this.seg.pending === 0 && this.seg.zeroFast && n >= this.maxSize) {
        // From a boundary, zeros cut exactly every maxSize bytes (packParams checks this).
        const run = Math.floor(n / this.maxSize) * this.maxSize;
        this.sink.item({ kind: 'zero', len: run });
        n -= run;
        continue;
      }
      // Feed only up to where the open segment must end, so the next round starts at a cut.
      const take = Math.min(n, this.maxSize - this.seg.pending);
      await this.copyIn(zeros.subarray(0, take));
      n -= take;
    }
  }

  /**
   * The open segment (bytes fed since the last cut) as the stream's last segment would be if it
   * ended here, without ending it: the slab is referenced for the caller (unref it when done
   * reading), and the bytes stay where they are until then. Undefined when the bytes fed end at
   * a cut. Only between feeds, after settle().
   */
  tail(): { slab: Slab; off: number; len: number; zero: boolean } | undefined {
    const len = this.used - this.chunkStart;
    if (len === 0) return undefined;
    const b = this.slab.buf;
    const zero = b.compare(ChunkStream.zeros!, 0, len, this.chunkStart, this.used) === 0;
    return { slab: this.slab.ref(), off: this.chunkStart, len, zero };
  }

  /**
   * Gives up the stream (a writer aborted): waits for the cuts queued, then hands the slab back
   * to the pool, as finish() does, so the next writer does not start on fresh memory.
   */
  async release(): Promise<void> {
    await this.cutting;
    if (this.released) return;
    this.released = true;
    this.slab.unref();
  }

  /** Ends the stream: the open segment, if any, becomes the last one. Releases the slab. */
  async finish(): Promise<void> {
    await this.settle();
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
    this.released = true;
    this.slab.unref();
    this.seg.reset();
  }
}
