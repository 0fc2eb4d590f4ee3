// Garbage collection: mark every segment reachable from the live roots, then sweep sealed
// containers: delete those with nothing live, copy the live records of mostly-dead ones
// forward and delete them, drop dead index entries.
//
// Safe while ingest and reads go on:
// - Containers created after GC started are never swept (their segments are live by rule).
// - Nor is any container a write still in progress may have appended to (write-holds.ts): its
//   segments are named by no root until the write's version is one.
// - While GC runs, every dedup hit also marks its segment live ("resurrection"), so a new
//   reference to a segment the mark found dead keeps it.
// - Before a container's live set is computed it is fenced: dedup lookups stop finding
//   records in it (new writes store a fresh copy), so no new reference to it can appear
//   between computing its live set and deleting it. Reads still find it; a read that lost
//   the race with the unlink retries its lookup and finds the copied record.
// - Crash-safe: a container is copied forward and the copies indexed (fsync first) before
//   one batch drops its dead index entries and its registry entry, and the file goes last.
//   A crash anywhere leaves only unreferenced bytes; the next run finishes the work.
//
// Memory for the mark is bounded: a Bloom filter of live fingerprints (~1.25 bytes per
// stored segment, 1% false positives, which only keep a little garbage) and an exact set of
// visited tree nodes (about 1 in 80 segments is a node).

import { decodeContainerRecord, encodeGcRecord, type GcRecord } from '../meta-records.js';
import fsp from 'node:fs/promises';
import { vmError } from '../../errors.js';
import { BloomFilter } from '../index/bloom.js';
import { RECORD_HEADER_BYTES, type RecordMeta, SegmentKind, TABLE_ENTRY_BYTES } from '../container/format.js';
import { isZeroFp } from '../codec/fingerprint.js';
import { FpMap } from '../index/fp-map.js';
import { readFull } from '../container/file-io.js';
import { type DbOp, writeBatch } from '../../kv/db.js';
import { decodeLocation, indexKey } from '../index/segment-index.js';
import type { SegmentReader } from '../segment-reader.js';
import { CONTAINER_PREFIX, type ContainerRecord, containerKey } from '../container/registry.js';
import { metaKey } from '../keys.js';
import type { StoreCore } from '../store-core.js';
import { childFp } from '../tree/node.js';
import type { Progress } from '../verify/verify.js';
import type { FileVersion } from '../tree/version.js';

export interface GcOptions {
  /** Every live file version. Called once, after GC has started tracking new references. */
  roots: () => AsyncIterable<FileVersion>;
  /** Rewrite containers whose live bytes are below this fraction (0..1). Default 0.5. */
  copyForwardBelow?: number;
  /** Only mark and measure; sweep nothing. */
  dryRun?: boolean;
  onProgress?: (p: Progress & { phase: 'mark' | 'sweep' }) => void;
  signal?: AbortSignal;
}

/**
 * What one GC run found and did. Byte figures count container file bytes (record headers,
 * payloads and table entries), the same bytes the store's storedBytes counts.
 */
export interface GcReport {
  /**
   * Net bytes freed on disk: container files removed, minus the bytes their live records took
   * again when copied forward. 0 for a dry run.
   */
  reclaimedBytes: number;
  /** Bytes written copying live records forward out of the containers rewritten. */
  copiedBytes: number;
  /**
   * Bytes a sweep run now would free (net, as reclaimedBytes counts them): for a dry run, what
   * the run would have freed; after a real run, 0 (it freed all of it).
   */
  reclaimableBytes: number;
  /** Bytes of dead records found (in every container swept, freed or not). */
  deadBytes: number;
  /**
   * Bytes of dead records left on disk after the run, in containers kept because most of them
   * is live (below the copy-forward threshold it is not worth rewriting them); they are freed
   * once enough of their container dies. For a dry run: every dead byte.
   */
  deadBytesKept: number;
  containersRemoved: number;
  containersRewritten: number;
  /**
   * Containers left out of this run because a write still in progress may have appended to
   * them (write-holds.ts); a later run sweeps them.
   */
  containersHeld: number;
  liveSegments: number;
  deadSegments: number;
  rootsMarked: number;
  nodesVisited: number;
  /** Resident bytes the mark used (filter and visited-node set), and per stored segment. */
  markBytes: number;
  markBytesPerSegment: number;
  durationMs: number;
}

