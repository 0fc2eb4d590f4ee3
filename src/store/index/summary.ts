// The summary filter (Bloom) in front of the index: a new segment costs no disk lookup. It
// doubles when full, refilled from the index in the background; adds go to both meanwhile.

import { BloomFilter } from './bloom.js';
import type { SegmentIndex } from './segment-index.js';

export class SummaryFilter {
  private growing: BloomFilter | undefined;

  constructor(
    public bloom: BloomFilter,
    private readonly index: SegmentIndex,
    /** Fingerprints appended but not yet in the index. */
    private readonly unindexed: () => Iterable<Uint8Array>,
  ) {}

  add(fp: Uint8Array): void {
    this.bloom.add(fp);
    this.growing?.add(fp);
    if (this.bloom.count > this.bloom.capacity && !this.growing) void this.grow();
  }

  private async grow(): Promise<void> {
    const next = BloomFilter.forCapacity(this.bloom.capacity * 2);
    this.growing = next;
    try {
      for (const fp of this.unindexed()) next.add(fp);
      for await (const fp of this.index.fingerprints()) next.add(fp);
      this.bloom = next;
    } finally {
      this.growing = undefined;
    }
  }
}
