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

/**
 * Replaces the stored copy of `fp` with `plain` after checking that `plain` hashes to it
 * (SEGMENT_MISMATCH otherwise, and nothing changes). Does nothing when the stored copy reads
 * back healthy. `kind` is used only when the index has no entry for the segment at all.
 */
export function repairSegment(core: StoreCore, reader: SegmentReader, fp: Buffer, plain: Buffer, kind: 'data' | 'node' = 'data'): Promise<RepairResult> {
  if (fp.length !== FP_BYTES) throw vmError('INVALID_ARGUMENT', `a fingerprint is ${FP_BYTES} bytes, not ${fp.length}`);
  if (plain.length === 0 || plain.length > MAX_SEGMENT_BYTES) throw vmError('INVALID_ARGUMENT', `segment length ${plain.length} outside 1..${MAX_SEGMENT_BYTES}`);
  if (!fingerprint(plain).equals(fp)) {
    throw vmError('SEGMENT_MISMATCH', `the bytes offered to repair segment ${fpHex(fp)} do not hash to it; nothing was changed`, { fingerprint: fpHex(fp) });
  }
  let lock = locks.get(core);
  if (!lock) locks.set(core, (lock = new Mutex()));
  // One repair at a time: two of one segment would both append, and the second supersede the first.
  return lock.run(() => repairOne(core, reader, Buffer.from(fp), plain, kind));
}

async function repairOne(core: StoreCore, reader: SegmentReader, fp: Buffer, plain: Buffer, kind: 'data' | 'node'): Promise<RepairResult> {
  const [loc] = await core.lookupMany([fp]);
  if (loc) {
    try {
      await reader.segments([fp], false);
      return { repaired: false }; // healthy where the index says
    } catch (err) {
      if (!rescuable(err)) throw err;
    }
  }
  const k = loc ? loc.kind : kind === 'node' ? SegmentKind.Node : SegmentKind.Data;
  const { codec, payload } = encodePayload(plain);
  // Privileged like GC's copies: a repair must work on a nearly full disk.
  const at = core.append(k, fp, plain.length, codec, payload === plain ? Buffer.from(plain) : payload, true);
  // A running GC must learn the segment is live (its mark may have passed it).
  core.dedupHit(fp, 0, at.cid);
  const ops: DbOp[] = [];
  const c = core.counters;
  if (loc) {
    // From now on the old record is nobody's home: the locality cache must not offer it again.
    core.superseded.add(fp, loc.cid);
    core.cache.drop(loc.cid);
    ops.push(core.superseded.putOp(fp, loc.cid, loc.offset));
    // The checkpoint counts the new record; the old one stops counting with its index entry.
    c.segments--;
    if (loc.kind === SegmentKind.Node) c.nodeSegments--;
    c.rawBytes -= loc.rawLen;
    c.payloadBytes -= loc.storedLen;
  }
  try {
    await core.checkpoint(ops, { sync: true, deps: [at.cid] });
  } catch (err) {
    if (loc) {
      // Nothing was written: the old record is the segment's home again (GC must keep it).
      core.superseded.remove(fp, loc.cid);
      c.segments++;
      if (loc.kind === SegmentKind.Node) c.nodeSegments++;
      c.rawBytes += loc.rawLen;
      c.payloadBytes += loc.storedLen;
    }
    throw isVmvaultError(err) ? err : vmError('IO', `repairing segment ${fpHex(fp)}: ${(err as Error).message}`);
  }
  return { repaired: true, from: loc ? { container: loc.cid, offset: loc.offset } : undefined, to: { container: at.cid, offset: at.offset } };
}
