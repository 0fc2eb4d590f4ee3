// Where the CPU-heavy half of ingest and read runs: hashing and compressing batches of
// segments, and reading, decoding and verifying stored records. Two engines, chosen like the
// segmenter (native.ts): the addon's batch calls on the libuv thread pool, or, without the
// addon, the codec worker threads (codec/pool.ts) with @napi-rs/blake-hash and lz4-napi.
// Both take whole batches (hundreds of segments): per-call costs then vanish in the work.

import { vmError } from '../../errors.js';
import type { BloomShape } from '../index/bloom.js';
import { CodecPool } from './pool.js';
import { codecImpl, nativeCodec } from '../native.js';

export interface HashedBatch {
  /** 32 bytes per segment. */
  fps: Buffer;
  /** LZ4 payloads of the compressed segments, back to back in segment order. */
  payloads: Buffer;
  /** Per segment: payload length; -1 not compressed (probably a duplicate); -2 store raw. */
  plens: Int32Array;
  /** Gives payloads back for reuse; the caller must hold no view of it afterwards. */
  release(): void;
}

/** 7 numbers per record: fd, payload position, storedLen, rawLen, codec, target, offset. */
export const DECODE_ITEM = 7;

export interface DecodeFailure {
  /** Index of the record in the request. */
  i: number;
  kind: 'short' | 'corrupt' | 'io';
  message: string;
}

export interface CodecEngine {
  readonly impl: 'native' | 'workers';
  /**
   * Hashes the segments (segs: offset, length pairs into data) and, if `compress`, LZ4s those
   * the summary filter does not know. `data` must not change until the promise settles; the
   * worker engine also needs it to be a view of a SharedArrayBuffer.
   */
  hash(data: Uint8Array, segs: Uint32Array, bloom: BloomShape | undefined, compress: boolean): Promise<HashedBatch>;
  /**
   * Reads, decodes and verifies records (DECODE_ITEM numbers each; fps 32 bytes each), writing
   * record k's plain bytes at targets[target] + offset. Resolves with the records that failed
   * (their target bytes are then undefined). `faults` (tests, through the fault seam of
   * container/file-io.ts): a ReadFault per record, injected where the engine reads.
   */
  decode(items: Float64Array, fps: Uint8Array, targets: Uint8Array[], faults?: Int32Array): Promise<DecodeFailure[]>;
  /**
   * Received segments (transfer protocol): decodes each payload (ACCEPT_ITEM numbers per
   * segment: offset in src, payload length, codec 0 raw / 1 LZ4, plain length) into plain,
   * back to back, and hashes them, off the main thread; stops at the first that does not
   * decode. Native engine only (undefined: the caller decodes on its own thread).
   */
  readonly accept?: (src: Uint8Array, items: Uint32Array, plain: Uint8Array) => Promise<AcceptedBatch>;
  close(): Promise<void>;
}

export const ACCEPT_ITEM = 4;

export interface AcceptedBatch {
  /** Segments decoded and hashed (the first n). */
  n: number;
  /** 32 bytes per decoded segment. */
  fps: Buffer;
  /** Per segment sent raw: the length of its LZ4 payload in payloads (back to back), or -2 when LZ4 does not pay; -1 for one sent as LZ4. */
  plens: Int32Array;
  payloads: Buffer;
  /** Gives payloads back for reuse; the caller must hold no view of it afterwards. */
  release(): void;
  /** Why segment n did not decode, if n < count: a short LZ4 prefix, a length mismatch (got), or a malformed block. */
  failure?: { kind: 'short-prefix' } | { kind: 'length'; got: number } | { kind: 'malformed' };
}

// ---- native ----------------------------------------------------------------------------------

/**
 * Payload buffers of the usual batch size are recycled: fresh memory faults on first touch.
 * A batch holds at most 4 MiB plus one segment (tree/writer.ts); compressed payloads are
 * never longer than their segments.
 */
export const PAYLOAD_BYTES = 4 * 1024 * 1024 + 256 * 1024;
const KEEP_PAYLOADS = 6;
const freePayloads: Buffer[] = [];
/** hash() calls whose payloads did not fit a pooled buffer (a fresh one of their size each). */
let oversizedPayloads = 0;

/** How many hash() calls so far compressed into a fresh buffer because they held more than PAYLOAD_BYTES (tests, benches). */
export function oversizedPayloadCount(): number {
  return oversizedPayloads;
}
/** Batches up to this many bytes are hashed on the calling thread (see hash). */
const SYNC_HASH_BYTES = 64 * 1024;
const EMPTY = Buffer.alloc(0);

