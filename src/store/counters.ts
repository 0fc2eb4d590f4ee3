// The store's counters (FORMAT.md, `mcounters`): kept in LevelDB and updated in the same batch
// as the index and registry entries they count, so they survive a crash exactly as those do.

import type { Db, DbOp } from '../kv/db.js';
import type { RecordMeta } from './container/format.js';
import { SegmentKind } from './container/format.js';
import { metaKey } from './keys.js';
import { decodeCounters, encodeCounters } from './meta-records.js';

export interface StoreCounters {
  ingestedBytes: number;
  zeroBytes: number;
  segments: number;
  nodeSegments: number;
  rawBytes: number;
  payloadBytes: number;
  containers: number;
  containerBytes: number;
}

export function emptyCounters(): StoreCounters {
  return { ingestedBytes: 0, zeroBytes: 0, segments: 0, nodeSegments: 0, rawBytes: 0, payloadBytes: 0, containers: 0, containerBytes: 0 };
}

export async function readCounters(db: Db): Promise<StoreCounters> {
  const v = await db.get(metaKey('counters'));
  return v ? decodeCounters(v) : emptyCounters();
}

export function countersOp(c: StoreCounters): DbOp {
  return { type: 'put', key: metaKey('counters'), value: encodeCounters(c) };
}

/** Counts a record about to be indexed. */
export function countRecord(c: StoreCounters, meta: RecordMeta): void {
  c.segments++;
  if (meta.kind === SegmentKind.Node) c.nodeSegments++;
  c.rawBytes += meta.rawLen;
  c.payloadBytes += meta.storedLen;
}

/** Bytes counted at ingest, moved into the counters at the next checkpoint. */
export class IngestDelta {
  private bytes = 0;
  private zero = 0;

  note(bytes: number, zeroBytes: number): void {
    this.bytes += bytes;
    this.zero += zeroBytes;
  }

  moveInto(c: StoreCounters): void {
    c.ingestedBytes += this.bytes;
    c.zeroBytes += this.zero;
    this.bytes = 0;
    this.zero = 0;
  }
}
