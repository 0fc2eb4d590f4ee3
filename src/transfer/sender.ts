// The sending side of the fingerprint-first protocol (PROTOCOL.md): reads a source, cuts it
// with the store's own segmenter (the appliance's parameters, so boundaries and fingerprints
// match the store's), fingerprints each segment, asks which the appliance lacks, sends only
// those (LZ4, the store's payload layout), then the recipe that names them in file order.
// Zero runs and holes cross as extents only. An agent never opens a store: only the store's
// pure parts are used here (segmenter, fingerprint, codec).
//
// Memory is bounded: at most BATCHES_IN_FLIGHT batches of segments (each at most BATCH_BYTES of
// plain data, in the chunk stream's reused slabs, and their LZ4 payloads) are out at a time,
// plus the one being cut, whatever the file size.

import { vmError } from '../errors.js';
import { ChunkStream, type ChunkItem } from '../store/segmenter/chunk-stream.js';
import type { Slab } from '../store/slab-pool.js';
import { fingerprint } from '../store/codec/fingerprint.js';
import { encodePayload } from '../store/codec/codec.js';
import { type CodecEngine, createCodecEngine, PAYLOAD_BYTES } from '../store/codec/engine.js';
import { codecImpl } from '../store/native.js';
import { Codec } from '../store/container/format.js';
import type { TransferConnection } from './client.js';
import {
  decodeQueryReply,
  encodeQuery,
  encodeRecipe,
  encodeSegments,
  FRAME_HEADER_BYTES,
  LIMITS,
  PROTOCOL_NEWEST,
  PROTOCOL_VERSION,
  type RecipeEntry,
  SEGMENT_ENTRY_HEADER_BYTES,
  SegmentCodec,
  type SentSegment,
} from './frames.js';
import type { BoundariesReply, FinishReply, OpenReply, Region, SegmentsReply } from './messages.js';
import { TRANSFER_PREFIX } from './messages.js';

export interface ReadSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * Optional: the same bytes as pieces in order (an NBD client's receive buffers as they
   * arrived), so they are not copied into one fresh buffer first: the sender copies them into
   * its slabs anyway. The pieces must not change until the sender fed them (it keeps none).
   */
  readv?(offset: number, length: number): Promise<Buffer[]>;
  /**
   * Optional: readv's pieces were fed (copied) and are not touched again; the source may reuse
   * their memory (an NBD client's receive slabs: fewer fresh off-heap buffers, fewer full GCs).
   */
  release?(bufs: Buffer[]): void;
  /** Optional: which ranges hold data; zero/hole ranges cross as extents only (NBD base:allocation). */
  dataRanges?(offset: number, length: number): Promise<Array<{ offset: number; length: number; zero: boolean }>>;
}

export interface SendTarget {
  share: string;
  path: string;
  size: number;
  /** Incremental: only these byte ranges changed since the file's current content; absent = full. */
  ranges?: Array<{ offset: number; length: number }>;
  /** Task id from the appliance's pool, so a resumed or re-assigned task continues. */
  taskId?: string;
}

export interface SendReport {
  bytesRead: number;
  /** All bytes on the wire, both ways. */
  bytesSent: number;
  /** Query frames and their replies. */
  fingerprintBytes: number;
  segments: number;
  segmentsSent: number;
  /** Compressed payload bytes of the segments sent. */
  segmentBytesSent: number;
  zeroBytes: number;
}

/** Plain bytes of segments per batch (one query, its segments, its recipe). */
const BATCH_BYTES = 8 * 1024 * 1024;
/**
 * Batches handed on and not yet answered. Two: while one batch's segments cross and the
 * appliance stores them, the next is hashed and queried (and the one after is cut). Each holds
 * its slabs and payloads, so this bounds the sender's memory.
 */
const BATCHES_IN_FLIGHT = 2;
/** Bytes read from the source at a time. */
const READ_BYTES = 4 * 1024 * 1024;
/**
 * Bytes of payload per segments frame. Small enough that the appliance stores one frame while
 * the next crosses (it handles a request only once its whole body arrived), and that its body
 * buffer comes from the heap rather than fresh pages; large enough that requests stay few.
 */
