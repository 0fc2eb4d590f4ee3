// A TEST DOUBLE of the namespace and store, for HTTP-layer tests only (control/ routes, auth,
// jobs, and the CLI over a real socket). It keeps shares, snapshots and file sizes in maps and
// fakes job bodies with timers; it stores no data and proves nothing about the real namespace.
// End-to-end tests against the real appliance come later.
// VMs are NOT doubled: the VM methods are the appliance's own (src/appliance-vms.ts) over a real
// VM registry in a temporary directory (openVms), without a backup service, so backups and
// restores answer NOT_SUPPORTED here; test/vm-backup-api.test.ts drives them with the real one.

import { setTimeout as sleep } from 'node:timers/promises';
import { vmError } from '../../src/errors.js';
import { parseSharePath, showSharePath, validateName } from '../../src/namespace/names.js';
import { ApplianceVms } from '../../src/appliance-vms.js';
import { VmRegistry } from '../../src/backup/vm-registry.js';
import { MemoryExports } from './memory-exports.js';
import { MemoryRecovery } from './memory-recovery.js';
import type {
  BackupRecordView,
  BackupRequest,
  NewVmRequest,
  RestoreRequest,
  RestoreResult,
  VmView,
  ControlServices,
  DeleteShareOptions,
  FastcopyResult,
  GcResult,
  HealthReport,
  IndexRebuildResult,
  JobContext,
  ShareSummary,
  SnapshotSummary,
  StatsReport,
  VerifyProblem,
  VerifyResult,
  VerifyTarget,
} from '../../src/control/services.js';

interface MemSnapshot {
  created: string;
  files: Map<string, number>;
}

interface MemShare {
  created: string;
  files: Map<string, number>;
  snapshots: Map<string, MemSnapshot>;
  origin?: { share: string; snapshot?: string };
}

export interface JobPlan {
  steps: number;
  stepMs: number;
  /** Progress units per step. */
  perStep: number;
}

export class MemoryServices implements ControlServices {
  readonly version = '0.0.0-test';
  readonly shares = new Map<string, MemShare>();
  /** Exports: a double too (helpers/memory-exports.ts); the real servers: export-servers.test.ts. */
  readonly exports = new MemoryExports((name) => this.shares.has(name));
  /** Instant recovery: none can exist without QEMU and a mount (helpers/memory-recovery.ts). */
  readonly recovery = new MemoryRecovery(() => false);
  healthReport: HealthReport = { status: 'ok' };
  plan: JobPlan = { steps: 5, stepMs: 10, perStep: 1 << 20 };
  /** While set, job bodies wait for it after their steps (until it resolves or they are cancelled). */
  gate: Promise<void> | undefined;
  /** Thrown by the next job body instead of finishing. */
  failNextJob: Error | undefined;
  /** Returned by verify as problems found. */
  verifyProblems: VerifyProblem[] = [];
  readonly calls: string[] = [];
  private clock = Date.parse('2026-11-22T00:00:00Z');
  /** Real VM services; without openVms() an appliance without VM backup. */
  vms = new ApplianceVms(undefined);

  /** Registers VMs in a real registry kept in `dir`. */
  async openVms(dir: string): Promise<void> {
    this.vms = new ApplianceVms({ registry: await VmRegistry.open(dir) });
  }

  listVms(): Promise<VmView[]> {
    return this.vms.listVms();
  }

  getVm(name: string): Promise<VmView> {
    return this.vms.getVm(name);
  }

  addVm(req: NewVmRequest): Promise<VmView> {
    return this.vms.addVm(req);
  }

  removeVm(name: string): Promise<void> {
    return this.vms.removeVm(name);
  }

  listBackups(name: string): Promise<BackupRecordView[]> {
    return this.vms.listBackups(name);
  }

  checkBackup(name: string, req: BackupRequest): Promise<void> {
    return this.vms.checkBackup(name, req);
  }

  backupVm(ctx: JobContext, name: string, req: BackupRequest): Promise<BackupRecordView> {
    return this.vms.backupVm(ctx, name, req);
  }

  checkRestore(name: string, req: RestoreRequest): Promise<void> {
    return this.vms.checkRestore(name, req);
  }

  restoreVm(ctx: JobContext, name: string, req: RestoreRequest): Promise<RestoreResult> {
    return this.vms.restoreVm(ctx, name, req);
  }

