// The control plane's services, implemented over the namespace and the store. Part of the
// composition root with appliance.ts: the only place where control/ meets namespace/.

import { ApplianceVms } from './appliance-vms.js';
import type {
  BackupRecordView,
  BackupRequest,
  ControlServices,
  NewVmRequest,
  RestoreRequest,
  RestoreResult,
  VmView,
  DeleteShareOptions,
  ExportControl,
  RecoveryControl,
  FastcopyResult,
  GcResult,
  HealthReport,
  IndexRebuildResult,
  JobContext,
  ShareSummary,
  SnapshotSummary,
  StatsReport,
  VerifyResult,
  VerifyTarget,
} from './control/services.js';
import { vmError } from './errors.js';
import { runGc, runVerify } from './namespace/maintenance.js';
import type { Namespace } from './namespace/namespace.js';

import type { TransferReceiver } from './transfer/receiver.js';
export const VERSION = '0.1.0';

export class ApplianceServices implements ControlServices {
  readonly version = VERSION;
  closing = false;
  /** The transfer protocol's receiver (set by the appliance; tests may leave it out). */
  transfer?: TransferReceiver;
  /** Exports over NFS and SMB (src/export/), set by the composition root. */
  exports?: ExportControl & { shareGone(share: string): Promise<void> };
  /** Instant recovery (backup/recovery/), set by the composition root. */
  recovery?: RecoveryControl & { usingShare(share: string): string | undefined };

  /**
   * Repairs verify's damaged segments from other copies (policy/best-copy.ts, set by the
   * composition root where copies exist): the count repaired.
   */
  repairDamage?: (problems: VerifyResult['problems'], log: (line: string) => void) => Promise<{ repaired: number; failed: Array<{ fingerprint: string; why: string }> }>;

  constructor(
    private readonly ns: Namespace,
    private readonly probe?: { report(): Promise<HealthReport> },
    private readonly vms: ApplianceVms = new ApplianceVms(undefined),
  ) {}

  async health(): Promise<HealthReport> {
    if (this.closing) return { status: 'closing' };
    return this.probe ? this.probe.report() : { status: 'ok' };
  }

  async stats(): Promise<StatsReport> {
    const s = await this.ns.stats();
    const st = s.store;
    const logical = s.logicalBytes + s.snapshotBytes;
    const ratio = (a: number, b: number) => (b > 0 ? a / b : 0);
    // Definitions: control/schemas.ts (statsReport).
    return {
      logicalBytes: logical,
      ingestedBytes: st.ingestedBytes,
      uniqueBytes: st.uniqueBytes,
      storedBytes: st.storedBytes,
      dedupRatio: ratio(logical, st.uniqueBytes),
      compressionRatio: ratio(st.uniqueBytes, st.storedBytes),
      totalRatio: ratio(logical, st.storedBytes),
      segments: st.segments,
      containers: st.containers,
      reclaimableBytes: s.lastGc ? s.lastGc.reclaimableBytes : null,
      deadBytesKept: s.lastGc ? (s.lastGc.deadBytesKept ?? null) : null,
      lastGcAt: s.lastGc ? new Date(s.lastGc.at).toISOString() : null,
      shares: s.shares,
      snapshots: s.snapshots,
    };
  }

  listShares(): Promise<ShareSummary[]> {
    return this.ns.shares.list();
  }

  getShare(name: string): Promise<ShareSummary> {
    return this.ns.shares.get(name);
  }

  createShare(name: string): Promise<ShareSummary> {
    return this.ns.shares.create(name);
  }

  async deleteShare(name: string, opts: DeleteShareOptions): Promise<void> {
    // A recovered VM running from this share (its clone) would lose its disks under it.
    const user = this.recovery?.usingShare(name);
    if (user !== undefined) throw vmError('CONFLICT', `share ${name} holds the disks of the recovered VM ${user}, which runs from it; stop it first (vmvault recover stop ${user} --drop-clone) or migrate it`, { share: name });
    await this.ns.shares.remove(name, opts);
    // Its exports go with it at once (a share renamed in the mount is found by the export
    // service's periodic check).
    await this.exports?.shareGone(name);
  }

