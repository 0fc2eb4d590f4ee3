// Garbage collection and verification seen from the namespace: it knows the live roots (every
// file of every share and snapshot, and open files) and the names to report problems under.

import { vmError } from '../errors.js';
import type { GcReport, Problem, Progress, VerifiedContainers, VerifyReport } from '../store/store.js';
import type { Namespace } from './namespace.js';
import { filesOf, type LabeledFile, volumesToVerify } from './walk.js';

export interface MaintenanceProgress extends Progress {
  phase: string;
}

export interface GcRunOptions {
  copyForwardBelow?: number;
  dryRun?: boolean;
  onProgress?: (p: MaintenanceProgress) => void;
  signal?: AbortSignal;
}

export async function runGc(ns: Namespace, opts: GcRunOptions = {}): Promise<GcReport> {
  const store = ns.store;
  return store.collectGarbage({
    roots: () => ns.gcRoots(),
    copyForwardBelow: opts.copyForwardBelow,
    dryRun: opts.dryRun,
    onProgress: opts.onProgress,
    signal: opts.signal,
  });
}

export interface VerifyTarget {
  share?: string;
  snapshot?: string;
  full?: boolean;
}

/** Definitions: control/schemas.ts (verifyResult). */
export interface VerifyRun {
  target: string;
  containers: number;
  segmentsChecked: number;
  referencedSegments: number;
  bytesRead: number;
  full: boolean;
  problems: Problem[];
}

/**
 * Verifies the whole store (containers, index, and every file's tree) or one share or
 * snapshot (its files' trees). Quick mode checks references; full mode reads and re-hashes.
 */
export async function runVerify(ns: Namespace, target: VerifyTarget, onProgress?: (p: MaintenanceProgress) => void, signal?: AbortSignal): Promise<VerifyRun> {
  const store = ns.store;
  const full = target.full ?? false;
  if (target.snapshot !== undefined && target.share === undefined) throw vmError('INVALID_ARGUMENT', 'a snapshot needs its share');
  const label = target.snapshot !== undefined ? `snapshot ${target.share}/${target.snapshot}` : target.share !== undefined ? `share ${target.share}` : 'store';
  if (target.share !== undefined) await ns.shares.volumeOf(target.share);
  if (target.snapshot !== undefined) await ns.snapshots.get(target.share!, target.snapshot);
  const run: VerifyRun = { target: label, containers: 0, segmentsChecked: 0, referencedSegments: 0, bytesRead: 0, full, problems: [] };
  // The whole store: the containers check counts containers and segments (every record), the
  // files' check adds the references; segments it re-hashed are not read a second time.
  const verified: VerifiedContainers = { ids: new Set() };
  let whole: VerifyReport | undefined;
  if (target.share === undefined) {
    await store.commit();
    whole = await store.verify({ full, signal, onProgress: (p) => onProgress?.({ ...p, phase: 'containers' }) }, verified);
  }
  // Sizes first, for a progress total in bytes.
  const files: LabeledFile[] = [];
  for await (const v of volumesToVerify(ns.ctx, target)) for await (const f of filesOf(ns.ctx, v.vol, v.label)) files.push(f);
  const totalBytes = files.reduce((s, f) => s + f.version.size, 0);
  const trees = await store.verifyTrees(files, {
    full,
    signal,
    totalBytes,
    verified,
    onProgress: (p) => onProgress?.({ ...p, phase: 'files' }),
  });
  run.containers = whole ? whole.containers : trees.containers;
  run.segmentsChecked = whole ? whole.segmentsChecked : trees.segmentsChecked;
  run.referencedSegments = trees.referencedSegments;
  run.bytesRead = (whole?.bytesRead ?? 0) + trees.bytesRead;
  run.problems.push(...(whole?.problems ?? []), ...trees.problems);
  return run;
}
