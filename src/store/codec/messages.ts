// Messages between the store and its codec workers.

export interface BloomView {
  sab: SharedArrayBuffer;
  log2Bits: number;
  probes: number;
}

export interface HashRequest {
  id: number;
  type: 'hash';
  /** Segment bytes, a view of a SharedArrayBuffer. */
  data: Uint8Array;
  /** Pairs (offset, length) into data. */
  segs: Uint32Array;
  /** Compress segments the filter says are new (with no filter: all). */
  compress: boolean;
  bloom?: BloomView;
}

export interface HashResult {
  id: number;
  type: 'hash';
  /** 32 bytes per segment. */
  fps: Uint8Array;
  /** The LZ4 payloads of compressed segments, back to back in segment order. */
  payloads: Uint8Array;
  /** Per segment: payload length; -1 not compressed (probably a duplicate); -2 store raw. */
  plens: Int32Array;
}

export interface DecodeRequest {
  id: number;
  type: 'decode';
  /** 7 numbers per segment: fd, payload position, storedLen, rawLen, codec, out offset, read fault (tests: file-io.ts ReadFault). */
  items: Float64Array;
  fps: Uint8Array;
  out: SharedArrayBuffer;
}

export interface DecodeResult {
  id: number;
  type: 'decode';
  errors: Array<{ i: number; kind: 'short' | 'corrupt' | 'io'; message: string }>;
}

export interface WorkerError {
  id: number;
  type: 'error';
  message: string;
  stack?: string;
}

export type WorkerRequest = HashRequest | DecodeRequest;
export type WorkerReply = HashResult | DecodeResult | WorkerError;
