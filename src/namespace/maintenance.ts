// Garbage collection and verification seen from the namespace: it knows the live roots (every
// file of every share and snapshot, and open files) and the names to report problems under.

import { vmError } from '../errors.js';
import type { GcReport, Problem, Progress, VerifyReport } from '../store/store.js';
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

export interface VerifyRun {
  target: string;
  containers: number;
  segmentsChecked: number;
  bytesRead: number;
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
  const run: VerifyRun = { target: label, containers: 0, segmentsChecked: 0, bytesRead: 0, problems: [] };
  const add = (r: VerifyReport): void => {
    run.containers += r.containers;
    run.segmentsChecked += r.segmentsChecked;
    run.bytesRead += r.bytesRead;
    run.problems.push(...r.problems);
  };
  if (target.share === undefined) {
    await store.commit();
    add(await store.verify({ full, signal, onProgress: (p) => onProgress?.({ ...p, phase: 'containers' }) }));
  }
  // Sizes first, for a progress total in bytes.
  const files: LabeledFile[] = [];
  for await (const v of volumesToVerify(ns.ctx, target)) for await (const f of filesOf(ns.ctx, v.vol, v.label)) files.push(f);
  const totalBytes = files.reduce((s, f) => s + f.version.size, 0);
  add(
    await store.verifyTrees(files, {
      full,
      signal,
      totalBytes,
      onProgress: (p) => onProgress?.({ ...p, phase: 'files' }),
    }),
  );
  return run;
}