const SEGMENTS_FRAME_BYTES = 4 * 1024 * 1024;
/** Segments frames in flight per sender. */
const FRAMES_IN_FLIGHT = 2;
/** Reused frame buffers' size: a frame of SEGMENTS_FRAME_BYTES plus its last segment and entry headers (a bigger one gets its own). */
const FRAME_BUFFER_BYTES = SEGMENTS_FRAME_BYTES + 1024 * 1024;
/** The window asked of dataRanges at a time. */
const MAP_BYTES = 256 * 1024 * 1024;

interface DataItem {
  kind: 'data';
  slab: Slab;
  off: number;
  len: number;
  /** File offset where the segment starts. */
  at: number;
}
interface ZeroItem {
  kind: 'zero';
  len: number;
  at: number;
}
type Item = DataItem | ZeroItem;

export async function sendFile(
  conn: TransferConnection,
  source: ReadSource,
  target: SendTarget,
  opts: { signal?: AbortSignal; onProgress?: (r: SendReport) => void } = {},
): Promise<SendReport> {
  if (!Number.isSafeInteger(target.size) || target.size < 0) throw vmError('INVALID_ARGUMENT', `file size ${target.size} is not a valid size`);
  if (source.size < target.size) throw vmError('INVALID_ARGUMENT', `the source holds ${source.size} bytes, fewer than the file's ${target.size}`);
  const wire0 = conn.wireBytes;
  const report: SendReport = { bytesRead: 0, bytesSent: 0, fingerprintBytes: 0, segments: 0, segmentsSent: 0, segmentBytesSent: 0, zeroBytes: 0 };
  // A broken connection (or an appliance restarting) is retried with the same task id: the
  // session resumes where its recipe ends, and what the task sent is known (PROTOCOL.md,
  // "Resumption"). Without a task id there is nothing to resume: the error is the caller's.
  for (let attempt = 0; ; attempt++) {
    try {
      await sendOnce(conn, source, target, report, opts);
      break;
    } catch (err) {
      if (target.taskId === undefined || attempt >= RETRIES.length || !isTransient(err) || opts.signal?.aborted) {
        report.bytesSent = conn.wireBytes - wire0;
        throw err;
      }
      await sleep(RETRIES[attempt], opts.signal);
    }
  }
  report.bytesSent = conn.wireBytes - wire0;
  opts.onProgress?.({ ...report });
  return report;
}

/** Waits before each retry of a broken send (ms). */
const RETRIES = [200, 1000, 3000, 10_000, 30_000];

