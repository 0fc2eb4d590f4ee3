// Verification. Two views of the same store:
// - containers: every container parses, and (full mode) every record decodes and matches its
//   fingerprint; every index entry points at a record that holds that fingerprint.
// - trees: every node and data segment reachable from the given roots is present (quick
//   mode: in the index) and (full mode) reads back and verifies.
// Problems are reported with what a person needs to act: container, offset, fingerprint,
// and for trees the root they belong to.

import { containerName, decodePayload } from '../codec/codec.js';
import { fpHex, isZeroFp } from '../codec/fingerprint.js';
import { payloadOf, scanContainer, type ScanResult } from '../container/files.js';
import { decodeTable, decodeTrailer, RECORD_HEADER_BYTES, TABLE_ENTRY_BYTES, TRAILER_BYTES } from '../container/format.js';
import { crc32 } from 'node:zlib';
import type { StoreCore } from '../store-core.js';
import type { SegmentReader } from '../segment-reader.js';
import { childFp } from '../tree/node.js';
import type { FileVersion } from '../tree/version.js';
import { FpMap } from '../index/fp-map.js';
import { isVmvaultError, vmError } from '../../errors.js';

export interface Problem {
  /** read-error: the disk failed the read (EIO): the bytes may be intact; retry, then replace the disk. */
  kind: 'corrupt-container' | 'corrupt-segment' | 'missing-segment' | 'index-mismatch' | 'read-error';
  message: string;
  container?: number;
  offset?: number;
  fingerprint?: string;
  /** For tree problems: which root (caller's label) reaches the damaged segment. */
  root?: string;
}

export interface Progress {
  done: number;
  total: number;
  unit: 'bytes' | 'items';
}

/**
 * What a check covered (definitions as the API publishes them: control/schemas.ts, verifyResult).
 * - containers: container files checked: every sealed one (containers check), or those holding
 *   the segments the roots reach (tree check).
 * - records: segment records found in the containers (containers check; 0 for trees).
 * - segmentsChecked: distinct segments checked: every record (containers), or every distinct
 *   segment the roots reach (trees).
 * - referencedSegments: distinct segments the roots reach (trees; 0 for containers).
 * - bytesRead: bytes read from container files: whole files (containers); the records of the
 *   segments read and re-hashed (trees, full mode); 0 for quick tree checks.
 */
export interface VerifyReport {
  containers: number;
  records: number;
  bytesRead: number;
  segmentsChecked: number;
  referencedSegments: number;
  problems: Problem[];
}

export interface VerifyOptions {
  full: boolean;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
}

/** A containers check's findings that a tree check of the same store may rely on. */
export interface VerifiedContainers {
  /** Containers whose every record was read and re-hashed, and whose index entries all match. */
  ids: Set<number>;
}

/** Checks containers and the index against each other. */
export async function verifyContainers(core: StoreCore, opts: VerifyOptions, verified?: VerifiedContainers): Promise<VerifyReport> {
  const report: VerifyReport = { containers: 0, records: 0, bytesRead: 0, segmentsChecked: 0, referencedSegments: 0, problems: [] };
  const ids = await core.files.listIds();
  // Every place a fingerprint's record sits (a GC crash can leave a second copy).
  const where = new FpMap<Array<{ cid: number; offset: number }>>();
  const clean = new Set<number>();
  /** Containers that could not be read: their index entries are not mismatches. */
  const unreadable = new Set<number>();
  let done = 0;
  for (const id of ids) {
    opts.signal?.throwIfAborted();
    if (core.writers.has(id)) continue; // being written; checked once sealed
    report.containers++;
    let scan: ScanResult;
    try {
      scan = await scanContainer(core.files.pathOf(id), id);
    } catch (err) {
      // A container that cannot be read is a problem to report, not the end of the verify.
      if (!isVmvaultError(err, 'IO') && !isVmvaultError(err, 'CORRUPT_CONTAINER')) throw err;
      unreadable.add(id);
      report.problems.push({ kind: isVmvaultError(err, 'IO') ? 'read-error' : 'corrupt-container', container: id, offset: 0, message: `container ${containerName(id)}: ${err.message}` });
      done++;
      continue;
    }
    report.bytesRead += scan.size;
    if (scan.error || !scan.sealed) {
      report.problems.push({
        kind: 'corrupt-container',
        container: id,
        offset: scan.error ? 0 : scan.end,
        message: `container ${containerName(id)}: ${scan.error ?? `unsealed or damaged after offset ${scan.end} (${scan.records.length} intact records)`}`,
      });
    } else {
      // The scan trusts the trailer; the table it points at must match the records too.
      const bad = tableProblem(scan);
      if (bad) report.problems.push({ kind: 'corrupt-container', container: id, offset: bad.offset, message: `container ${containerName(id)}: ${bad.message}` });
      else clean.add(id);
    }
    for (const r of scan.records) {
      report.records++;
      report.segmentsChecked++;
      const at = where.get(r.fp);
      if (at) at.push({ cid: id, offset: r.offset });
      else where.set(r.fp, [{ cid: id, offset: r.offset }]);
      // A record a repair replaced (index/superseded.ts) is known damaged and nobody's home:
      // the healthy copy is checked where the index points; GC removes this one.
      if (opts.full && !core.superseded.has(r.fp, id)) {
        try {
          decodePayload(payloadOf(scan.data, r), r.codec, r.rawLen, r.fp, { cid: id, offset: r.offset });
        } catch (err) {
          clean.delete(id);
          report.problems.push({ kind: 'corrupt-segment', container: id, offset: r.offset, fingerprint: fpHex(r.fp), message: (err as Error).message });
        }
      }
    }
    done++;
    opts.onProgress?.({ done, total: ids.length, unit: 'items' });
  }
  for await (const [fp, loc] of core.index.entries()) {
    opts.signal?.throwIfAborted();
    if (core.writers.has(loc.cid) || unreadable.has(loc.cid)) continue;
    const w = where.get(fp);
    if (!w?.some((x) => x.cid === loc.cid && x.offset === loc.offset)) {
      clean.delete(loc.cid);
      report.problems.push({
        kind: 'index-mismatch',
        container: loc.cid,
        offset: loc.offset,
        fingerprint: fpHex(fp),
        message: `index entry for ${fpHex(fp).slice(0, 16)} points at container ${containerName(loc.cid)} offset ${loc.offset}, which does not hold it; run an index rebuild`,
      });
    }
  }
  if (verified && opts.full) for (const id of clean) verified.ids.add(id);
  return report;
}

