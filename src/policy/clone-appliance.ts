// A clone copy of one restore point to another vmvault appliance (issue 14). The point is the
// snapshot <share>/.snapshots/<point>/; each of its files (vda.raw..., vm.json) is sent with the
// transfer protocol fingerprint-first from its stored segment tree (transfer/version-sender.ts),
// read through the namespace, never the mount, so only segments the destination lacks cross:
// the destination answers "known" for what its clone target share and that share's snapshots
// (the points cloned before) hold. Then the destination snapshots the share under the point's
// name with the point's lock end, which it enforces too, and re-reads and re-hashes the
// snapshot's trees; its roots must equal ours (same tree, same bytes).
//
// Idempotent: a point already there with the same roots is skipped (only its lock is
// extended); a failed run is run again from the start, and what it sent is "known" to the
// destination (its share holds the files sent; a task id per file lets a broken session
// resume), so nothing crosses twice.
//
// A file of the clone target that a later point no longer has (a disk removed from the VM) is
// removed there before that point's snapshot: the snapshot request names the point's files.

import { createHash } from 'node:crypto';
import { vmError } from '../errors.js';
import type { Namespace } from '../namespace/namespace.js';
import { snapshotFiles } from '../namespace/snapshot-files.js';
import { TransferConnection } from '../transfer/client.js';
import { sendVersion } from '../transfer/version-sender.js';
import type { Destination } from './destinations.js';

export interface CloneReport {
  destination: string;
  share: string;
  point: string;
  files: number;
  logicalBytes: number;
  /** Everything on the wire, both ways. */
  bytesSent: number;
  segments: number;
  segmentsSent: number;
  segmentBytesSent: number;
  /** The point was on the destination already (same roots). */
  skipped: boolean;
  verifiedAt: string;
}

interface RemoteSnapshot {
  name: string;
  lockedUntil?: string;
  files: Array<{ path: string; size: number; root: string; height: number }>;
  verify?: { problems: Array<{ message: string }> };
}

/** Opens the connection to an appliance destination (checks it answers, and the pin). */
export async function connectAppliance(d: Extract<Destination, { kind: 'appliance' }>): Promise<TransferConnection> {
  try {
    return await TransferConnection.open({ url: d.url, token: d.token, ...(d.pin ? { pinSha256: d.pin } : {}) });
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code === 'UNAUTHORIZED') throw vmError('UNAUTHORIZED', `destination ${d.name} (${d.url}) refused: ${e.message ?? 'the token or the pin does not match'}`, { destination: d.name });
    throw err;
  }
}