  listSnapshots(share: string): Promise<SnapshotSummary[]> {
    return this.ns.snapshots.list(share);
  }

  getSnapshot(share: string, name: string): Promise<SnapshotSummary> {
    return this.ns.snapshots.get(share, name);
  }

  createSnapshot(share: string, name: string): Promise<SnapshotSummary> {
    return this.ns.snapshots.create(share, name);
  }

  deleteSnapshot(share: string, name: string): Promise<void> {
    return this.ns.snapshots.remove(share, name);
  }

  cloneSnapshot(share: string, snapshot: string, newShare: string): Promise<ShareSummary> {
    return this.ns.snapshots.clone(share, snapshot, newShare);
  }

  fastcopy(from: string, to: string): Promise<FastcopyResult> {
    return this.ns.fastcopy.copy(from, to);
  }

  async gc(ctx: JobContext): Promise<GcResult> {
    const r = await runGc(this.ns, {
      signal: ctx.signal,
      // Mark counts the file versions it has walked (no total: it finds them as it goes);
      // sweep counts containers.
      onProgress: (p) =>
        p.phase === 'mark' ? ctx.progress(p.done, 0, 'files', 'marking live data') : ctx.progress(p.done, p.total, 'containers', 'sweeping containers'),
    });
    ctx.log(`marked ${r.rootsMarked} file versions (${r.nodesVisited} tree nodes, ${(r.markBytesPerSegment).toFixed(2)} bytes per stored segment)`);
    return {
      reclaimedBytes: r.reclaimedBytes,
      copiedBytes: r.copiedBytes,
      deadBytes: r.deadBytes,
      deadBytesKept: r.deadBytesKept,
      containersRemoved: r.containersRemoved,
      containersRewritten: r.containersRewritten,
      containersHeld: r.containersHeld,
      liveSegments: r.liveSegments,
      deadSegments: r.deadSegments,
    };
  }

  async verify(ctx: JobContext, target?: VerifyTarget): Promise<VerifyResult> {
    const { repair, ...what } = target ?? {};
    const check = () =>
      runVerify(
        this.ns,
        what,
        (p) => (p.phase === 'containers' ? ctx.progress(p.done, p.total, 'containers', 'checking containers') : ctx.progress(p.done, p.total, 'bytes', 'checking files')),
        ctx.signal,
      );
    let r = await check();
    // --repair: damaged segments are mended from the copies of the points that reach them, and
    // the result is that of a second verify, so it lists only what is still wrong.
    if (repair === true && r.problems.some((p) => p.fingerprint !== undefined)) {
      if (!this.repairDamage) {
        ctx.log('repair: no clone or DR copies are known to this appliance; nothing repaired');
      } else {
        const sum = await this.repairDamage(r.problems, (l) => ctx.log(l));
        ctx.log(`repair: ${sum.repaired} segment(s) repaired from other copies, ${sum.failed.length} not (${sum.failed.map((f) => `${f.fingerprint.slice(0, 16)}…: ${f.why}`).join('; ') || 'none'})`);
        if (sum.repaired > 0) r = await check();
      }
    }
    return {
      target: r.target,
      containers: r.containers,
      segmentsChecked: r.segmentsChecked,
      referencedSegments: r.referencedSegments,
      bytesRead: r.bytesRead,
      full: r.full,
      problems: r.problems,
    };
  }

  async rebuildIndex(ctx: JobContext): Promise<IndexRebuildResult> {
    return this.ns.store.rebuildIndex((p) => ctx.progress(p.done, p.total, 'containers', 'reading containers'), ctx.signal);
  }

  // VM backup: see appliance-vms.ts.

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
}