/** Checks a sealed container's metadata table against its checksum and its records. */
function tableProblem(scan: ScanResult): { offset: number; message: string } | undefined {
  const trailer = decodeTrailer(scan.data.subarray(scan.size - TRAILER_BYTES), scan.size)!;
  const table = scan.data.subarray(trailer.tableOffset, scan.size - TRAILER_BYTES);
  if (crc32(table) !== trailer.tableCrc) return { offset: trailer.tableOffset, message: `metadata table at offset ${trailer.tableOffset} fails its checksum; run an index rebuild` };
  if (trailer.count !== scan.records.length) return { offset: trailer.tableOffset, message: `metadata table lists ${trailer.count} records, the container holds ${scan.records.length}` };
  let entries;
  try {
    entries = decodeTable(table, `metadata table at offset ${trailer.tableOffset}`);
  } catch (err) {
    return { offset: trailer.tableOffset, message: (err as Error).message };
  }
  for (let i = 0; i < scan.records.length; i++) {
    const e = entries[i];
    const r = scan.records[i];
    if (e.offset !== r.offset || e.storedLen !== r.storedLen || e.rawLen !== r.rawLen || e.kind !== r.kind || e.codec !== r.codec || !e.fp.equals(r.fp)) {
      return { offset: trailer.tableOffset + i * TABLE_ENTRY_BYTES, message: `metadata table entry ${i} does not match the record at offset ${r.offset}` };
    }
  }
  return undefined;
}

/** Data segments read together in full mode: large reads keep both codec workers busy. */
const VERIFY_BATCH = 2048;

/**
 * Walks the trees of the given roots. Each segment is checked once however many roots share
 * it, in large batches. A damaged one is then reported for every root that reaches it (a
 * second walk over the tree nodes, only when something was found). `label` names a root in
 * problems (e.g. "share vms, file web01.vmdk").
 */