  async health(): Promise<HealthReport> {
    return this.healthReport;
  }

  async stats(): Promise<StatsReport> {
    let logical = 0;
    let snapshots = 0;
    for (const share of this.shares.values()) {
      logical += sum(share.files);
      for (const snap of share.snapshots.values()) logical += sum(snap.files);
      snapshots += share.snapshots.size;
    }
    // Fixed ratios, so tests can check the formatting: dedup 4x, compression 2x.
    const unique = logical / 4;
    const stored = unique / 2;
    return {
      logicalBytes: logical,
      ingestedBytes: logical,
      uniqueBytes: unique,
      storedBytes: stored,
      dedupRatio: unique > 0 ? logical / unique : 1,
      compressionRatio: stored > 0 ? unique / stored : 1,
      totalRatio: stored > 0 ? logical / stored : 1,
      segments: Math.ceil(unique / 8192),
      containers: Math.ceil(stored / (4 << 20)),
      reclaimableBytes: null,
      deadBytesKept: null,
      lastGcAt: null,
      shares: this.shares.size,
      snapshots,
    };
  }

  async listShares(): Promise<ShareSummary[]> {
    return [...this.shares.keys()].sort().map((name) => this.summary(name));
  }

  async getShare(name: string): Promise<ShareSummary> {
    validateName('share', name);
    this.share(name);
    return this.summary(name);
  }

  async createShare(name: string): Promise<ShareSummary> {
    validateName('share', name);
    if (this.shares.has(name)) throw vmError('ALREADY_EXISTS', `share ${name} already exists`);
    this.shares.set(name, { created: this.now(), files: new Map(), snapshots: new Map() });
    return this.summary(name);
  }

  async deleteShare(name: string, opts: DeleteShareOptions): Promise<void> {
    validateName('share', name);
    const share = this.share(name);
    if (!opts.deleteSnapshots && share.snapshots.size > 0) {
      throw vmError('NOT_EMPTY', `share ${name} has snapshots (${[...share.snapshots.keys()].join(', ')}); pass --delete-snapshots`);
    }
    if (!opts.force && share.files.size > 0) {
      throw vmError('NOT_EMPTY', `share ${name} has ${share.files.size} ${share.files.size === 1 ? 'file' : 'files'}; pass --force`);
    }
    this.shares.delete(name);
  }

  async listSnapshots(share: string): Promise<SnapshotSummary[]> {
    validateName('share', share);
    return [...this.share(share).snapshots.keys()].sort().map((name) => this.snapSummary(share, name));
  }

  async getSnapshot(share: string, name: string): Promise<SnapshotSummary> {
    validateName('share', share);
    validateName('snapshot', name);
    this.snapshot(share, name);
    return this.snapSummary(share, name);
  }

  async createSnapshot(share: string, name: string): Promise<SnapshotSummary> {
    validateName('share', share);
    validateName('snapshot', name);
    const s = this.share(share);
    if (s.snapshots.has(name)) throw vmError('ALREADY_EXISTS', `snapshot ${share}/${name} already exists`);
    s.snapshots.set(name, { created: this.now(), files: new Map(s.files) });
    return this.snapSummary(share, name);
  }

  async deleteSnapshot(share: string, name: string): Promise<void> {
    validateName('share', share);
    validateName('snapshot', name);
    this.snapshot(share, name);
    this.share(share).snapshots.delete(name);
  }

  async cloneSnapshot(share: string, snapshot: string, newShare: string): Promise<ShareSummary> {
    validateName('share', newShare);
    const snap = this.snapshot(share, snapshot);
    if (this.shares.has(newShare)) throw vmError('ALREADY_EXISTS', `share ${newShare} already exists`);
    this.shares.set(newShare, { created: this.now(), files: new Map(snap.files), snapshots: new Map(), origin: { share, snapshot } });
    return this.summary(newShare);
  }

