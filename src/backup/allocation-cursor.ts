// base:allocation of the ranges a disk copy asks for in ascending order, from one walk kept open
// between them (disk-copy.ts, disk-copy-full.ts).

import { vmError } from '../errors.js';
import { BASE_ALLOCATION, extents } from '../plugins/qemu/nbd-extents.js';
import type { ExtentSource } from './disk-copy.js';

interface Range {
  offset: number;
  length: number;
}

/** A dirty extent further than this past the allocation walk's position restarts the walk there. */
const WALK_RESTART_GAP = 256 * 1024 * 1024;

/**
 * base:allocation of the ranges a copy asks for in ascending order, from one walk kept open
 * between them: an incremental's ~300 dirty runs asked it once each, ~300 block-status round
 * trips to a server busy with the reads, each holding the next run's reads back. The walk is
 * restarted (one request) at a range more than WALK_RESTART_GAP past it, or behind it.
 */
export class AllocationCursor {
  private walk: AsyncGenerator<{ offset: number; length: number; flags: number }> | undefined;
  private cur: { offset: number; length: number; flags: number } | undefined;

  constructor(private readonly src: ExtentSource) {}

  private async restart(at: number): Promise<void> {
    await this.close();
    this.walk = extents(this.src, BASE_ALLOCATION, at, this.src.size - at);
    this.cur = (await this.walk.next()).value ?? undefined;
  }

  private async advance(): Promise<void> {
    this.cur = (await this.walk!.next()).value ?? undefined;
  }

  /** The allocation extents over [r), clipped to it, in order. */
  async *over(r: Range): AsyncGenerator<{ offset: number; length: number; flags: number }> {
    const end = r.offset + r.length;
    const c = this.cur;
    if (!c || c.offset > r.offset || r.offset - (c.offset + c.length) > WALK_RESTART_GAP) await this.restart(r.offset);
    while (this.cur && this.cur.offset + this.cur.length <= r.offset) await this.advance();
    let at = r.offset;
    while (at < end) {
      const e = this.cur;
      if (!e || e.offset > at) throw vmError('IO', `NBD block status for ${BASE_ALLOCATION} left [${at}, ${end}) uncovered`);
      const to = Math.min(e.offset + e.length, end);
      yield { offset: at, length: to - at, flags: e.flags };
      at = to;
      // An extent reaching past this range may serve the next one too.
      if (e.offset + e.length <= end) await this.advance();
    }
  }

  async close(): Promise<void> {
    const w = this.walk;
    this.walk = undefined;
    this.cur = undefined;
    await w?.return(undefined);
  }
}
