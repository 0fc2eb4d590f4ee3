// Walking an NBD export's block status (NBD.md): the base:allocation bits and the dirty-bitmap
// context's one bit, and a walk that yields every extent of a range in order, clipped to it. The
// server is untrusted: an answer that skips bytes, makes no progress or is empty is an error,
// never a gap silently taken as data or as zeros. The appliance's disk copy and the agent's NBD
// source both read through this walk.

import { vmError } from '../../errors.js';

/** NBD_STATE_* bits of base:allocation. */
export const STATE_HOLE = 1;
export const STATE_ZERO = 2;
/** The dirty-bitmap context's one bit. */
export const STATE_DIRTY = 1;
export const BASE_ALLOCATION = 'base:allocation';

/** One block-status request covers at most this much (NBD lengths are 32-bit). */
const STATUS_WINDOW = 1 << 30;

/** What the walk needs of an NBD client (nbd-client.ts's NbdClient has it). */
export interface BlockStatusSource {
  blockStatus(offset: number, length: number, context: string): Promise<Array<{ offset: number; length: number; flags: number }>>;
}

/** Walks `context` over [offset, offset+length) and yields each extent, clipped, in order. */
export async function* extents(src: BlockStatusSource, context: string, offset: number, length: number): AsyncGenerator<{ offset: number; length: number; flags: number }> {
  const end = offset + length;
  let at = offset;
  while (at < end) {
    const got = await src.blockStatus(at, Math.min(end - at, STATUS_WINDOW), context);
    if (got.length === 0) throw vmError('IO', `NBD block status for ${context} at ${at} returned no extent`);
    const before = at;
    for (const e of got) {
      const from = Math.max(e.offset, at);
      const to = Math.min(e.offset + e.length, end);
      if (to <= from) continue;
      if (from !== at) throw vmError('IO', `NBD block status for ${context} skipped from ${at} to ${from}`);
      yield { offset: from, length: to - from, flags: e.flags };
      at = to;
    }
    if (at === before) throw vmError('IO', `NBD block status for ${context} at ${at} made no progress`);
  }
}