/** Container bytes a live record takes again when copied forward: its record and table entry. */
function copyCost(r: RecordMeta): number {
  return RECORD_HEADER_BYTES + r.storedLen + TABLE_ENTRY_BYTES;
}

interface Candidate {
  cid: number;
  size: number;
}

export async function collectGarbage(core: StoreCore, reader: SegmentReader, opts: GcOptions): Promise<GcReport> {
  const t0 = Date.now();
  const threshold = opts.copyForwardBelow ?? 0.5;
  if (!(threshold >= 0 && threshold <= 1)) throw vmError('INVALID_ARGUMENT', `copy-forward threshold ${threshold} is not between 0 and 1`);
  // Everything sealed and registered before this point may be swept; later containers not,
  // and none from the first one a write still running may have appended to.
  await core.sealOpen();
  const horizon = core.writeHolds.horizon();
  await core.checkpoint([], { sync: true });
  const candidates: Candidate[] = [];
  let held = 0;
  for await (const [k, v] of core.db.iterator({ gte: Buffer.from([CONTAINER_PREFIX]), lt: Buffer.from([CONTAINER_PREFIX + 1]) })) {
    const cid = k.readUInt32BE(1);
    if (cid >= horizon) held++;
    else candidates.push({ cid, size: decodeContainerRecord(v, cid).size });
  }
  const live = BloomFilter.forCapacity(Math.max(1 << 16, core.counters.segments + (core.counters.segments >> 2)));
  core.gcLive = live;
  const visited = new FpMap<true>();
  const report: GcReport = {
    reclaimedBytes: 0,
    reclaimableBytes: 0,
    copiedBytes: 0,
    deadBytes: 0,
    deadBytesKept: 0,
    containersRemoved: 0,
    containersRewritten: 0,
    containersHeld: held,
    liveSegments: 0,
    deadSegments: 0,
    rootsMarked: 0,
    nodesVisited: 0,
    markBytes: 0,
    markBytesPerSegment: 0,
    durationMs: 0,
  };
  try {
    // ---- mark ---------------------------------------------------------------------------
    const walk = async (fp: Buffer, height: number): Promise<void> => {
      if (height === 0) {
        if (!isZeroFp(fp)) live.add(fp);
        return;
      }
      if (visited.get(fp)) return;
      visited.set(Buffer.from(fp), true);
      live.add(fp);
      report.nodesVisited++;
      const node = await reader.node(fp);
      for (let i = 0; i < node.count; i++) {
        const c = childFp(node, i);
        if (node.level === 1) {
          if (!isZeroFp(c)) live.add(c);
        } else {
          await walk(c, node.level - 1);
        }
      }
      if ((report.nodesVisited & 1023) === 0) opts.signal?.throwIfAborted();
    };
    for await (const v of opts.roots()) {
      opts.signal?.throwIfAborted();
      await walk(v.root, v.height);
      report.rootsMarked++;
      opts.onProgress?.({ phase: 'mark', done: report.rootsMarked, total: 0, unit: 'items' });
    }
    // FpMap holds ~110 bytes per visited node in V8; the filter its bit array.
    report.markBytes = live.bytes + visited.size * 110;
    report.markBytesPerSegment = core.counters.segments > 0 ? report.markBytes / core.counters.segments : 0;

    // ---- sweep --------------------------------------------------------------------------
    let done = 0;
    for (const c of candidates) {
      opts.signal?.throwIfAborted();
      await sweepOne(core, c, live, threshold, opts.dryRun ?? false, report);
      opts.onProgress?.({ phase: 'sweep', done: ++done, total: candidates.length, unit: 'items' });
    }
    if (!opts.dryRun) await removeUnregistered(core, candidates, report);
  } finally {
    core.gcLive = undefined;
    core.fenced.clear();
  }
  report.durationMs = Date.now() - t0;
  await writeBatch(core.db, [{ type: 'put', key: metaKey('gc'), value: encodeGcRecord(gcRecord(report, opts.dryRun ?? false)) }], false);
  return report;
}

export type { GcRecord };

function gcRecord(r: GcReport, dryRun: boolean): GcRecord {
  return { at: Date.now(), dryRun, reclaimedBytes: r.reclaimedBytes, reclaimableBytes: r.reclaimableBytes, deadBytesKept: r.deadBytesKept };
}