export async function verifyTrees(
  core: StoreCore,
  reader: SegmentReader,
  roots: Iterable<{ version: FileVersion; label: string }> | AsyncIterable<{ version: FileVersion; label: string }>,
  opts: VerifyOptions & { totalBytes?: number; verified?: VerifiedContainers },
): Promise<VerifyReport> {
  const report: VerifyReport = { containers: 0, records: 0, bytesRead: 0, segmentsChecked: 0, referencedSegments: 0, problems: [] };
  /** Containers holding the segments reached. */
  const holding = new Set<number>();
  const seenNodes = new FpMap<true>();
  const seenData = new FpMap<true>();
  /** Damaged or missing segments, with what is wrong. */
  const bad = new FpMap<Problem>();
  const asProblem = (fp: Uint8Array, err: unknown): Problem => {
    const e = err as Error;
    const kind = isVmvaultError(err, 'MISSING_SEGMENT') ? 'missing-segment' : isVmvaultError(err, 'IO') ? 'read-error' : 'corrupt-segment';
    const d = (isVmvaultError(err) ? err.details : undefined) ?? {};
    return { kind, fingerprint: fpHex(fp), container: d.container as number | undefined, offset: d.offset as number | undefined, message: e.message };
  };
  // Quick mode: a reference is good if the index knows it and its container file exists.
  const present = new Set(await core.files.listIds());
  let batch: Buffer[] = [];
  let nodeBatch: Buffer[] = [];
  // Reads of a couple of batches stay in flight while the walk goes on.
  const inflight: Array<Promise<void>> = [];
  const flush = async (): Promise<void> => {
    const todo = batch;
    const nodes = nodeBatch;
    batch = [];
    nodeBatch = [];
    if (nodes.length > 0) inflight.push(check(nodes, true));
    if (todo.length > 0) inflight.push(check(todo, false));
    while (inflight.length > 2) await inflight.shift();
  };
  // Every segment reached is located (which container holds it); in full mode data segments
  // are then read and re-hashed, except those in containers a containers check of this run
  // already re-hashed whole (`verified`), where finding the index entry is the check.
  const check = async (todo: Buffer[], nodes: boolean): Promise<void> => {
    report.segmentsChecked += todo.length;
    report.referencedSegments += todo.length;
    const locs = await core.lookupMany(todo);
    const read: Buffer[] = [];
    const readBytes = new FpMap<number>();
    locs.forEach((l, i) => {
      if (!l) {
        bad.set(todo[i], asProblem(todo[i], vmError('MISSING_SEGMENT', `segment ${fpHex(todo[i]).slice(0, 16)} is referenced but not in the store`)));
        return;
      }
      holding.add(l.cid);
      if (!opts.full || opts.verified?.ids.has(l.cid)) {
        if (!present!.has(l.cid) && !core.writers.has(l.cid)) {
          bad.set(
            todo[i],
            asProblem(todo[i], vmError('MISSING_SEGMENT', `segment ${fpHex(todo[i]).slice(0, 16)} is in container ${containerName(l.cid)}, which is missing`, { container: l.cid })),
          );
        }
        return;
      }
      // Nodes were read (and re-hashed) by the walk itself.
      report.bytesRead += RECORD_HEADER_BYTES + l.storedLen;
      if (!nodes) {
        read.push(todo[i]);
        readBytes.set(todo[i], RECORD_HEADER_BYTES + l.storedLen);
      }
    });
    if (read.length === 0) return;
    // Past the cache both ways: verify must read what is on disk, and must not evict what
    // readers use.
    try {
      await reader.segments(read, false);
    } catch {
      // One bad segment fails the batch; find which, one by one.
      for (const fp of read) {
        try {
          await reader.segments([fp], false);
        } catch (err) {
          report.bytesRead -= readBytes.get(fp) ?? 0;
          bad.set(fp, asProblem(fp, err));
        }
      }
    }
  };
  const data = async (fp: Buffer): Promise<void> => {
    if (isZeroFp(fp) || seenData.get(fp)) return;
    seenData.set(fp, true);
    batch.push(fp);
    if (batch.length >= VERIFY_BATCH) await flush();
  };
  const walk = async (fp: Buffer, height: number): Promise<void> => {
    opts.signal?.throwIfAborted();
    if (height === 0) return data(fp);
    if (seenNodes.get(fp)) return;
    seenNodes.set(Buffer.from(fp), true);
    let node;
    try {
      node = await reader.node(fp);
    } catch (err) {
      bad.set(Buffer.from(fp), asProblem(fp, err));
      return;
    }
    nodeBatch.push(Buffer.from(fp));
    for (let i = 0; i < node.count; i++) {
      const c = childFp(node, i);
      if (node.level === 1) await data(c);
      else await walk(c, node.level - 1);
    }
  };
  const all: Array<{ version: FileVersion; label: string }> = [];
  let done = 0;
  for await (const r of roots) {
    all.push(r);
    await walk(r.version.root, r.version.height);
    done += r.version.size;
    opts.onProgress?.({ done, total: opts.totalBytes ?? 0, unit: 'bytes' });
  }
  await flush();
  await Promise.all(inflight);
  report.containers = holding.size;
  if (bad.size === 0) return report;
  // Attribution: every root that reaches a damaged segment, walking only (cached) nodes.
  const under = new FpMap<Problem[]>();
  const problemsUnder = async (fp: Buffer, height: number): Promise<Problem[]> => {
    const b = bad.get(fp);
    if (b) return [b];
    if (height === 0) return [];
    const memo = under.get(fp);
    if (memo) return memo;
    const node = await reader.node(fp);
    const ps: Problem[] = [];
    for (let i = 0; i < node.count; i++) ps.push(...(await problemsUnder(childFp(node, i), node.level - 1)));
    under.set(Buffer.from(fp), ps);
    return ps;
  };
  for (const r of all) {
    for (const p of await problemsUnder(r.version.root, r.version.height)) {
      report.problems.push({ ...p, root: r.label, message: `${r.label}: ${p.message}` });
    }
  }
  return report;
}