const STATUS_KIND: Record<number, DecodeFailure['kind']> = { 1: 'io', 2: 'short', 3: 'corrupt', 4: 'corrupt', 5: 'corrupt' };

function statusMessage(kind: number, detail: number, items: Float64Array, k: number): string {
  const stored = items[k * DECODE_ITEM + 2];
  const raw = items[k * DECODE_ITEM + 3];
  switch (kind) {
    case 1:
      return `read failed (errno ${detail})`;
    case 2:
      return `record is cut short (${detail} of ${stored} bytes readable)`;
    case 3:
      return 'does not decompress (malformed LZ4 block)';
    case 4:
      return `decodes to ${detail} bytes, expected ${raw}`;
    default:
      return 'failed verification (BLAKE3 mismatch)';
  }
}

class NativeEngine implements CodecEngine {
  readonly impl = 'native' as const;
  private closed = false;

  hash(data: Uint8Array, segs: Uint32Array, bloom: BloomShape | undefined, compress: boolean): Promise<HashedBatch> {
    if (this.closed) return Promise.reject(vmError('CLOSED', 'the store is closed'));
    const n = segs.length >>> 1;
    let total = 0;
    for (let i = 1; i < segs.length; i += 2) total += segs[i];
    const fps = Buffer.allocUnsafe(n * 32);
    const plens = new Int32Array(n);
    if (total <= SYNC_HASH_BYTES) {
      // A small batch (a small file): hashed here, in microseconds, rather than sent to the
      // libuv pool and back. Nothing is compressed here (plens -1, as for a segment the filter
      // doubts): ingest compresses the new ones with the same LZ4 and the same 1/16 rule.
      nativeCodec!.blake3Many(data, segs, fps);
      plens.fill(-1);
      return Promise.resolve({ fps, payloads: EMPTY, plens, release: () => {} });
    }
    const pooled = compress && total <= PAYLOAD_BYTES;
    if (compress && !pooled) oversizedPayloads++;
    const payloads = !compress ? Buffer.alloc(0) : pooled ? (freePayloads.pop() ?? Buffer.allocUnsafe(PAYLOAD_BYTES)) : Buffer.allocUnsafe(total);
    const words = bloom ? new Uint32Array(bloom.sab) : null;
    return new Promise((resolve, reject) => {
      nativeCodec!.hashBatch(data, segs, words, bloom?.log2Bits ?? 0, bloom?.probes ?? 0, compress, fps, plens, payloads, (err, used) => {
        if (err) {
          if (pooled) freePayloads.push(payloads);
          reject(err);
          return;
        }
        let released = false;
        resolve({
          fps,
          payloads: payloads.subarray(0, used),
          plens,
          release: () => {
            if (!released && pooled && freePayloads.length < KEEP_PAYLOADS) freePayloads.push(payloads);
            released = true;
          },
        });
      });
    });
  }

  decode(items: Float64Array, fps: Uint8Array, targets: Uint8Array[], faults?: Int32Array): Promise<DecodeFailure[]> {
    if (this.closed) return Promise.reject(vmError('CLOSED', 'the store is closed'));
    const n = items.length / DECODE_ITEM;
    const status = new Int32Array(2 * n);
    // Faults go to the addon's read seam by descriptor (native/src/read_seam.c), for this batch.
    const faulted = faults?.some((f) => f !== 0) && nativeCodec!.setReadFaults;
    if (faulted) {
      const fds: number[] = [];
      const kinds: number[] = [];
      for (let k = 0; k < n; k++) if (faults![k] !== 0) fds.push(items[k * DECODE_ITEM]), kinds.push(faults![k]);
      nativeCodec!.setReadFaults!(Int32Array.from(fds), Int32Array.from(kinds));
    }
    return new Promise((resolve, reject) => {
      nativeCodec!.decodeBatch(items, fps, targets, status, (err) => {
        if (faulted) nativeCodec!.setReadFaults!(new Int32Array(0), new Int32Array(0));
        if (err) return reject(err);
        const failures: DecodeFailure[] = [];
        for (let k = 0; k < n; k++) {
          const s = status[2 * k];
          if (s !== 0) failures.push({ i: k, kind: STATUS_KIND[s] ?? 'corrupt', message: statusMessage(s, status[2 * k + 1], items, k) });
        }
        resolve(failures);
      });
    });
  }

