// The container registry (FORMAT.md, `c` keys): one entry per sealed container, written once in
// the checkpoint batch after its seal is durable.

import type { DbOp } from '../../kv/db.js';
import { containerKey } from '../keys.js';
import { encodeContainerRecord } from '../meta-records.js';

export { CONTAINER_PREFIX, containerKey } from '../keys.js';

/** Registry entry of a sealed container: written once when it is first counted. */
export interface ContainerRecord {
  size: number;
  records: number;
}

export function registryOp(cid: number, rec: ContainerRecord): DbOp {
  return { type: 'put', key: containerKey(cid), value: encodeContainerRecord(rec) };
}
