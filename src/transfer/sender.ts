// The sending side of the fingerprint-first protocol (PROTOCOL.md): reads a source, cuts it
// with the store's own segmenter (the appliance's parameters, so boundaries and fingerprints
// match the store's), fingerprints each segment, asks which the appliance lacks, sends only
// those (LZ4, the store's payload layout), then the recipe that names them in file order.
// Zero runs and holes cross as extents only. An agent never opens a store: only the store's
// pure parts are used here (segmenter, fingerprint, codec).
//
// Memory is bounded: one batch of segments (at most BATCH_BYTES of plain data, in the chunk
// stream's reused slabs) is in flight at a time, whatever the file size.

import { vmError } from '../errors.js';
import { ChunkStream, type ChunkItem } from '../store/segmenter/chunk-stream.js';
import type { Slab } from '../store/slab-pool.js';
import { fingerprint } from '../store/codec/fingerprint.js';
import { encodePayload } from '../store/codec/codec.js';
import { Codec } from '../store/container/format.js';
import type { TransferConnection } from './client.js';
import {
  decodeQueryReply,
  encodeQuery,
  encodeRecipe,
  encodeSegments,
  LIMITS,
  PROTOCOL_VERSION,
  type RecipeEntry,
  SegmentCodec,
  type SentSegment,
} from './frames.js';
import type { BoundariesReply, FinishReply, OpenReply, Region, SegmentsReply } from './messages.js';
import { TRANSFER_PREFIX } from './messages.js';

export interface ReadSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
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

/** Plain bytes of segments per batch (query, segments, recipe); one batch is sent while the next is cut. */
const BATCH_BYTES = 8 * 1024 * 1024;
/** Bytes read from the source at a time. */
const READ_BYTES = 4 * 1024 * 1024;
/** Bytes of payload per segments frame. */
const SEGMENTS_FRAME_BYTES = 16 * 1024 * 1024;
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
  const open = await conn.json<OpenReply>(
    'POST',
    `${TRANSFER_PREFIX}/sessions`,
    { protocol: PROTOCOL_VERSION, share: target.share, path: target.path, size: target.size, ...(target.ranges ? { ranges: target.ranges } : {}), ...(target.taskId ? { taskId: target.taskId } : {}) },
    opts.signal,
  );
  if (open.protocol !== PROTOCOL_VERSION) throw vmError('NOT_SUPPORTED', `the appliance speaks transfer protocol ${open.protocol}; this sender speaks ${PROTOCOL_VERSION}`);
  if (open.chunker.algorithm !== 'fastcdc-gear-v1') throw vmError('NOT_SUPPORTED', `the appliance cuts with ${open.chunker.algorithm}, which this sender does not know`);
  const s = new Sender(conn, source, target, open, report, opts);
  for (const region of open.regions) await s.region(region);
  await conn.json<FinishReply>('POST', `${TRANSFER_PREFIX}/sessions/${open.session}/finish`, {}, opts.signal);
}