  readonly accept: CodecEngine['accept'] = nativeCodec?.acceptBatch ? (src, items, plain) => this.acceptNative(src, items, plain) : undefined;

  private acceptNative(src: Uint8Array, items: Uint32Array, plain: Uint8Array): Promise<AcceptedBatch> {
    if (this.closed) return Promise.reject(vmError('CLOSED', 'the store is closed'));
    const count = items.length / ACCEPT_ITEM;
    const fps = Buffer.allocUnsafe(32 * count);
    const status = new Int32Array(2 * count);
    const plens = new Int32Array(count);
    let rawBytes = 0;
    for (let i = 0; i < count; i++) if (items[ACCEPT_ITEM * i + 2] === 0) rawBytes += items[ACCEPT_ITEM * i + 3];
    const pooled = rawBytes <= PAYLOAD_BYTES;
    const payloads = rawBytes === 0 ? EMPTY : pooled ? (freePayloads.pop() ?? Buffer.allocUnsafe(PAYLOAD_BYTES)) : Buffer.allocUnsafe(rawBytes);
    let released = false;
    const release = (): void => {
      if (!released && pooled && payloads !== EMPTY && freePayloads.length < KEEP_PAYLOADS) freePayloads.push(payloads);
      released = true;
    };
    return new Promise((resolve, reject) => {
      nativeCodec!.acceptBatch!(src, items, plain, fps, status, plens, payloads, (err, n) => {
        if (err) {
          release();
          return reject(err);
        }
        if (n >= count) return resolve({ n, fps, plens, payloads, release });
        const s = status[2 * n];
        const detail = status[2 * n + 1];
        const failure: AcceptedBatch['failure'] = s === 4 ? { kind: 'length', got: detail } : detail === -1 ? { kind: 'short-prefix' } : { kind: 'malformed' };
        resolve({ n, fps, plens, payloads, release, failure });
      });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

// ---- workers -----------------------------------------------------------------------------------

class WorkerEngine implements CodecEngine {
  readonly impl = 'workers' as const;
  private readonly pool: CodecPool;

  constructor(workers?: number) {
    this.pool = new CodecPool(workers);
  }

  async hash(data: Uint8Array, segs: Uint32Array, bloom: BloomShape | undefined, compress: boolean): Promise<HashedBatch> {
    const r = await this.pool.hash({ data, segs, compress, ...(bloom ? { bloom: { sab: bloom.sab, log2Bits: bloom.log2Bits, probes: bloom.probes } } : {}) });
    return {
      fps: Buffer.from(r.fps.buffer, r.fps.byteOffset, r.fps.byteLength),
      payloads: Buffer.from(r.payloads.buffer, r.payloads.byteOffset, r.payloads.byteLength),
      plens: r.plens,
      release: () => {},
    };
  }

  async decode(items: Float64Array, fps: Uint8Array, targets: Uint8Array[], faults?: Int32Array): Promise<DecodeFailure[]> {
    // Workers write into shared memory; the bytes are copied to their targets afterwards.
    const n = items.length / DECODE_ITEM;
    let total = 0;
    for (let k = 0; k < n; k++) total += items[k * DECODE_ITEM + 3];
    const sab = new SharedArrayBuffer(total);
    const req = new Float64Array(n * 7);
    let at = 0;
    for (let k = 0; k < n; k++) {
      for (let f = 0; f < 5; f++) req[k * 7 + f] = items[k * DECODE_ITEM + f];
      req[k * 7 + 5] = at;
      req[k * 7 + 6] = faults?.[k] ?? 0;
      at += items[k * DECODE_ITEM + 3];
    }
    const res = await this.pool.decode({ items: req, fps, out: sab });
    const bad = new Set(res.errors.map((e) => e.i));
    const src = Buffer.from(sab);
    for (let k = 0; k < n; k++) {
      if (bad.has(k)) continue;
      const t = targets[items[k * DECODE_ITEM + 5]];
      const dst = Buffer.isBuffer(t) ? t : Buffer.from(t.buffer, t.byteOffset, t.byteLength);
      const from = req[k * 7 + 5];
      src.copy(dst, items[k * DECODE_ITEM + 6], from, from + items[k * DECODE_ITEM + 3]);
    }
    return res.errors.map((e) => ({ i: e.i, kind: e.kind, message: e.message }));
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** The engine for a new store: native when the addon is built, else `workers` threads. */
export function createCodecEngine(workers?: number): CodecEngine {
  return codecImpl === 'native' ? new NativeEngine() : new WorkerEngine(workers);
}
