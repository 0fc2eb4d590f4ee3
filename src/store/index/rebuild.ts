// Rebuilds the index from the containers alone (their metadata tables, or a record scan of a
// container whose table is damaged). The index is corrected in place, entry by entry, so a
// crash half-way leaves every entry either as it was or as rebuilt, both pointing at valid
// records; running it again finishes the work. Counters and the container registry are
// recomputed in the same way.

import { encodeContainerRecord } from '../meta-records.js';
import { isVmvaultError } from '../../errors.js';
import fsp from 'node:fs/promises';
import { type RecordMeta, SegmentKind } from '../container/format.js';
import { scanContainer } from '../container/files.js';
import { FpMap } from './fp-map.js';
import { toLocation } from './locality-cache.js';
import { type DbOp, writeBatch } from '../../kv/db.js';
import { encodeLocation, type Location } from './segment-index.js';
import { type ContainerRecord, containerKey, CONTAINER_PREFIX } from '../container/registry.js';
import type { StoreCore } from '../store-core.js';
import type { Progress } from '../verify/verify.js';

export interface RebuildReport {
  containers: number;
  records: number;
  entriesAdded: number;
  entriesChanged: number;
  entriesRemoved: number;
  unreadableContainers: number[];
}

const BATCH = 10000;

export async function rebuildIndex(core: StoreCore, onProgress?: (p: Progress) => void, signal?: AbortSignal): Promise<RebuildReport> {
  const report: RebuildReport = { containers: 0, records: 0, entriesAdded: 0, entriesChanged: 0, entriesRemoved: 0, unreadableContainers: [] };
  // Ingest goes on meanwhile. Containers open now, or made after this point, are not scanned,
  // and their entries are left as they are: by the time the index is walked below, such a
  // container may be sealed and no longer in core.writers, yet it is no stale entry's home.
  const firstNew = core.nextCid;
  const openAtStart = new Set(core.writers.keys());
  const ids = (await core.files.listIds()).filter((id) => id < firstNew && !openAtStart.has(id));
  const notScanned = (cid: number) => cid >= firstNew || openAtStart.has(cid) || core.writers.has(cid);
  const found = new FpMap<Location>();
  const counters = { ...core.counters, segments: 0, nodeSegments: 0, rawBytes: 0, payloadBytes: 0, containers: 0, containerBytes: 0 };
  let ops: DbOp[] = [];
  const flush = async (force = false): Promise<void> => {
    if (ops.length >= BATCH || (force && ops.length > 0)) {
      await writeBatch(core.db, ops, false);
      ops = [];
    }
  };
  // Registry entries are rewritten from what is on disk.
  for await (const k of core.db.keys({ gte: Buffer.from([CONTAINER_PREFIX]), lt: Buffer.from([CONTAINER_PREFIX + 1]) })) {
    if (k.length === 5 && notScanned(k.readUInt32BE(1))) continue;
    ops.push({ type: 'del', key: k });
    await flush();
  }
  let done = 0;
  for (const id of ids) {
    signal?.throwIfAborted();
    let table: RecordMeta[];
    try {
      table = await core.files.readTable(id);
    } catch (err) {
      // Never drop the entries of a container written by a newer vmvault.
      if (isVmvaultError(err, 'UNSUPPORTED_FORMAT')) throw err;
      const scan = await scanContainer(core.files.pathOf(id), id);
      if (scan.error) {
        report.unreadableContainers.push(id);
        continue;
      }
      table = scan.records;
    }
    report.containers++;
    const size = (await fsp.stat(core.files.pathOf(id))).size;
    counters.containers++;
    counters.containerBytes += size;
    ops.push({ type: 'put', key: containerKey(id), value: encodeContainerRecord({ size, records: table.length }) });
    for (const r of table) {
      report.records++;
      // A record a repair replaced is never the segment's home again (index/superseded.ts).
      if (core.superseded.has(r.fp, id)) continue;
      if (!found.get(r.fp)) found.set(Buffer.from(r.fp), toLocation(id, r));
    }
    await flush();
    onProgress?.({ done: ++done, total: ids.length, unit: 'items' });
  }
  // Correct existing entries; remember which fingerprints the index already had.
  const seen = new FpMap<true>();
  for await (const [fp, loc] of core.index.entries()) {
    signal?.throwIfAborted();
    if (notScanned(loc.cid)) {
      seen.set(Buffer.from(fp), true);
      continue;
    }
    const want = found.get(fp);
    if (!want) {
      ops.push(core.index.delOp(fp));
      report.entriesRemoved++;
    } else {
      seen.set(Buffer.from(fp), true);
      if (!encodeLocation(want).equals(encodeLocation(loc))) {
        ops.push(core.index.putOp(fp, want));
        report.entriesChanged++;
      }
    }
    await flush();
  }
  for (const [fp, loc] of found.entries()) {
    if (!seen.get(fp)) {
      ops.push(core.index.putOp(fp, loc));
      report.entriesAdded++;
      await flush();
    }
    counters.segments++;
    if (loc.kind === SegmentKind.Node) counters.nodeSegments++;
    counters.rawBytes += loc.rawLen;
    counters.payloadBytes += loc.storedLen;
  }
  await flush(true);
  Object.assign(core.counters, counters);
  core.cache.clear();
  await core.checkpoint([], { sync: true });
  return report;
}
