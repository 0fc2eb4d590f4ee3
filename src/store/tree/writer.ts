// Writing a file version: a new stream, or an edit of an old version described as pieces
// (old ranges, new bytes, zeros). New bytes are chunked as they arrive and handed to the
// ingest engine in batches; hashing of several batches overlaps while results are applied
// to the tree in stream order. Old ranges are re-chunked only from the start of the segment
// an edit touches until the chunker cuts at an old boundary again; from there on old
// segments and whole old subtrees are reused without reading them.

import { vmError } from '../../errors.js';
import { ChunkStream, type ChunkItem } from '../segmenter/chunk-stream.js';
import type { Slab } from '../slab-pool.js';
import type { WriteHold } from '../gc/write-holds.js';
import type { HashedBatch, IngestEngine } from '../ingest.js';
import type { SegmentReader } from '../segment-reader.js';
import type { ChunkerParams } from '../segmenter/segmenter.js';
import { TreeBuilder } from './builder.js';
import { zeroEntry } from './node.js';
import { TreeView } from './reader.js';
import type { FileVersion } from './version.js';

export type Piece =
  | { kind: 'old'; from: number; to: number }
  | { kind: 'data'; bytes: Uint8Array }
  | { kind: 'zero'; len: number }
  /**
   * A segment already in the store, by fingerprint (a transfer recipe: the bytes crossed
   * once, as a segment). The caller has checked it is stored with this plain length.
   */
  | { kind: 'segment'; fp: Buffer; len: number };

export interface WriteResult {
  version: FileVersion;
  /** Containers not yet indexed that this version relies on; pass to commit. */
  deps: Set<number>;
}

const BATCH_BYTES = 4 * 1024 * 1024;
const MAX_BATCHES_IN_FLIGHT = 4;
/** Old ranges of an edit whose edge segments are read ahead together (see edit, prefetchEdges). */
const EDGE_WINDOW = 64;
/** Old data segments after new bytes read ahead: re-chunking falls in step within ~3. */
const EDGE_SEGMENTS = 3;

export interface WriterContext {
  chunker: ChunkerParams;
  engine: IngestEngine;
  reader: SegmentReader;
  noteIngest(bytes: number, zeroBytes: number): void;
  /** Keeps what this writer appends out of garbage collection's sweep (gc/write-holds.ts). */
  holdWrites(): WriteHold;
}

export class TreeWriter {
  readonly deps = new Set<number>();
  private readonly cs: ChunkStream;
  private readonly builder: TreeBuilder;
  private batchSlab: Slab | undefined;
  private batchBytes = 0;
  private segs: number[] = [];
  private chain: Promise<void> = Promise.resolve();
  private readonly inflight: Array<Promise<void>> = [];
  private failure: unknown;
  private finished = false;
  private ingested = 0;
  private zeroIngested = 0;
  /** Of those, already counted in the store's statistics (by checkpoints). */
  private noted = 0;
  private notedZeros = 0;
  /**
   * From the start: the segments appended are named by no GC root until the version is one.
   * Released once finished or given up; a caller that needs longer (its version becomes a root
   * only after more waits) takes its own hold before it creates the writer. Renewed at each
   * checkpoint (whose version the caller makes a root).
   */
  private hold: WriteHold;

  constructor(private readonly ctx: WriterContext) {
    this.cs = new ChunkStream(ctx.chunker, { item: (i) => this.onItem(i), leaving: () => this.flushBatch() });
    this.builder = new TreeBuilder({ storeNode: (_l, bytes) => ctx.engine.storeNode(bytes, this.deps) });
    this.hold = ctx.holdWrites();
  }

  // ---- stream input ----------------------------------------------------------------------

  /** Appends bytes. `buf` may be reused by the caller once the promise resolves. */
  async write(buf: Uint8Array): Promise<void> {
    this.check();
    if (this.finished) throw vmError('CLOSED', 'this writer has finished');
    this.ingested += buf.length;
    await this.cs.feed(buf);
    await this.backpressure();
  }

