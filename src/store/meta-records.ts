// The store's msgpack records in LevelDB (FORMAT.md, "LevelDB key space"): `mcounters`,
// `mcheckpoint`, the `c` container registry and `mgc`. Written field by field, so a counter
// object that carries anything more (a cache, a caller's extra field) never leaks into the
// format; read back as untrusted bytes (CORRUPT_RECORD naming the record).

import { pack } from 'msgpackr';
import { vmError } from '../errors.js';
import { bool, num, optUint, uint, uintArray, unpackRecord } from '../kv/record.js';
import type { Checkpoint } from './checkpoint.js';
import type { ContainerRecord } from './container/registry.js';
import type { StoreCounters } from './counters.js';

const COUNTER_FIELDS = ['ingestedBytes', 'zeroBytes', 'segments', 'nodeSegments', 'rawBytes', 'payloadBytes', 'containers', 'containerBytes'] as const;

export function encodeCounters(c: StoreCounters): Buffer {
  return pack({
    ingestedBytes: c.ingestedBytes,
    zeroBytes: c.zeroBytes,
    segments: c.segments,
    nodeSegments: c.nodeSegments,
    rawBytes: c.rawBytes,
    payloadBytes: c.payloadBytes,
    containers: c.containers,
    containerBytes: c.containerBytes,
  });
}

/** Counters missing from an older record read as 0 (fields were added over time). */
export function decodeCounters(b: Uint8Array): StoreCounters {
  const what = 'store counters (mcounters)';
  const w = unpackRecord(b, what);
  const out = {} as StoreCounters;
  for (const k of COUNTER_FIELDS) out[k] = w[k] === undefined ? 0 : uint(w, k, what);
  return out;
}

const MAX_CID = 0xffffffff;

export function encodeCheckpoint(c: Checkpoint): Buffer {
  return pack({ nextCid: c.nextCid, openCids: [...c.openCids] });
}

export function decodeCheckpoint(b: Uint8Array): Checkpoint {
  const what = 'store checkpoint (mcheckpoint)';
  const w = unpackRecord(b, what);
  const nextCid = uint(w, 'nextCid', what, MAX_CID + 1);
  if (nextCid < 1) throw vmError('CORRUPT_RECORD', `${what}: nextCid is 0`);
  return { nextCid, openCids: uintArray(w, 'openCids', what, MAX_CID) };
}

export function encodeContainerRecord(r: ContainerRecord): Buffer {
  return pack({ size: r.size, records: r.records });
}

export function decodeContainerRecord(b: Uint8Array, cid: number): ContainerRecord {
  const what = `registry entry of container ${cid}`;
  const w = unpackRecord(b, what);
  return { size: uint(w, 'size', what), records: uint(w, 'records', what) };
}

/** The last garbage collection's summary (`mgc`), shown by stats. */
export interface GcRecord {
  at: number;
  reclaimableBytes: number;
  reclaimedBytes: number;
  dryRun: boolean;
  /** Dead bytes left in kept containers as of the run's mark (absent in records written before it). */
  deadBytesKept?: number;
}

export function encodeGcRecord(g: GcRecord): Buffer {
  const out: Record<string, number | boolean> = { at: g.at, reclaimableBytes: g.reclaimableBytes, reclaimedBytes: g.reclaimedBytes, dryRun: g.dryRun };
  if (g.deadBytesKept !== undefined) out.deadBytesKept = g.deadBytesKept;
  return pack(out);
}

export function decodeGcRecord(b: Uint8Array): GcRecord {
  const what = 'last GC record (mgc)';
  const w = unpackRecord(b, what);
  const g: GcRecord = { at: num(w, 'at', what), reclaimableBytes: uint(w, 'reclaimableBytes', what), reclaimedBytes: uint(w, 'reclaimedBytes', what), dryRun: bool(w, 'dryRun', what) };
  const kept = optUint(w, 'deadBytesKept', what);
  if (kept !== undefined) g.deadBytesKept = kept;
  return g;
}
