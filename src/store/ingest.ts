// The duplicate eliminator's write side. A batch of segments (copied once into shared memory)
// is hashed by a codec worker, which also compresses the segments the summary filter says
// are new. The main thread then decides for each segment, in stream order and without an
// await per segment: known in memory (pending or locality cache) -> duplicate; not in the
// filter -> new; otherwise one batched index read for all the doubtful ones.

import { encodePayload } from './codec.js';
import { Codec, SegmentKind } from './container-format.js';
import { fingerprint } from './fingerprint.js';
import type { Location } from './segment-index.js';
import type { StoreCore } from './store-core.js';
import type { Entry } from './tree-node.js';
import { indexKey, decodeLocation } from './segment-index.js';

export interface HashedBatch {
  data: Uint8Array;
  segs: Uint32Array;
  fps: Uint8Array;
  payloads: Uint8Array;
  plens: Int32Array;
}

export class IngestEngine {
  constructor(private readonly core: StoreCore) {}

  /** Starts hashing a batch in a worker. `data` must be a view of a SharedArrayBuffer. */
  async hash(data: Uint8Array, segs: Uint32Array): Promise<HashedBatch> {
    const b = this.core.bloom.shape;
    const r = await this.core.pool.hash({ data, segs, compress: true, bloom: { sab: b.sab, log2Bits: b.log2Bits, probes: b.probes } });
    return { data, segs, fps: r.fps, payloads: r.payloads, plens: r.plens };
  }

  /**
   * Stores what is new in a hashed batch and returns the data entries in order. `deps`
   * collects the containers not yet indexed that the entries rely on (see checkpoint).
   */
  async store(h: HashedBatch, deps: Set<number>): Promise<Entry[]> {
    const core = this.core;
    const n = h.segs.length >>> 1;
    const fps = Buffer.from(h.fps.buffer, h.fps.byteOffset, h.fps.byteLength);
    const locs: Array<Location | undefined> = new Array(n);
    const doubt: number[] = [];
    for (let i = 0; i < n; i++) {
      const loc = core.lookupMem(fps, i * 32);
      if (loc) locs[i] = loc;
      else if (core.bloom.mayContain(fps, i * 32)) doubt.push(i);
    }
    if (doubt.length > 0) {
      const found = await core.lookupMany(doubt.map((i) => fps.subarray(i * 32, i * 32 + 32)));
      for (let j = 0; j < doubt.length; j++) locs[doubt[j]] = found[j];
    }
    const entries: Entry[] = new Array(n);
    let pat = 0;
    for (let i = 0; i < n; i++) {
      const fp = fps.subarray(i * 32, i * 32 + 32);
      const len = h.segs[2 * i + 1];
      const plen = h.plens[i];
      const payloadAt = pat;
      if (plen > 0) pat += plen;
      // An earlier segment of this batch (or another writer meanwhile) may have stored it.
      const loc = locs[i] ?? core.lookupMem(fp);
      if (loc) {
        if (core.writers.has(loc.cid)) deps.add(loc.cid);
      } else {
        const raw = h.data.subarray(h.segs[2 * i], h.segs[2 * i] + len);
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
        const at = core.append(SegmentKind.Data, fp, len, codec, payload);
        deps.add(at.cid);
      }
      entries[i] = { fp, len, zero: false };
    }
    return entries;
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
    if (loc) {
      if (core.writers.has(loc.cid)) deps.add(loc.cid);
      return fp;
    }
    const { codec, payload } = encodePayload(bytes);
    const at = core.append(SegmentKind.Node, fp, bytes.length, codec, payload);
    deps.add(at.cid);
    return fp;
  }
}