function isTransient(err: unknown): boolean {
  const e = err as { code?: string; details?: { transport?: boolean; status?: number } };
  return e?.details?.transport === true || e?.details?.status === 503 || e?.details?.status === 502;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

async function sendOnce(
  conn: TransferConnection,
  source: ReadSource,
  target: SendTarget,
  report: SendReport,
  opts: { signal?: AbortSignal; onProgress?: (r: SendReport) => void },
): Promise<void> {
  const openWith = (protocol: number) =>
    conn.json<OpenReply>(
      'POST',
      `${TRANSFER_PREFIX}/sessions`,
      { protocol, share: target.share, path: target.path, size: target.size, ...(target.ranges ? { ranges: target.ranges } : {}), ...(target.taskId ? { taskId: target.taskId } : {}) },
      opts.signal,
    );
  let open: OpenReply;
  try {
    open = await openWith(PROTOCOL_NEWEST);
  } catch (err) {
    // An appliance of protocol 1 only refuses 2 (501): speak 1 with it.
    if ((err as { code?: string }).code !== 'NOT_SUPPORTED') throw err;
    open = await openWith(PROTOCOL_VERSION);
  }
  if (open.protocol !== PROTOCOL_VERSION && open.protocol !== PROTOCOL_NEWEST) {
    throw vmError('NOT_SUPPORTED', `the appliance speaks transfer protocol ${open.protocol}; this sender speaks ${PROTOCOL_VERSION} to ${PROTOCOL_NEWEST}`);
  }
  if (open.chunker.algorithm !== 'fastcdc-gear-v1') throw vmError('NOT_SUPPORTED', `the appliance cuts with ${open.chunker.algorithm}, which this sender does not know`);
  const s = new Sender(conn, source, target, open, report, opts);
  try {
    for (const region of open.regions) await s.region(region);
    await s.flush();
  } catch (err) {
    // No request of this session may still be under way when the send is retried or given up.
    await s.abandon();
    throw err;
  }
  await conn.json<FinishReply>('POST', `${TRANSFER_PREFIX}/sessions/${open.session}/finish`, {}, opts.signal);
}

/** What the hash stage learnt of a batch: every data item's fingerprint, and which to send. */
interface Prepared {
  items: Item[];
  /** Per item (data items only): its fingerprint. */
  order: Buffer[];
  /** The segments the appliance lacks, each once, in file order. */
  missing: Array<{ fp: Buffer; item: DataItem; plen: number; payload: Buffer | undefined }>;
  /** Hashed batches whose payload buffers the missing segments point into. */
  release: Array<() => void>;
}

class Sender {
  private readonly route: string;
  private readonly chunker: { minSize: number; avgSize: number; maxSize: number };
  /** The session's protocol version (2: recipes may say "old"). */
  private readonly protocol: number;
  /** Where the recipe sent so far ends. */
  private position: number;
  /** Where the session's recipe ended when it opened (a resumed task continues there). */
  private readonly resumeAt: number;
  /** Where the items handed to batches end (regions may run past their ends to an old cut). */
  private cutEnd = 0;
  /** Old boundaries known so far (ascending), and where the appliance's list goes on. */
  private bounds: number[] = [];
  private boundsFrom = -1;
  private boundsNext: number | null = null;

  /** The batch being filled; it may span regions (its recipe then goes as one frame per run). */
  private batch: Item[] = [];
  private batchBytes = 0;
  /** Batches handed on and not yet acknowledged, oldest first. */
  private readonly inflight: Array<Promise<void>> = [];
  /** Resolves when the last batch's query is answered (queries go in order, one at a time). */
  private prepTail: Promise<void> = Promise.resolve();
  /** Settles when the last batch's recipe is answered (recipes go in file order). */
  private shipTail: Promise<void> = Promise.resolve();
  /** The first failure of a batch: the send stops. */
  private failure: unknown;
  /** Fingerprints the previous batch found missing: it sends them before this batch's recipe, so they are not asked again. */
  private lastMissing = new Set<string>();
  /** Whether to LZ4 every segment while hashing (most of the last batch was missing), or only the missing ones afterwards. */
  private compressAhead = true;
  /** Segments frames' buffers, reused (fresh memory costs a page fault per 4 KiB). */
  private readonly frames: Buffer[] = [];
  /** Segments requests in flight, and who waits for one to end. */
  private framesOut = 0;
  private readonly frameWaiters: Array<() => void> = [];

  constructor(
    private readonly conn: TransferConnection,
    private readonly source: ReadSource,
    private readonly target: SendTarget,
    open: OpenReply,
    private readonly report: SendReport,
    private readonly opts: { signal?: AbortSignal; onProgress?: (r: SendReport) => void },
  ) {
    this.route = `${TRANSFER_PREFIX}/sessions/${open.session}`;
    this.chunker = open.chunker;
    this.protocol = open.protocol;
    this.position = open.position;
    this.resumeAt = open.position;
  }

  private incremental(): boolean {
    return this.target.ranges !== undefined;
  }

  /** Whether a cut at `p` ends the region: past its end and in step with the old boundaries. */
  private async stopsAt(p: number, region: Region): Promise<boolean> {
    if (p >= this.target.size) return true;
    if (p < region.end || !this.incremental()) return false;
    // The list held covers [boundsFrom, boundsNext); outside it, ask from p.
    if (this.boundsFrom < 0 || p < this.boundsFrom || (this.boundsNext !== null && p >= this.boundsNext)) {
      const r = await this.conn.json<BoundariesReply>('POST', `${this.route}/boundaries`, { from: p }, this.opts.signal);
      this.bounds = r.boundaries;
      this.boundsFrom = p;
      this.boundsNext = r.next;
    }
    return binarySearch(this.bounds, p);
  }

  async region(region: Region): Promise<void> {
    let start = region.start;
    // A resumed task's recipe already covers up to resumeAt; an earlier region's cutting may
    // have run past this region's start (it stops only on an old cut). Both are cuts.
    const described = Math.max(this.resumeAt, this.cutEnd);
    if (described > start) {
      start = described;
      if (start >= this.target.size || (await this.stopsAt(start, region))) return;
    }
    if (start >= this.target.size) return;
    const queue: Item[] = [];
    let at = start;
    const cs = new ChunkStream(this.chunker, {
      item: (i: ChunkItem) => {
        if (i.kind === 'zero') queue.push({ kind: 'zero', len: i.len, at });
        else queue.push({ kind: 'data', slab: i.slab.ref(), off: i.off, len: i.len, at });
        at += i.len;
      },
      leaving: () => {},
    });
    let stopped = false;
    const drain = async (): Promise<void> => {
      while (queue.length > 0 && !stopped) {
        const item = queue.shift()!;
        this.batch.push(item);
        this.cutEnd = item.at + item.len;
        if (item.kind === 'data') this.batchBytes += item.len;
        if (await this.stopsAt(item.at + item.len, region)) stopped = true;
        if (this.batchBytes >= BATCH_BYTES || this.batch.length >= LIMITS.queryCount) await this.submit();
      }
    };
    // One read ahead: the next read of the source is under way while this one is cut, hashed
    // and handed on, so the source (an NBD export: a round trip per request) is never idle
    // while the sender works, nor the sender while the source answers. Only reads starting
    // before the region's end go ahead (every byte there is needed; past it, an incremental
    // stops at the first old cut, usually a few segments on). One more read buffer of memory.
    const source = this.source;
    const read = (o: number, n: number): Promise<Buffer[]> => (source.readv ? source.readv(o, n) : source.read(o, n).then((b) => [b]));
    let ahead: { o: number; n: number; p: Promise<Buffer[]> } | undefined;
    const readAt = (o: number, n: number): Promise<Buffer[]> => {
      const a = ahead;
      ahead = undefined; // a read ahead that is not this one is dropped (its error too)
      return a && a.o === o && a.n === n ? a.p : read(o, n);
    };
    const readAhead = (o: number, n: number): void => {
      if (ahead || n <= 0 || o >= region.end) return;
      const p = read(o, n);
      p.catch(() => {}); // awaited (and its error thrown) when its turn comes, or dropped at a stop
      ahead = { o, n, p };
    };
    try {
      let pos = start;
      // An incremental region usually ends a few segments past its changes: read little first.
      let readBytes = this.incremental() ? Math.min(READ_BYTES, 4 * this.chunker.maxSize + (region.end - start)) : READ_BYTES;
      while (pos < this.target.size && !stopped) {
        this.checkAbort();
        const window = Math.min(MAP_BYTES, this.target.size - pos);
        const map = this.source.dataRanges ? await this.source.dataRanges(pos, window) : [{ offset: pos, length: window, zero: false }];
        const ranges = normalizeMap(map, pos, window);
        for (let ri = 0; ri < ranges.length && !stopped; ri++) {
          const r = ranges[ri];
          let o = r.offset;
          const end = r.offset + r.length;
          while (o < end && !stopped) {
            if (r.zero) {
              await cs.feedZeros(end - o);
              o = end;
            } else {
              const n = Math.min(readBytes, end - o);
              readBytes = Math.min(READ_BYTES, readBytes * 2);
              const bufs = await readAt(o, n);
              let got = 0;
              for (const b of bufs) got += b.length;
              if (got !== n) throw vmError('IO', `the source returned ${got} bytes at offset ${o}, not ${n}`);
              this.report.bytesRead += n;
              // The next read this loop will make: further in this range, or the next data range of this window.
              if (o + n < end) readAhead(o + n, Math.min(readBytes, end - o - n));
              else {
                let k = ri + 1;
                while (k < ranges.length && ranges[k].zero) k++;
                if (k < ranges.length) readAhead(ranges[k].offset, Math.min(readBytes, ranges[k].length));
              }
              for (const b of bufs) await cs.feed(b);
              // Fed means copied into the chunker's slabs (feed's promise): the pieces go back.
              // A read ahead dropped at a stop is never released: its slab is simply not reused.
              if (source.readv) source.release?.(bufs);
              o += n;
            }
            await cs.settle();
            await drain();
            this.checkAbort();
          }
        }
        pos += window;
      }
      // Past a stop, the rest of the stream is the appliance's old content: what the cut made
      // there is dropped (finally).
      await cs.finish();
      if (!stopped) await drain();
    } finally {
      for (const i of queue) if (i.kind === 'data') i.slab.unref();
      queue.length = 0;
    }
  }

  /** Sends what is left and waits for every batch's answer. */
  async flush(): Promise<void> {
    await this.submit();
    while (this.inflight.length > 0) await this.inflight.shift();
  }

  /** After a failure: drops the batch being filled and waits (quietly) for those in flight. */
  async abandon(): Promise<void> {
    for (const i of this.batch) if (i.kind === 'data') i.slab.unref();
    this.batch = [];
    this.batchBytes = 0;
    await Promise.allSettled(this.inflight.splice(0));
  }

  /**
   * Hands the batch being filled on. Stages overlap across batches: batch k+1 is hashed and
   * queried while batch k's segments cross and the appliance stores them; queries go one at a
   * time in order, recipes in file order, each after its own batch's segments were answered.
   * At most BATCHES_IN_FLIGHT batches are out, which bounds memory whatever the file size.
   */
  private async submit(): Promise<void> {
    if (this.batch.length === 0) return;
    const items = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    try {
      while (this.inflight.length >= BATCHES_IN_FLIGHT) await this.inflight.shift();
      if (this.failure !== undefined) throw this.failure;
    } catch (err) {
      for (const it of items) if (it.kind === 'data') it.slab.unref();
      throw err;
    }
    const prevPrep = this.prepTail;
    const prevShip = this.shipTail;
    let prepDone!: () => void;
    this.prepTail = new Promise<void>((r) => (prepDone = r));
    const p = (async () => {
      let prep: Prepared | undefined;
      try {
        await prevPrep;
        prep = await this.prepare(items);
        prepDone();
        await this.sendSegments(prep);
        await prevShip;
        await this.sendRecipe(items, prep.order);
      } finally {
        prepDone();
        for (const r of prep?.release ?? []) r();
        for (const it of items) if (it.kind === 'data') it.slab.unref();
      }
    })();
    p.catch((err) => (this.failure ??= err));
    this.shipTail = p;
    this.inflight.push(p);
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted) throw vmError('CANCELLED', 'the send was cancelled');
  }

  /**
   * Fingerprints every data item (on the libuv pool with the addon), then asks which the
   * appliance lacks. Plain loops and methods, no callbacks made per batch: V8 optimized each
   * such callback (forEach, map) again and again, some 30-60 times per send (TurboFan on the
   * sender's worker threads; tools/PERFORMANCE.md, agent5).
   */
  private async prepare(items: Item[]): Promise<Prepared> {
    const compress = this.compressAhead;
    const release: Array<() => void> = [];
    const order: Buffer[] = new Array(items.length);
    const plens: number[] = new Array(items.length);
    const payloads: Array<Buffer | undefined> = new Array(items.length);
    const engine = hashEngine();
    if (engine) {
      // One pool call per run of items in the same slab (their offsets are into its buffer),
      // of at most PAYLOAD_BYTES: the engine's pooled payload buffer holds such a run's LZ4
      // output, a longer run got a fresh buffer (up to 8 MiB, external memory: the sender's
      // V8 ran a full mark-compact every ~20 MiB sent for that pressure).
      const runs: number[][] = [];
      let last: Slab | undefined;
      let runBytes = 0;
      for (let k = 0; k < items.length; k++) {
        const it = items[k];
        if (it.kind !== 'data') continue;
        if (it.slab !== last || runBytes + it.len > PAYLOAD_BYTES) {
          runs.push([]);
          runBytes = 0;
        }
        last = it.slab;
        runBytes += it.len;
        runs[runs.length - 1].push(k);
      }
      const hashing: Array<Promise<void>> = new Array(runs.length);
      for (let r = 0; r < runs.length; r++) hashing[r] = this.hashRun(engine, items, runs[r], compress, { order, plens, payloads, release });
      await Promise.all(hashing).catch((err) => {
        for (const r of release) r();
        throw err;
      });
    } else {
      for (let k = 0; k < items.length; k++) {
        const it = items[k];
        if (it.kind !== 'data') continue;
        order[k] = fingerprint(it.slab.buf.subarray(it.off, it.off + it.len));
        plens[k] = -1;
      }
    }
    try {
      const fps = new Map<string, { fp: Buffer; item: DataItem; plen: number; payload: Buffer | undefined }>();
      for (let k = 0; k < items.length; k++) {
        const it = items[k];
        if (it.kind !== 'data') continue;
        const key = order[k].toString('latin1');
        if (!fps.has(key) && !this.lastMissing.has(key)) fps.set(key, { fp: order[k], item: it, plen: plens[k], payload: payloads[k] });
      }
      const uniq = [...fps.values()];
      const missing: Prepared['missing'] = [];
      for (let i = 0; i < uniq.length; i += LIMITS.queryCount) {
        const part = uniq.slice(i, i + LIMITS.queryCount);
        const refs: Array<{ fp: Buffer; len: number }> = new Array(part.length);
        for (let j = 0; j < part.length; j++) refs[j] = { fp: part[j].fp, len: part[j].item.len };
        const q = encodeQuery(refs);
        const reply = await this.conn.frame(`${this.route}/query`, q, this.opts.signal);
        this.report.fingerprintBytes += q.length + reply.length;
        const lacks = decodeQueryReply(reply, part.length);
        for (let j = 0; j < part.length; j++) if (lacks[j]) missing.push(part[j]);
      }
      const sent = new Set<string>();
      for (const m of missing) sent.add(m.fp.toString('latin1'));
      this.lastMissing = sent;
      // Compressing ahead pays when most segments go; a send of known data compresses only what goes.
      if (uniq.length > 0) this.compressAhead = missing.length * 2 >= uniq.length;
      return { items, order, missing, release };
    } catch (err) {
      for (const r of release) r();
      throw err;
    }
  }

  /** One pool call: hashes (and LZ4s, if `compress`) the items `ks` of one slab; their fingerprints and payloads go into `out` at their item indexes. */
  private async hashRun(
    engine: CodecEngine,
    items: Item[],
    ks: number[],
    compress: boolean,
    out: { order: Buffer[]; plens: number[]; payloads: Array<Buffer | undefined>; release: Array<() => void> },
  ): Promise<void> {
    const slab = (items[ks[0]] as DataItem).slab;
    const segs = new Uint32Array(2 * ks.length);
    for (let j = 0; j < ks.length; j++) {
      const it = items[ks[j]] as DataItem;
      segs[2 * j] = it.off;
      segs[2 * j + 1] = it.len;
    }
    const h = await engine.hash(slab.buf, segs, undefined, compress);
    out.release.push(() => h.release());
    let pat = 0;
    for (let j = 0; j < ks.length; j++) {
      const k = ks[j];
      const plen = h.plens[j];
      out.order[k] = h.fps.subarray(32 * j, 32 * j + 32);
      out.plens[k] = plen;
      if (plen > 0) {
        out.payloads[k] = h.payloads.subarray(pat, pat + plen);
        pat += plen;
      }
    }
  }

  /** The missing segments, LZ4 where it pays, in frames of about SEGMENTS_FRAME_BYTES, two in flight. */
  private async sendSegments(prep: Prepared): Promise<void> {
    const out: Array<Promise<void>> = [];
    let frame: SentSegment[] = [];
    let frameBytes = 0;
    const sendFrame = async (segs: SentSegment[], bytes: number): Promise<void> => {
      while (this.framesOut >= FRAMES_IN_FLIGHT) await new Promise<void>((r) => this.frameWaiters.push(r));
      this.framesOut++;
      const need = FRAME_HEADER_BYTES + bytes + segs.length * SEGMENT_ENTRY_HEADER_BYTES;
      const pooled = need <= FRAME_BUFFER_BYTES;
      const buf = pooled ? (this.frames.pop() ?? Buffer.allocUnsafeSlow(FRAME_BUFFER_BYTES)) : undefined;
      try {
        const body = encodeSegments(segs, buf);
        await this.conn.frame(`${this.route}/segments`, body, this.opts.signal);
      } finally {
        if (buf && this.frames.length < FRAMES_IN_FLIGHT) this.frames.push(buf);
        this.framesOut--;
        this.frameWaiters.shift()?.();
      }
    };
    try {
      for (const m of prep.missing) {
        const raw = m.item.slab.buf.subarray(m.item.off, m.item.off + m.item.len);
        let codec: 0 | 1;
        let payload: Buffer;
        if (m.plen > 0) {
          codec = SegmentCodec.Lz4;
          payload = m.payload!;
        } else if (m.plen === -2) {
          codec = SegmentCodec.Raw;
          payload = raw;
        } else {
          const enc = encodePayload(raw);
          codec = enc.codec === Codec.Lz4 ? SegmentCodec.Lz4 : SegmentCodec.Raw;
          payload = Buffer.from(enc.payload.buffer, enc.payload.byteOffset, enc.payload.byteLength);
        }
        frame.push({ fp: m.fp, len: m.item.len, codec, payload });
        frameBytes += payload.length;
        this.report.segmentsSent++;
        this.report.segmentBytesSent += payload.length;
        if (frameBytes >= SEGMENTS_FRAME_BYTES || frame.length >= LIMITS.segmentCount) {
          const p = sendFrame(frame, frameBytes);
          p.catch(() => {});
          out.push(p);
          frame = [];
          frameBytes = 0;
          // Compressing the next frame while this one crosses, but no more than that ahead.
          while (this.framesOut >= FRAMES_IN_FLIGHT) await new Promise<void>((r) => this.frameWaiters.push(r));
        }
      }
      if (frame.length > 0) out.push(sendFrame(frame, frameBytes));
    } finally {
      const settled = await Promise.allSettled(out);
      const bad = settled.find((r) => r.status === 'rejected');
      if (bad) throw (bad as PromiseRejectedResult).reason;
    }
  }

  /**
   * The batch's recipe, in file order. A batch may span regions: protocol 2 says what lies
   * between them as "old" entries, in one frame; protocol 1 takes a frame per contiguous run.
   */
  private async sendRecipe(items: Item[], order: Buffer[]): Promise<void> {
    const v2 = this.protocol >= 2;
    let runFrom = items[0].at;
    let runEnd = runFrom;
    let entries: RecipeEntry[] = [];
    for (let k = 0; k < items.length; k++) {
      const it = items[k];
      if (it.at !== runEnd) {
        if (v2 && it.at > runEnd) {
          entries.push({ kind: 'old', len: it.at - runEnd });
        } else {
          await this.recipeFrames(runFrom, runEnd, entries);
          entries = [];
          runFrom = it.at;
        }
      }
      if (it.kind === 'zero') {
        this.report.zeroBytes += it.len;
        const last = entries[entries.length - 1];
        if (last?.kind === 'zero') last.len += it.len;
        else entries.push({ kind: 'zero', len: it.len });
      } else {
        this.report.segments++;
        entries.push({ kind: 'segment', fp: order[k], len: it.len });
      }
      runEnd = it.at + it.len;
    }
    await this.recipeFrames(runFrom, runEnd, entries);
    this.opts.onProgress?.({ ...this.report, bytesSent: 0 });
  }

  /**
   * A run's recipe entries, [from, end) of the file, in frames of at most LIMITS.recipeCount.
   * A method, not a closure made per batch: V8 optimized such a closure again for every few
   * batches (TurboFan on the sender's worker threads, measured with --trace-opt).
   */
  private async recipeFrames(from: number, end: number, entries: RecipeEntry[]): Promise<void> {
    if (entries.length === 0) return;
    if (from < this.position) throw vmError('INVALID_ARGUMENT', `internal: recipe at ${from} before ${this.position}`);
    for (let i = 0; i < entries.length; i += LIMITS.recipeCount) {
      const part = entries.slice(i, i + LIMITS.recipeCount);
      await this.conn.frame(`${this.route}/recipe`, encodeRecipe(from, part, this.protocol), this.opts.signal);
      for (const e of part) from += e.len;
    }
    this.position = end;
  }
}