  async writeZeros(n: number): Promise<void> {
    this.check();
    if (this.finished) throw vmError('CLOSED', 'this writer has finished');
    this.ingested += n;
    await this.cs.feedZeros(n);
    await this.backpressure();
  }

  /**
   * The version written. It must become a GC root (an open file's version, an inode) before
   * the caller's next wait on I/O, or the caller must hold writes itself: the writer's hold
   * ends here, and a GC may start once this turn of the event loop is over.
   */
  async finish(): Promise<WriteResult> {
    try {
      this.check();
      this.finished = true;
      await this.cs.finish();
      this.flushBatch();
      await this.chain;
      this.check();
      this.ctx.noteIngest(this.ingested - this.noted, this.zeroIngested - this.notedZeros);
      return { version: this.builder.finish(), deps: this.deps };
    } catch (err) {
      await this.abort();
      throw err;
    } finally {
      this.hold.release();
    }
  }

  /**
   * The version of everything written so far, while the writer goes on: the file's content as
   * finish() would give it now (the open segment stored as the last one, the right edge's nodes
   * built on a copy of the builder), the same tree an edit appending these bytes to the previous
   * checkpoint builds (TreeBuilder is canonical), without re-reading and re-cutting that
   * checkpoint's last segment and without starting a new cutting and hashing pipeline. A writer
   * kept open across a file's stream commits (namespace/append-stream.ts) takes one per commit.
   * Later writes may be fed while it is being built. `deps` are the containers this writer
   * stored into (or found unindexed records in) since the previous checkpoint; the caller keeps
   * the earlier ones with the earlier versions until those are durable. finish() after
   * checkpoints likewise gives only the containers since the last one.
   */
  async checkpoint(): Promise<WriteResult> {
    this.check();
    if (this.finished) throw vmError('CLOSED', 'this writer has finished');
    await this.cs.settle();
    this.flushBatch();
    const tail = this.cs.tail();
    let hashed: Promise<HashedBatch> | undefined;
    const segs = tail && !tail.zero ? Uint32Array.of(tail.off, tail.len) : undefined;
    if (tail && segs) {
      hashed = this.ctx.engine.hash(tail.slab.buf, segs);
      hashed.catch(() => {});
    }
    const ingested = this.ingested - this.noted;
    const zeros = this.zeroIngested - this.notedZeros;
    const run = this.chain.then(async (): Promise<WriteResult> => {
      try {
        if (this.failure) throw this.failure;
        const b = this.builder.fork();
        if (tail && hashed && segs) for (const e of await this.ctx.engine.store(tail.slab.buf, segs, await hashed, this.deps)) b.push(0, e);
        else if (tail) b.push(0, zeroEntry(tail.len));
        const version = b.finish();
        // Only what this version adds: the earlier checkpoints' containers went with their
        // versions (the caller keeps those until they are durable: OpenFile's unconfirmedDeps).
        // Carrying them on would tie every later commit to a container that failed after its
        // records were indexed, as no fresh writer's commit would be.
        const deps = new Set(this.deps);
        this.deps.clear();
        return { version, deps };
      } finally {
        tail?.slab.unref();
      }
    });
    this.chain = run.then(
      () => {},
      (err) => {
        this.failure ??= err;
      },
    );
    this.inflight.push(this.chain);
    const r = await run;
    // What was appended so far is in r.version, which the caller makes a root (holding writes
    // itself until then, as OpenFile's commit does); the writer holds only from here on.
    const next = this.ctx.holdWrites();
    this.hold.release();
    this.hold = next;
    this.noted += ingested;
    this.notedZeros += zeros;
    this.ctx.noteIngest(ingested, zeros);
    return r;
  }

  /** Gives up: waits for work in flight so nothing outlives the writer. */
  async abort(): Promise<void> {
    this.finished = true;
    try {
      await this.cs.settle().catch(() => {});
      await this.chain.catch(() => {});
    } finally {
      this.hold.release();
    }
  }

