// The checkpoint record (FORMAT.md, `mcheckpoint`): the next container id, and the containers
// that recovery must look at after a crash. Written in every checkpoint batch.

import type { Db, DbOp } from '../kv/db.js';
import { metaKey } from './keys.js';
import { decodeCheckpoint, encodeCheckpoint } from './meta-records.js';

export interface Checkpoint {
  nextCid: number;
  /** Containers that were open (unsealed) at the checkpoint: recovery scans them. */
  openCids: number[];
}

/** The last checkpoint, or that of an empty store. */
export async function readCheckpoint(db: Db): Promise<Checkpoint> {
  const raw = await db.get(metaKey('checkpoint'));
  return raw ? decodeCheckpoint(raw) : { nextCid: 1, openCids: [] };
}

export function checkpointOp(c: Checkpoint): DbOp {
  return { type: 'put', key: metaKey('checkpoint'), value: encodeCheckpoint(c) };
}