export async function cloneToAppliance(
  ns: Namespace,
  d: Extract<Destination, { kind: 'appliance' }>,
  share: string,
  point: string,
  opts: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void; log?: (l: string) => void } = {},
): Promise<CloneReport> {
  const info = await ns.snapshots.get(share, point);
  const files = await snapshotFiles(ns, share, point);
  const logicalBytes = files.reduce((s, f) => s + f.version.size, 0);
  const conn = await connectAppliance(d);
  const wire0 = conn.wireBytes;
  const lock = info.lockedUntil !== undefined ? { lockedUntil: info.lockedUntil } : {};
  const base = `/api/v1/replicas/shares/${encodeURIComponent(share)}`;
  const report: CloneReport = { destination: d.name, share, point, files: files.length, logicalBytes, bytesSent: 0, segments: 0, segmentsSent: 0, segmentBytesSent: 0, skipped: false, verifiedAt: '' };
  try {
    // Roots are comparable only when both stores cut alike (else the destination re-cuts).
    const hello = await conn.json<{ chunker: { minSize: number; avgSize: number; maxSize: number } }>('GET', '/api/v1/transfer/hello', undefined, opts.signal);
    const c = ns.store.chunker;
    const byRoot = hello.chunker.minSize === c.minSize && hello.chunker.avgSize === c.avgSize && hello.chunker.maxSize === c.maxSize;
    await conn.json('POST', '/api/v1/replicas/shares', { share }, opts.signal);
    const there = await conn.json<{ snapshots: Array<{ name: string }> }>('GET', `${base}/snapshots`, undefined, opts.signal);
    if (there.snapshots.some((s) => s.name === point)) {
      const remote = await conn.json<RemoteSnapshot>('GET', `${base}/snapshots/${encodeURIComponent(point)}`, undefined, opts.signal);
      if (sameRoots(files, remote, byRoot) === undefined) {
        await conn.json('POST', `${base}/snapshots`, { name: point, ...lock }, opts.signal);
        report.skipped = true;
      } else {
        throw vmError('CONFLICT', `destination ${d.name} holds a point ${share}/${point} with other content: ${sameRoots(files, remote, byRoot)}`, { destination: d.name });
      }
    }
    if (!report.skipped) {
      let done = 0;
      for (const f of files) {
        const taskId = `clone-${createHash('sha256').update(`${share}\0${point}\0${f.path}`).digest('hex').slice(0, 40)}`;
        const r = await sendVersion(conn, ns.store, f.version, { share, path: f.path, taskId }, { signal: opts.signal });
        report.segments += r.segments;
        report.segmentsSent += r.segmentsSent;
        report.segmentBytesSent += r.segmentBytesSent;
        done += f.version.size;
        opts.onProgress?.(done, logicalBytes);
      }
      await conn.json('POST', `${base}/snapshots`, { name: point, ...lock, files: files.map((f) => f.path) }, opts.signal);
    }
    // Verify after writing: the destination checks every segment the point's trees name is in
    // its store (it re-hashed each one it received), and its roots must be ours: equal roots
    // name equal trees, so equal bytes (when the stores cut alike; else it re-hashes them all).
    // `destination verify` re-reads and re-hashes (full).
    const remote = await conn.json<RemoteSnapshot>('GET', `${base}/snapshots/${encodeURIComponent(point)}?verify=${byRoot ? 'quick' : 'full'}`, undefined, opts.signal);
    const problems = remote.verify?.problems ?? [];
    if (problems.length > 0) throw vmError('CORRUPT_SEGMENT', `destination ${d.name}: the clone of ${share}/${point} failed verification there: ${problems[0].message}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`, { destination: d.name });
    const diff = sameRoots(files, remote, byRoot);
    if (diff !== undefined) throw vmError('CORRUPT_SEGMENT', `destination ${d.name}: the clone of ${share}/${point} differs: ${diff}`, { destination: d.name });
    report.verifiedAt = new Date().toISOString();
  } finally {
    report.bytesSent = conn.wireBytes - wire0;
    await conn.close();
  }
  opts.log?.(`clone ${share}/${point} -> ${d.name}: ${report.skipped ? 'already there' : `${report.segmentsSent} of ${report.segments} segments sent`}, ${report.bytesSent} bytes on the wire, verified`);
  return report;
}

/** undefined when every file has the same size and root there; else what differs. */
function sameRoots(files: Awaited<ReturnType<typeof snapshotFiles>>, remote: RemoteSnapshot, byRoot: boolean): string | undefined {
  const theirs = new Map(remote.files.map((f) => [f.path, f]));
  const ours = new Set(files.map((f) => f.path));
  const extra = remote.files.find((f) => !ours.has(f.path));
  if (extra) return `file ${extra.path} is there but not in the point`;
  for (const f of files) {
    const t = theirs.get(f.path);
    if (!t) return `file ${f.path} is missing`;
    if (t.size !== f.version.size) return `file ${f.path} has ${t.size} bytes, not ${f.version.size}`;
    if (byRoot && t.root !== f.version.root.toString('hex') || t.height !== f.version.height) return `file ${f.path} has root ${t.root.slice(0, 16)}…, not ${f.version.root.toString('hex').slice(0, 16)}…`;
  }
  return undefined;
}