  /**
   * abort() that also hands the writer's slabs back to the pool: only when no call of this
   * writer is still running (every write and checkpoint returned), else a feed in flight would
   * go on copying into a slab another writer was given. A writer kept across a file's commits
   * (namespace/append-stream.ts) is let go often; the next one should not fault in fresh memory.
   */
  async discard(): Promise<void> {
    await this.abort();
    this.batchSlab?.unref();
    this.batchSlab = undefined;
    this.segs = [];
    this.batchBytes = 0;
    await this.cs.release();
  }

  // ---- edits -----------------------------------------------------------------------------

  /**
   * Writes the content described by `pieces` (old ranges refer to `old`) and finishes. The edge
   * segments of the next window (EDGE_WINDOW old ranges, with the new pieces between them) are
   * read while this window is written: awaited in turn, windows of 64 pieces of any kind, an
   * incremental backup's commit (~1,600 pieces, most of them 64 KiB of new bytes) spent ~40% of
   * its time waiting for them. prefetchEdges never rejects.
   */
  async edit(old: TreeView, pieces: Piece[]): Promise<WriteResult> {
    const starts: number[] = [0];
    for (let k = 0, olds = 0; k < pieces.length; k++) {
      if (pieces[k].kind === 'old' && ++olds % EDGE_WINDOW === 0 && k + 1 < pieces.length) starts.push(k + 1);
    }
    starts.push(pieces.length);
    const window = (w: number): Promise<void> | undefined =>
      w + 1 < starts.length && starts[w] < starts[w + 1] ? this.prefetchEdges(old, pieces, starts[w], starts[w + 1]) : undefined;
    let ahead = window(0);
    try {
      for (let w = 0; w + 1 < starts.length; w++) {
        await ahead;
        ahead = window(w + 1);
        for (let k = starts[w]; k < starts[w + 1]; k++) await this.piece(old, pieces[k], k === pieces.length - 1);
      }
    } catch (err) {
      await ahead;
      await this.abort();
      throw err;
    } finally {
      // Nothing of this edit keeps reading once it returned or failed.
      await ahead;
    }
    return this.finish();
  }

  /**
   * Reads in one batch, into the reader's cache, the old segments that re-chunking around new
   * bytes will read one by one (copyOld): the one a new run starts inside, and the first few
   * after a run's end. An incremental backup's commit of ~300 scattered runs read ~870 of them
   * one at a time, each a round trip through the thread pool, behind the copy. A failure here
   * is left for copyOld to meet (and report) if it needs that segment at all.
   */
  private async prefetchEdges(old: TreeView, pieces: Piece[], from: number, to: number): Promise<void> {
    const fps: Buffer[] = [];
    const isNew = (k: number) => k >= 0 && k < pieces.length && pieces[k].kind !== 'old';
    try {
      for (let k = from; k < to; k++) {
        const p = pieces[k];
        if (p.kind !== 'old' || p.to <= p.from) continue;
        if (isNew(k - 1)) {
          let n = 0;
          for await (const l of old.leaves(p.from, p.to)) {
            if (!l.entry.zero) fps.push(l.entry.fp);
            if (++n === EDGE_SEGMENTS) break;
          }
        }
        if (isNew(k + 1) && p.to < old.size) {
          const here = await old.entryAt(0, p.to);
          if (here.start < p.to && !here.entry.zero) fps.push(here.entry.fp);
        }
      }
      if (fps.length > 0) await this.ctx.reader.segments(fps);
    } catch {
      // copyOld reads what it needs itself and reports what fails there.
    }
  }

  /** Appends one piece (old ranges refer to `old`); `lastPiece`: the file ends with it. */
  async piece(old: TreeView, p: Piece, lastPiece: boolean): Promise<void> {
    if (p.kind === 'data') await this.write(p.bytes);
    else if (p.kind === 'zero') await this.writeZeros(p.len);
    else if (p.kind === 'segment') await this.addSegment(p.fp, p.len);
    else if (p.to > p.from) await this.copyOld(old, p.from, p.to, lastPiece);
  }