async function sweepOne(core: StoreCore, c: Candidate, live: BloomFilter, threshold: number, dryRun: boolean, report: GcReport): Promise<void> {
  const { cid } = c;
  core.fenced.add(cid);
  try {
    let table: RecordMeta[];
    try {
      table = await core.files.readTable(cid);
    } catch {
      return; // unreadable: verify reports it; GC never deletes what it cannot read
    }
    const liveRecs: RecordMeta[] = [];
    let deadBytes = 0;
    let liveBytes = 0;
    for (const r of table) {
      const bytes = RECORD_HEADER_BYTES + r.storedLen;
      // A record a repair replaced is dead whatever the mark says: copying it forward would
      // put the damaged bytes back under the segment's name (index/superseded.ts).
      if (live.mayContain(r.fp) && !core.superseded.has(r.fp, cid)) {
        liveRecs.push(r);
        liveBytes += bytes;
      } else {
        deadBytes += bytes;
      }
    }
    report.liveSegments += liveRecs.length;
    report.deadSegments += table.length - liveRecs.length;
    report.deadBytes += deadBytes;
    if (deadBytes === 0) return;
    const rewrite = liveRecs.length === 0 || liveBytes < threshold * (liveBytes + deadBytes);
    const copied = liveRecs.reduce((s, r) => s + copyCost(r), 0);
    if (dryRun || !rewrite) {
      report.deadBytesKept += deadBytes;
      if (rewrite) report.reclaimableBytes += c.size - copied;
      return;
    }
    // Copy the live records forward: the payload as stored, no re-compression.
    if (liveRecs.length > 0) {
      const fd = await core.files.acquire(cid);
      try {
        for (const r of liveRecs) {
          const payload = Buffer.allocUnsafe(r.storedLen);
          await readFull(fd, payload, r.offset + RECORD_HEADER_BYTES, core.files.pathOf(cid));
          core.append(r.kind, Buffer.from(r.fp), r.rawLen, r.codec, payload, true);
        }
      } finally {
        core.files.release(cid);
      }
      // The copies become durable and indexed (the index entries now point at them).
      await core.checkpoint([], { sync: true });
    }
    // Drop index entries that still point into this container, the registry entry and the
    // file. Entries that point elsewhere (a newer copy) stay.
    const ops: DbOp[] = [];
    const current = await core.db.getMany(table.map((r) => indexKey(r.fp)));
    const counters = core.counters;
    table.forEach((r, i) => {
      const v = current[i];
      if (!v) return;
      const loc = decodeLocation(v);
      if (loc.cid !== cid || loc.offset !== r.offset) return;
      ops.push({ type: 'del', key: indexKey(r.fp) });
      counters.segments--;
      if (r.kind === SegmentKind.Node) counters.nodeSegments--;
      counters.rawBytes -= r.rawLen;
      counters.payloadBytes -= r.storedLen;
    });
    ops.push({ type: 'del', key: containerKey(cid) });
    counters.containers--;
    counters.containerBytes -= c.size;
    // Through the checkpoint, which writes the counters under its lock with everything else.
    await core.checkpoint(ops, { sync: true });
    core.cache.drop(cid);
    core.files.forget(cid);
    await fsp.rm(core.files.pathOf(cid), { force: true });
    report.reclaimedBytes += c.size - copied;
    report.copiedBytes += copied;
    if (liveRecs.length === 0) report.containersRemoved++;
    else report.containersRewritten++;
  } finally {
    core.fenced.delete(cid);
  }
}

/**
 * Container files a crash left behind after their registry entry was dropped: removed once
 * no index entry points into them. Only ids below the GC's start, and never one being written.
 */
async function removeUnregistered(core: StoreCore, candidates: Candidate[], report: GcReport): Promise<void> {
  const registered = new Set(candidates.map((c) => c.cid));
  const maxId = candidates.reduce((m, c) => Math.max(m, c.cid), 0);
  for (const id of await core.files.listIds()) {
    if (id > maxId || registered.has(id) || core.writers.has(id)) continue;
    if ((await core.db.get(containerKey(id))) !== undefined) continue;
    let table: RecordMeta[];
    try {
      table = await core.files.readTable(id);
    } catch {
      continue;
    }
    const vals = await core.db.getMany(table.map((r) => indexKey(r.fp)));
    const referenced = vals.some((v) => v && decodeLocation(v).cid === id);
    if (referenced) continue;
    const st = await fsp.stat(core.files.pathOf(id)).catch(() => undefined);
    core.files.forget(id);
    await fsp.rm(core.files.pathOf(id), { force: true });
    report.reclaimedBytes += st?.size ?? 0;
    report.containersRemoved++;
  }
}

