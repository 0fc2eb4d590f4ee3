// Recovery on open after an unclean shutdown. Only containers written since the last
// checkpoint can be incomplete: those open at the checkpoint and any created after it. Each
// is read record by record; the intact, verified prefix is kept, a torn tail is cut off, the
// container is sealed, and index entries missing for its records are added. Containers are
// repaired in place; nothing that was ever indexed is removed.

import { decodeContainerRecord, encodeContainerRecord } from '../meta-records.js';
import fsp from 'node:fs/promises';
import { decodePayload } from '../codec/codec.js';
import { encodeTable, encodeTrailer, HEADER_BYTES, RECORD_HEADER_BYTES, type RecordMeta, SegmentKind } from './format.js';
import { type ContainerFiles, payloadOf, scanContainer } from './files.js';
import { closeFile, fsyncDir, fsyncFile, openFile, truncateFile, writeAt } from './file-io.js';
import type { DbOp } from '../../kv/db.js';
import type { Checkpoint } from '../checkpoint.js';
import type { StoreCounters } from '../counters.js';
import { type ContainerRecord, containerKey } from './registry.js';
import type { Db } from '../../kv/db.js';
import type { SegmentIndex } from '../index/segment-index.js';
import { toLocation } from '../index/locality-cache.js';
import path from 'node:path';

export interface RepairReport {
  containersScanned: number;
  containersRepaired: number;
  recordsRecovered: number;
  bytesCut: number;
  removedEmpty: number;
  problems: string[];
}

export async function recoverContainers(
  db: Db,
  index: SegmentIndex,
  files: ContainerFiles,
  ckpt: Checkpoint,
  counters: StoreCounters,
): Promise<{ report: RepairReport; maxId: number; ops: DbOp[] }> {
  const report: RepairReport = { containersScanned: 0, containersRepaired: 0, recordsRecovered: 0, bytesCut: 0, removedEmpty: 0, problems: [] };
  const ids = new Set<number>(ckpt.openCids);
  for (const id of await files.listIdsFrom(ckpt.nextCid)) ids.add(id);
  let maxId = ckpt.nextCid - 1;
  const ops: DbOp[] = [];
  const dirs = new Set<string>();
  for (const id of [...ids].sort((a, b) => a - b)) {
    maxId = Math.max(maxId, id);
    const file = files.pathOf(id);
    let scan;
    try {
      scan = await scanContainer(file, id);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).cause && ((err as { cause: NodeJS.ErrnoException }).cause.code === 'ENOENT')) continue;
      report.problems.push((err as Error).message);
      continue;
    }
    report.containersScanned++;
    if (scan.error) {
      if (scan.size <= HEADER_BYTES) {
        // Created but the header never reached the disk: nothing in it was ever referenced.
        await fsp.rm(file, { force: true });
        dirs.add(path.dirname(file));
        report.removedEmpty++;
      } else {
        report.problems.push(`container ${file}: ${scan.error}`);
      }
      continue;
    }
    // Unsealed: the intact, verified prefix is kept. Sealed: its trailer is on disk, but the
    // seal may not have been fsynced before the crash, so a page of a record can be missing;
    // the records the index lacks (a suffix: each sync covered everything before it) are
    // verified too, and cut off from the first bad one, so no later write dedups against
    // lost bytes. Damage to indexed records of a sealed container is for verify to report.
    const have = await index.getMany(scan.records.map((r) => r.fp));
    const here = have.map((l, i) => l?.cid === id && l.offset === scan.records[i].offset);
    const skip = new Set<number>();
    let keep = scan.records.length;
    for (let i = 0; i < scan.records.length; i++) {
      if (scan.sealed && here[i]) continue;
      const r = scan.records[i];
      try {
        decodePayload(payloadOf(scan.data, r), r.codec, r.rawLen, r.fp, { cid: id, offset: r.offset });
      } catch (err) {
        if (scan.sealed && here.slice(i).some(Boolean)) {
          report.problems.push((err as Error).message);
          skip.add(i);
          continue;
        }
        keep = i;
        break;
      }
    }
    const good: RecordMeta[] = scan.records.slice(0, keep);
    if (!scan.sealed || keep < scan.records.length) {
      if (good.length === 0) {
        await fsp.rm(file, { force: true });
        dirs.add(path.dirname(file));
        report.removedEmpty++;
        continue;
      }
      const last = good[good.length - 1];
      const end = last.offset + RECORD_HEADER_BYTES + last.storedLen;
      report.bytesCut += scan.size - end;
      const f = await openFile(file, 'r+');
      try {
        await truncateFile(f, end);
        const table = encodeTable(good);
        await writeAt(f, Buffer.concat([table, encodeTrailer(good.length, end, table)]), end);
        await fsyncFile(f);
      } finally {
        await closeFile(f);
      }
      report.containersRepaired++;
    }
    // Add what the index lacks; register the container if it never was.
    good.forEach((r, i) => {
      if (!have[i] && !skip.has(i)) {
        ops.push(index.putOp(r.fp, toLocation(id, r)));
        counters.segments++;
        if (r.kind === SegmentKind.Node) counters.nodeSegments++;
        counters.rawBytes += r.rawLen;
        counters.payloadBytes += r.storedLen;
        report.recordsRecovered++;
      }
    });
    const size = (await fsp.stat(file)).size;
    const reg = await db.get(containerKey(id));
    if (!reg) {
      counters.containers++;
      counters.containerBytes += size;
      ops.push({ type: 'put', key: containerKey(id), value: encodeContainerRecord({ size, records: good.length }) });
    } else {
      const old = decodeContainerRecord(reg, id);
      if (old.size !== size) {
        counters.containerBytes += size - old.size;
        ops.push({ type: 'put', key: containerKey(id), value: encodeContainerRecord({ size, records: good.length }) });
      }
    }
  }
  for (const d of dirs) await fsyncDir(d).catch(() => {});
  return { report, maxId, ops };
}
