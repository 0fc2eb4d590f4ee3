// What ingest must do while garbage collection runs (gc.ts): every dedup hit marks its segment
// live, and containers being swept are fenced so no new reference to their records appears.

import type { BloomFilter } from '../index/bloom.js';

export class GcHooks {
  /** Set while garbage collection runs: every dedup hit marks its segment live. */
  live: BloomFilter | undefined;
  /** Containers being swept: dedup must not take a new reference to their records. */
  readonly fenced = new Set<number>();

  /**
   * Whether a write may reference an existing segment found in container `cid` instead of
   * storing it again: not if the container is being swept; and a running GC learns that the
   * segment is live.
   */
  dedupHit(fp: Uint8Array, off: number, cid: number): boolean {
    if (this.fenced.has(cid)) return false;
    this.live?.add(fp, off);
    return true;
  }
}
