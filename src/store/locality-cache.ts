// Stream-informed locality (Data Domain's SISL): when one fingerprint is found in container C,
// the neighbours of that segment in the stream are very likely in C too, so the whole record
// table of C is loaded at once. A duplicate stream then costs about one index read per
// container instead of one per segment. Bounded by a number of containers (LRU).

import type { RecordMeta } from './container-format.js';
import { FpMap } from './fp-map.js';
import type { Location } from './segment-index.js';

interface Cached {
  cid: number;
  meta: RecordMeta;
}

interface Held {
  table: RecordMeta[];
  lastUse: number;
}

export class LocalityCache {
  private readonly map = new FpMap<Cached>();
  private readonly held = new Map<number, Held>();
  private clock = 0;

  constructor(private readonly maxContainers = 128) {}

  has(cid: number): boolean {
    return this.held.has(cid);
  }

  get containers(): number {
    return this.held.size;
  }

  get entries(): number {
    return this.map.size;
  }

  get(fp: Uint8Array, off = 0): Location | undefined {
    const c = this.map.get(fp, off);
    if (!c) return undefined;
    const h = this.held.get(c.cid);
    if (h) h.lastUse = ++this.clock;
    return toLocation(c.cid, c.meta);
  }

  insert(cid: number, table: RecordMeta[]): void {
    if (this.held.has(cid)) this.drop(cid);
    while (this.held.size >= this.maxContainers) this.evictOne();
    this.held.set(cid, { table, lastUse: ++this.clock });
    for (const meta of table) this.map.set(meta.fp, { cid, meta });
  }

  drop(cid: number): void {
    const h = this.held.get(cid);
    if (!h) return;
    this.held.delete(cid);
    for (const meta of h.table) this.map.delete(meta.fp, (v) => v.cid === cid);
  }

  clear(): void {
    this.map.clear();
    this.held.clear();
  }

  private evictOne(): void {
    let victim = -1;
    let oldest = Infinity;
    for (const [cid, h] of this.held) {
      if (h.lastUse < oldest) {
        oldest = h.lastUse;
        victim = cid;
      }
    }
    if (victim >= 0) this.drop(victim);
  }
}

export function toLocation(cid: number, m: RecordMeta): Location {
  return { cid, offset: m.offset, storedLen: m.storedLen, rawLen: m.rawLen, kind: m.kind, codec: m.codec };
}