  /**
   * Appends a stored segment by reference. Where the stream stands at a cut (a sender that
   * cuts as the store does always lands here), the segment becomes a leaf as it is, and the
   * tree is the one writing its bytes would have built; elsewhere its bytes are read back and
   * fed through the chunker, so the content is right whatever the caller sent.
   */
  async addSegment(fp: Buffer, len: number): Promise<void> {
    this.check();
    if (this.finished) throw vmError('CLOSED', 'this writer has finished');
    if (await this.cs.atCut()) {
      this.ingested += len;
      this.flushBatch();
      const entry = { fp, len, zero: false };
      this.enqueue(async () => this.builder.push(0, entry));
    } else {
      const [bytes] = await this.ctx.reader.segments([fp]);
      if (bytes.length !== len) throw vmError('INVALID_ARGUMENT', `segment ${fp.toString('hex').slice(0, 16)} holds ${bytes.length} bytes, not ${len}`);
      await this.write(bytes);
      return;
    }
    await this.backpressure();
  }

  private async copyOld(old: TreeView, x: number, y: number, lastPiece: boolean): Promise<void> {
    if (y > old.size || x < 0 || x > y) throw vmError('INVALID_ARGUMENT', `old range [${x}, ${y}) outside the old version (${old.size} bytes)`);
    let o = x;
    while (o < y) {
      const here = await old.entryAt(0, o);
      if (here.start === o && (await this.cs.atCut())) {
        const b = await this.reusableEnd(old, y, lastPiece);
        if (b > o) {
          const from = o;
          const last = lastPiece && b === old.size;
          this.flushBatch();
          this.enqueue(() => this.builder.reuse(old, from, b, last));
          o = b;
          continue;
        }
      }
      // Not in step with the old boundaries yet: re-chunk this old segment's bytes.
      const end = Math.min(here.start + here.entry.len, y);
      if (here.entry.zero) {
        await this.cs.feedZeros(end - o);
      } else {
        const [bytes] = await this.ctx.reader.segments([here.entry.fp]);
        await this.cs.feed(bytes.subarray(o - here.start, end - here.start));
      }
      o = end;
      await this.backpressure();
    }
  }

  /** The last old data boundary at or before y whose segments may be reused as they are. */
  private async reusableEnd(old: TreeView, y: number, lastPiece: boolean): Promise<number> {
    if (y === old.size) {
      if (lastPiece) return y;
      return (await old.entryAt(0, y - 1)).start;
    }
    return (await old.entryAt(0, y)).start;
  }

  // ---- pipeline --------------------------------------------------------------------------

  private onItem(item: ChunkItem): void {
    if (item.kind === 'zero') {
      this.zeroIngested += item.len;
      this.flushBatch();
      const len = item.len;
      this.enqueue(async () => this.builder.push(0, zeroEntry(len)));
      return;
    }
    if (item.slab !== this.batchSlab) {
      this.flushBatch();
      this.batchSlab = item.slab.ref();
    }
    this.segs.push(item.off, item.len);
    this.batchBytes += item.len;
    if (this.batchBytes >= BATCH_BYTES) this.flushBatch();
  }

  private flushBatch(): void {
    const slab = this.batchSlab;
    if (!slab) return;
    this.batchSlab = undefined;
    const segs = Uint32Array.from(this.segs);
    this.segs = [];
    this.batchBytes = 0;
    if (segs.length === 0) {
      slab.unref();
      return;
    }
    const hashed = this.ctx.engine.hash(slab.buf, segs);
    hashed.catch(() => {});
    this.enqueue(async () => {
      try {
        const entries = await this.ctx.engine.store(slab.buf, segs, await hashed, this.deps);
        for (const e of entries) this.builder.push(0, e);
      } finally {
        slab.unref();
      }
    });
  }

  private enqueue(step: () => Promise<void>): void {
    const p = this.chain.then(() => {
      if (this.failure) throw this.failure;
      return step();
    });
    this.chain = p.catch((err) => {
      this.failure ??= err;
    });
    this.inflight.push(this.chain);
  }

  private async backpressure(): Promise<void> {
    while (this.inflight.length > MAX_BATCHES_IN_FLIGHT) await this.inflight.shift();
    this.check();
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }
}
