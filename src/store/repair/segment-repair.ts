// Repair of a damaged segment from healthy bytes found elsewhere (another copy, by fingerprint).
// Sealed containers never change, so the damaged record stays where it is; a fresh copy is
// appended to the open container and the index pointed at it, and the old record is listed as
// superseded (index/superseded.ts) so nothing that reads container tables rather than the index
// (the locality cache, an index rebuild, GC's sweep) takes it for the segment again.
//
// Crash safety, under the store's write ordering (FORMAT.md, "Repair"): the new record is
// appended and fsynced by the checkpoint before the one LevelDB batch that holds the new index
// entry, the superseded record and the counters. A crash before that batch leaves the old index
// entry (the damaged record: the repair can be run again) and unreferenced bytes; after it,
// the new one. The segment is never without a record.

import { isVmvaultError, vmError } from '../../errors.js';
import { encodePayload } from '../codec/codec.js';
import { fingerprint, fpHex, FP_BYTES } from '../codec/fingerprint.js';
import { MAX_SEGMENT_BYTES, SegmentKind } from '../container/format.js';
import { Mutex } from '../../kv/mutex.js';
import type { DbOp } from '../../kv/db.js';
import type { SegmentReader } from '../segment-reader.js';
import type { StoreCore } from '../store-core.js';
import { rescuable } from './read-rescue.js';

export interface RepairResult {
  /** False: the segment read back healthy already (repaired meanwhile, or never damaged). */
  repaired: boolean;
  /** Where the damaged record was (absent when the index had no entry). */
  from?: { container: number; offset: number };
  /** Where the fresh copy is. */
  to?: { container: number; offset: number };
}

const locks = new WeakMap<StoreCore, Mutex>();

/** One segment of a batch repair: its fingerprint, healthy bytes, and kind (used only when the index lost it). */
export interface RepairItem {
  fp: Buffer;
  plain: Buffer;
  kind?: 'data' | 'node';
}

/**
 * Replaces the stored copy of `fp` with `plain` after checking that `plain` hashes to it
 * (SEGMENT_MISMATCH otherwise, and nothing changes). Does nothing when the stored copy reads
 * back healthy. `kind` is used only when the index has no entry for the segment at all.
 */
export async function repairSegment(core: StoreCore, reader: SegmentReader, fp: Buffer, plain: Buffer, kind: 'data' | 'node' = 'data'): Promise<RepairResult> {
  const [r] = await repairSegments(core, reader, [{ fp, plain, kind }]);
  if (r instanceof Error) throw r;
  return r;
}

/**
 * repairSegment for many segments with one synced index batch: every fresh copy is appended,
 * then one checkpoint makes them durable and points the index at all of them (a restore that
 * met damage repairs in a few such batches, not a synced batch per segment). The answer per
 * item, in order: its RepairResult, or the error that item met (bytes that do not hash to it:
 * SEGMENT_MISMATCH, nothing changed for it). A failed checkpoint fails the whole batch: none of
 * its segments was repaired, each can be repaired again.
 */
export function repairSegments(core: StoreCore, reader: SegmentReader, items: readonly RepairItem[]): Promise<Array<RepairResult | Error>> {
  const checked = items.map((it): Error | undefined => {
    if (it.fp.length !== FP_BYTES) return vmError('INVALID_ARGUMENT', `a fingerprint is ${FP_BYTES} bytes, not ${it.fp.length}`);
    if (it.plain.length === 0 || it.plain.length > MAX_SEGMENT_BYTES) return vmError('INVALID_ARGUMENT', `segment length ${it.plain.length} outside 1..${MAX_SEGMENT_BYTES}`);
    if (!fingerprint(it.plain).equals(it.fp)) {
      return vmError('SEGMENT_MISMATCH', `the bytes offered to repair segment ${fpHex(it.fp)} do not hash to it; nothing was changed`, { fingerprint: fpHex(it.fp) });
    }
    return undefined;
  });
  let lock = locks.get(core);
  if (!lock) locks.set(core, (lock = new Mutex()));
  // One repair at a time: two of one segment would both append, and the second supersede the first.
  return lock.run(() => repairMany(core, reader, items, checked));
}

async function repairMany(core: StoreCore, reader: SegmentReader, items: readonly RepairItem[], checked: Array<Error | undefined>): Promise<Array<RepairResult | Error>> {
  const out: Array<RepairResult | Error> = checked.map((e) => e ?? { repaired: false });
  const todo = items.map((_, i) => i).filter((i) => checked[i] === undefined);
  if (todo.length === 0) return out;
  const locs = await core.lookupMany(todo.map((i) => items[i].fp));
  // Which stored copies are damaged: each read on its own (a batch read fails as a whole).
  const damaged = new Set<number>();
  const seen = new Set<string>();
  await Promise.all(
    todo.map(async (i, k) => {
      if (!locs[k]) return;
      try {
        await reader.segments([items[i].fp], false);
      } catch (err) {
        if (!rescuable(err)) out[i] = err as Error;
        else damaged.add(k);
      }
    }),
  );
  const ops: DbOp[] = [];
  const c = core.counters;
  const done: Array<{ i: number; loc: (typeof locs)[number]; at: { cid: number; offset: number } }> = [];
  for (let k = 0; k < todo.length; k++) {
    const i = todo[k];
    if (locs[k] && !damaged.has(k)) continue; // healthy where the index says (or an error above)
    const it = items[i];
    const hex = it.fp.toString('hex');
    if (seen.has(hex)) continue; // the same segment twice in one batch: once is enough
    seen.add(hex);
    const loc = locs[k];
    const kind = loc ? loc.kind : it.kind === 'node' ? SegmentKind.Node : SegmentKind.Data;
    const { codec, payload } = encodePayload(it.plain);
    // Privileged like GC's copies: a repair must work on a nearly full disk.
    const at = core.append(kind, it.fp, it.plain.length, codec, payload === it.plain ? Buffer.from(it.plain) : payload, true);
    // A running GC must learn the segment is live (its mark may have passed it).
    core.dedupHit(it.fp, 0, at.cid);
    if (loc) {
      // From now on the old record is nobody's home: the locality cache must not offer it again.
      core.superseded.add(it.fp, loc.cid);
      core.cache.drop(loc.cid);
      ops.push(core.superseded.putOp(it.fp, loc.cid, loc.offset));
      // The checkpoint counts the new record; the old one stops counting with its index entry.
      c.segments--;
      if (loc.kind === SegmentKind.Node) c.nodeSegments--;
      c.rawBytes -= loc.rawLen;
      c.payloadBytes -= loc.storedLen;
    }
    done.push({ i, loc, at });
  }
  if (done.length === 0) return out;
  try {
    await core.checkpoint(ops, { sync: true, deps: new Set(done.map((d) => d.at.cid)) });
  } catch (err) {
    for (const { i, loc } of done) {
      if (!loc) continue;
      // Nothing was written: the old record is the segment's home again (GC must keep it).
      core.superseded.remove(items[i].fp, loc.cid);
      c.segments++;
      if (loc.kind === SegmentKind.Node) c.nodeSegments++;
      c.rawBytes += loc.rawLen;
      c.payloadBytes += loc.storedLen;
    }
    throw isVmvaultError(err) ? err : vmError('IO', `repairing ${done.length} segment(s) (first ${fpHex(items[done[0].i].fp)}): ${(err as Error).message}`);
  }
  for (const { i, loc, at } of done) out[i] = { repaired: true, from: loc ? { container: loc.cid, offset: loc.offset } : undefined, to: { container: at.cid, offset: at.offset } };
  return out;
}