class Sender {
  private readonly route: string;
  private readonly chunker: { minSize: number; avgSize: number; maxSize: number };
  /** Where the recipe sent so far ends. */
  private position: number;
  /** Old boundaries known so far (ascending), and where the appliance's list goes on. */
  private bounds: number[] = [];
  private boundsFrom = -1;
  private boundsNext: number | null = null;

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
    this.position = open.position;
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
    if (this.position > start) {
      // A resumed task: the recipe already covers up to `position`, which is a cut.
      start = this.position;
      if (start >= this.target.size || (await this.stopsAt(start, region))) return;
    }
    if (start >= this.target.size) return;
    if (start < this.position) throw vmError('INVALID_ARGUMENT', `region at ${start} lies before the recipe's end ${this.position}`);
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
    let batch: Item[] = [];
    let batchBytes = 0;
    let stopped = false;
    const drain = async (): Promise<void> => {
      while (queue.length > 0 && !stopped) {
        const item = queue.shift()!;
        batch.push(item);
        if (item.kind === 'data') batchBytes += item.len;
        if (await this.stopsAt(item.at + item.len, region)) stopped = true;
        if (batchBytes >= BATCH_BYTES || batch.length >= LIMITS.queryCount) {
          await this.pipeline(batch);
          batch = [];
          batchBytes = 0;
        }
      }
    };
    try {
      let pos = start;
      // An incremental region usually ends a few segments past its changes: read little first.
      let readBytes = this.incremental() ? Math.min(READ_BYTES, 4 * this.chunker.maxSize + (region.end - start)) : READ_BYTES;
      while (pos < this.target.size && !stopped) {
        this.checkAbort();
        const window = Math.min(MAP_BYTES, this.target.size - pos);
        const map = this.source.dataRanges ? await this.source.dataRanges(pos, window) : [{ offset: pos, length: window, zero: false }];
        for (const r of normalizeMap(map, pos, window)) {
          let o = r.offset;
          const end = r.offset + r.length;
          while (o < end && !stopped) {
            if (r.zero) {
              await cs.feedZeros(end - o);
              o = end;
            } else {
              const n = Math.min(readBytes, end - o);
              readBytes = Math.min(READ_BYTES, readBytes * 2);
              const buf = await this.source.read(o, n);
              if (buf.length !== n) throw vmError('IO', `the source returned ${buf.length} bytes at offset ${o}, not ${n}`);
              this.report.bytesRead += n;
              await cs.feed(buf);
              o += n;
            }
            await cs.settle();
            await drain();
            this.checkAbort();
          }
          if (stopped) break;
        }
        pos += window;
      }
      if (!stopped) {
        await cs.finish();
        await drain();
      } else {
        // The rest of the stream is the appliance's old content: drop what the cut made past here.
        await cs.finish();
      }
      if (batch.length > 0) await this.pipeline(batch);
      await this.drainPipeline();
      batch = [];
    } finally {
      for (const i of [...batch, ...queue]) if (i.kind === 'data') i.slab.unref();
      await this.drainPipeline().catch(() => {});
    }
  }

  /** The batch being sent while the next one is cut and hashed (one in flight: memory stays bounded). */
  private inflight: Promise<void> | undefined;

  private async pipeline(items: Item[]): Promise<void> {
    await this.drainPipeline();
    const p = this.sendBatch(items);
    p.catch(() => {});
    this.inflight = p;
  }

  private async drainPipeline(): Promise<void> {
    const p = this.inflight;
    this.inflight = undefined;
    if (p) await p;
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted) throw vmError('CANCELLED', 'the send was cancelled');
  }

  /** Query, segments, recipe for one batch of items; releases the items' slabs. */
  private async sendBatch(items: Item[]): Promise<void> {
    try {
      const fps = new Map<string, { fp: Buffer; item: DataItem }>();
      const order: Buffer[] = new Array(items.length);
      items.forEach((it, k) => {
        if (it.kind !== 'data') return;
        const fp = fingerprint(it.slab.buf.subarray(it.off, it.off + it.len));
        order[k] = fp;
        const key = fp.toString('latin1');
        if (!fps.has(key)) fps.set(key, { fp, item: it });
      });
      const uniq = [...fps.values()];
      const missing: typeof uniq = [];
      for (let i = 0; i < uniq.length; i += LIMITS.queryCount) {
        const part = uniq.slice(i, i + LIMITS.queryCount);
        const q = encodeQuery(part.map((u) => ({ fp: u.fp, len: u.item.len })));
        const reply = await this.conn.frame(`${this.route}/query`, q, this.opts.signal);
        this.report.fingerprintBytes += q.length + reply.length;
        decodeQueryReply(reply, part.length).forEach((m, j) => {
          if (m) missing.push(part[j]);
        });
      }
      let frame: SentSegment[] = [];
      let frameBytes = 0;
      const sendFrame = async () => {
        if (frame.length === 0) return;
        const body = encodeSegments(frame);
        await this.conn.frame(`${this.route}/segments`, body, this.opts.signal);
        frame = [];
        frameBytes = 0;
      };
      for (const m of missing) {
        const raw = m.item.slab.buf.subarray(m.item.off, m.item.off + m.item.len);
        const enc = encodePayload(raw);
        const payload = Buffer.from(enc.payload.buffer, enc.payload.byteOffset, enc.payload.byteLength);
        frame.push({ fp: m.fp, len: m.item.len, codec: enc.codec === Codec.Lz4 ? SegmentCodec.Lz4 : SegmentCodec.Raw, payload: Buffer.from(payload) });
        frameBytes += payload.length;
        this.report.segmentsSent++;
        this.report.segmentBytesSent += payload.length;
        if (frameBytes >= SEGMENTS_FRAME_BYTES || frame.length >= LIMITS.segmentCount) await sendFrame();
      }
      await sendFrame();
      const entries: RecipeEntry[] = [];
      items.forEach((it, k) => {
        if (it.kind === 'zero') {
          this.report.zeroBytes += it.len;
          const last = entries[entries.length - 1];
          if (last?.kind === 'zero') last.len += it.len;
          else entries.push({ kind: 'zero', len: it.len });
        } else {
          this.report.segments++;
          entries.push({ kind: 'segment', fp: order[k], len: it.len });
        }
      });
      const offset = items[0].at;
      if (offset !== this.position && offset < this.position) throw vmError('INVALID_ARGUMENT', `internal: recipe at ${offset} before ${this.position}`);
      for (let i = 0; i < entries.length; i += LIMITS.recipeCount) {
        const part = entries.slice(i, i + LIMITS.recipeCount);
        let from = offset;
        for (let j = 0; j < i; j++) from += entries[j].len;
        await this.conn.frame(`${this.route}/recipe`, encodeRecipe(from, part), this.opts.signal);
      }
      const last = items[items.length - 1];
      this.position = last.at + last.len;
      this.opts.onProgress?.({ ...this.report, bytesSent: 0 });
    } finally {
      for (const it of items) if (it.kind === 'data') it.slab.unref();
      items.length = 0;
    }
  }
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