  async fastcopy(from: string, to: string): Promise<FastcopyResult> {
    const src = parseSharePath(from, 'source', { inSnapshot: true });
    const dst = parseSharePath(to, 'target', { inSnapshot: false });
    const files = src.snapshot === undefined ? this.share(src.share).files : this.snapshot(src.share, src.snapshot).files;
    const target = this.share(dst.share).files;
    const path = src.parts.join('/');
    const dir = path === '' ? '' : `${path}/`;
    const picked = files.has(path) ? [[path, files.get(path)!] as const] : [...files].filter(([f]) => f.startsWith(dir));
    if (picked.length === 0) throw vmError('NOT_FOUND', `${showSharePath(src)} does not exist`);
    const toPath = dst.parts.join('/');
    if ([...target.keys()].some((f) => f === toPath || f.startsWith(`${toPath}/`))) throw vmError('ALREADY_EXISTS', `${showSharePath(dst)} already exists`);
    let bytes = 0;
    for (const [f, size] of picked) {
      target.set(f === path ? toPath : `${toPath}/${f.slice(dir.length)}`, size);
      bytes += size;
    }
    const isFile = files.has(path);
    return { from: showSharePath(src), to: showSharePath(dst), type: isFile ? 'file' : 'directory', files: picked.length, directories: isFile ? 0 : 1, logicalBytes: bytes };
  }

  async gc(ctx: JobContext): Promise<GcResult> {
    this.calls.push('gc');
    const total = await this.work(ctx, 'bytes');
    return { reclaimedBytes: total / 2, copiedBytes: 0, deadBytes: total / 2, deadBytesKept: 0, containersRemoved: 3, containersRewritten: 1, liveSegments: 100, deadSegments: 40 };
  }

  async verify(ctx: JobContext, target?: VerifyTarget): Promise<VerifyResult> {
    this.calls.push(`verify ${JSON.stringify(target ?? {})}`);
    const total = await this.work(ctx, 'bytes');
    const what = target?.snapshot !== undefined ? `snapshot ${target.share}/${target.snapshot}` : target?.share !== undefined ? `share ${target.share}` : 'store';
    return { target: what, containers: 2, segmentsChecked: 50, referencedSegments: 50, bytesRead: total, full: target?.full ?? false, problems: this.verifyProblems };
  }

  async rebuildIndex(ctx: JobContext): Promise<IndexRebuildResult> {
    this.calls.push('index-rebuild');
    await this.work(ctx, 'items');
    return { containers: 2, records: 50, entriesAdded: 0, entriesChanged: 0, entriesRemoved: 0, unreadableContainers: [] };
  }

  /** Test setup: a file of `size` bytes at `path` in `share`. */
  addFile(share: string, path: string, size: number): void {
    this.share(share).files.set(path, size);
  }

  private async work(ctx: JobContext, unit: 'bytes' | 'items'): Promise<number> {
    const { steps, stepMs, perStep } = this.plan;
    const total = steps * perStep;
    ctx.log(`starting: ${steps} steps`);
    ctx.progress(0, total, unit);
    for (let i = 1; i <= steps; i++) {
      await sleep(stepMs, undefined, { signal: ctx.signal });
      ctx.progress(i * perStep, total, unit);
    }
    if (this.gate !== undefined) await abortable(this.gate, ctx.signal);
    const failure = this.failNextJob;
    this.failNextJob = undefined;
    if (failure !== undefined) throw failure;
    return total;
  }

  private share(name: string): MemShare {
    const share = this.shares.get(name);
    if (share === undefined) throw vmError('NOT_FOUND', `no share ${name}`);
    return share;
  }

  private snapshot(share: string, name: string): MemSnapshot {
    const snap = this.share(share).snapshots.get(name);
    if (snap === undefined) throw vmError('NOT_FOUND', `no snapshot ${name} in share ${share}`);
    return snap;
  }

  private summary(name: string): ShareSummary {
    const s = this.share(name);
    const out: ShareSummary = { name, created: s.created, files: s.files.size, logicalBytes: sum(s.files), snapshots: s.snapshots.size };
    if (s.origin !== undefined) out.origin = s.origin;
    return out;
  }

  private snapSummary(share: string, name: string): SnapshotSummary {
    const snap = this.snapshot(share, name);
    return { share, name, created: snap.created, files: snap.files.size, logicalBytes: sum(snap.files) };
  }

  private now(): string {
    this.clock += 60_000;
    return new Date(this.clock).toISOString();
  }
}

function sum(files: Map<string, number>): number {
  let n = 0;
  for (const size of files.values()) n += size;
  return n;
}

function abortable(p: Promise<void>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      },
      reject,
    );
  });
}
