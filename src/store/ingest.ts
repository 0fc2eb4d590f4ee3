// The duplicate eliminator's write side. A batch of segments (in a shared slab) is hashed by
// the codec engine, which also compresses the segments the summary filter says are new. The
// main thread then decides for each segment, in stream order and without an await per
// segment: known in memory (pending or locality cache) -> duplicate; not in the filter -> new;
// otherwise one batched index read for all the doubtful ones.

import { encodePayload } from './codec/codec.js';
import type { HashedBatch } from './codec/engine.js';
import { Codec, SegmentKind } from './container/format.js';
import { fingerprint } from './codec/fingerprint.js';
import type { StoreCore } from './store-core.js';
import type { Entry } from './tree/node.js';
import { indexKey, decodeLocation } from './index/segment-index.js';

export type { HashedBatch };

export class IngestEngine {
  constructor(private readonly core: StoreCore) {}

  /** Starts hashing (and compressing what is probably new) a batch of segments of `data`. */
  hash(data: Uint8Array, segs: Uint32Array): Promise<HashedBatch> {
    return this.core.codec.hash(data, segs, this.core.bloom.shape, true);
  }

  /**
   * Stores what is new in a hashed batch and returns the data entries in order. `deps`
   * collects the containers not yet indexed that the entries rely on (see checkpoint).
   * `data` and `segs` are the batch given to hash(); the batch is released here.
   */
  async store(data: Uint8Array, segs: Uint32Array, h: HashedBatch, deps: Set<number>): Promise<Entry[]> {
    try {
      return await this.storeBatch(data, segs, h, deps);
    } finally {
      h.release();
    }
  }

  private async storeBatch(data: Uint8Array, segs: Uint32Array, h: HashedBatch, deps: Set<number>): Promise<Entry[]> {
    const core = this.core;
    const n = segs.length >>> 1;
    const fps = h.fps;
    // Pass 1, from memory: known segments; the rest is new unless the filter doubts it.
    const known = new Int8Array(n);
    let doubt: number[] | undefined;
    for (let i = 0; i < n; i++) {
      const cid = core.memCid(fps, i * 32);
      if (cid >= 0 && this.reuse(fps, i * 32, cid, deps)) {
        known[i] = 1;
      } else if (core.bloom.mayContain(fps, i * 32)) {
        (doubt ??= []).push(i);
      }
    }
    if (doubt) {
      const found = await core.lookupMany(doubt.map((i) => fps.subarray(i * 32, i * 32 + 32)));
      for (let j = 0; j < doubt.length; j++) {
        const loc = found[j];
        if (loc && this.reuse(fps, doubt[j] * 32, loc.cid, deps)) known[doubt[j]] = 1;
      }
    }
    // Pass 2, in stream order: append the new ones.
    const entries: Entry[] = new Array(n);
    const plens = h.plens;
    let pat = 0;
    for (let i = 0; i < n; i++) {
      const fp = fps.subarray(i * 32, i * 32 + 32);
      const len = segs[2 * i + 1];
      const plen = plens[i];
      const payloadAt = pat;
      if (plen > 0) pat += plen;
      entries[i] = { fp, len, zero: false };
      if (known[i]) continue;
      // An earlier segment of this batch (or another writer meanwhile) may have stored it.
      const cid = core.memCid(fps, i * 32);
      if (cid >= 0 && this.reuse(fps, i * 32, cid, deps)) continue;
      const raw = data.subarray(segs[2 * i], segs[2 * i] + len);
      let codec: Codec;
      let payload: Uint8Array;
      if (plen > 0) {
        codec = Codec.Lz4;
        payload = h.payloads.subarray(payloadAt, payloadAt + plen);
      } else if (plen === -2) {
        codec = Codec.Raw;
        payload = raw;
      } else {
        ({ codec, payload } = encodePayload(raw));
      }
      deps.add(core.append(SegmentKind.Data, fp, len, codec, payload).cid);
    }
    return entries;
  }

  /**
   * Takes a reference to the copy of a segment already in container `cid`, if dedup may (not
   * while the container is swept; a running GC must learn the segment is live: dedupHit). An
   * entry relying on a container still being written makes the checkpoint wait for it (deps).
   */
  private reuse(fp: Uint8Array, off: number, cid: number, deps: Set<number>): boolean {
    if (!this.core.dedupHit(fp, off, cid)) return false;
    if (this.core.writers.has(cid)) deps.add(cid);
    return true;
  }

  /** Stores a tree node synchronously (nodes are ~1 in 80 segments; hashing one is microseconds). */
  storeNode(bytes: Buffer, deps: Set<number>): Buffer {
    const core = this.core;
    const fp = fingerprint(bytes);
    let loc = core.lookupMem(fp);
    if (!loc && core.bloom.mayContain(fp)) {
      const v = core.db.getSync(indexKey(fp));
      if (v) loc = decodeLocation(v);
    }
    if (loc && this.reuse(fp, 0, loc.cid, deps)) return fp;
    const { codec, payload } = encodePayload(bytes);
    const at = core.append(SegmentKind.Node, fp, bytes.length, codec, payload);
    deps.add(at.cid);
    return fp;
  }
}