let engineChecked = false;
let engine: CodecEngine | undefined;

/** The addon's batch hashing on the libuv pool, or undefined (then hashing is here, per segment). */
function hashEngine(): CodecEngine | undefined {
  if (!engineChecked) {
    engineChecked = true;
    // Only the native engine: the worker engine needs shared slabs and threads of its own.
    if (codecImpl === 'native') engine = createCodecEngine();
  }
  return engine;
}

function binarySearch(a: number[], x: number): boolean {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo < a.length && a[lo] === x;
}

/** A source's map cut to [pos, pos + len), sorted, gaps filled as data (read them to be sure). */
function normalizeMap(map: Array<{ offset: number; length: number; zero: boolean }>, pos: number, len: number): Array<{ offset: number; length: number; zero: boolean }> {
  const out: Array<{ offset: number; length: number; zero: boolean }> = [];
  let at = pos;
  const end = pos + len;
  for (const r of [...map].sort((a, b) => a.offset - b.offset)) {
    const s = Math.max(r.offset, at);
    const e = Math.min(r.offset + r.length, end);
    if (e <= s) continue;
    if (s > at) out.push({ offset: at, length: s - at, zero: false });
    const prev = out[out.length - 1];
    if (prev && prev.zero === r.zero && prev.offset + prev.length === s) prev.length += e - s;
    else out.push({ offset: s, length: e - s, zero: r.zero });
    at = e;
  }
  if (at < end) out.push({ offset: at, length: end - at, zero: false });
  return out;
}
