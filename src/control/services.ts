// What the control plane needs from the rest of the appliance. The composition root
// (src/appliance.ts) implements ControlServices over the namespace and the store and hands it to
// buildServer(); tests hand in an in-memory double. The HTTP layer validates names and paths
// before calling in, but implementations must validate too (public methods validate): FUSE and
// plug-ins enter the namespace through other doors.
//
// Failures are VmvaultErrors; the HTTP layer maps their codes to statuses in http-status.ts.
// Every method may be called concurrently with any other, and with running jobs.

import type { BackupRecord } from '../backup/backup-records.js';
import type { RecoveryView } from '../backup/recovery/recovery-service.js';
import type { TransferReceiver } from '../transfer/receiver.js';
import type { ExportServerHealth, ExportView } from '../export/export-service.js';
import type { Protocol as ExportProtocol } from '../export/exports-file.js';

/** What a job's progress counts; shown with its numbers ("12 / 40 containers", "1.2 GiB / 3 GiB"). */
export const PROGRESS_UNITS = ['bytes', 'containers', 'files', 'items'] as const;
export type ProgressUnit = (typeof PROGRESS_UNITS)[number];

/** Handed to a job body. */
export interface JobContext {
  /** Aborted when someone cancels the job or the server closes; stop soon and throw. */
  readonly signal: AbortSignal;
  /**
   * Report how far along the job is; `total` 0 means not known yet. `phase` names the step in
   * words a person reads ("sweeping containers"); a new phase or unit starts its rate afresh.
   * Cheap: call it often.
   */
  progress(done: number, total: number, unit: ProgressUnit, phase?: string): void;
  /** A line for the job's log (kept with the job, bounded). */
  log(message: string): void;
}

export interface HealthReport {
  /**
   * 'ok': serving, mount and store fine; 'degraded': a problem named in `detail` (the mount is
   * gone or does not answer, the store is closed or cannot be written); 'closing': shutting down.
   */
  status: 'ok' | 'degraded' | 'closing';
  detail?: string;
  /** The FUSE mount, when the appliance serves one. */
  mount?: MountHealth;
  store?: StoreHealth;
  /** The export servers (nfs-ganesha, smbd), when the appliance supervises them. */
  exports?: ExportServerHealth[];
}

// Exports to hypervisors (issue 16): the appliance's src/export/ implements ExportControl.

// The export layer owns the shapes of an export and of a server's health; the control plane
// serves them as they are.
export type { Protocol as ExportProtocol } from '../export/exports-file.js';
export type { ExportServerHealth, ExportView } from '../export/export-service.js';

export interface ExportControl {
  list(): Promise<ExportView[]>;
  /** NOT_FOUND (no such share), ALREADY_EXISTS (exported already), INVALID_ARGUMENT (bad CIDR or name), NOT_SUPPORTED (no export servers here). */
  enable(protocol: ExportProtocol, share: string, clients?: string[]): Promise<ExportView>;
  disable(protocol: ExportProtocol, share: string): Promise<void>;
  /** Sets the SMB account's password; never logged or kept in clear. */
  setSmbPassword(user: string | undefined, password: string): Promise<{ user: string }>;
}

export interface MountHealth {
  /** Where it is mounted (no secret: every local user sees it in /proc/mounts). */
  path: string;
  /** Our FUSE mount is attached at the path. */
  mounted: boolean;
  /** A lookup through the mount got an answer in time. */
  answering: boolean;
  /** Times the mount vanished (someone unmounted it) and was mounted again. */
  remounts: number;
}

export interface StoreHealth {
  /** The store and its index database are open and readable. */
  open: boolean;
  /** A small file in the data directory can be written and fsynced, and the disk is not full. */
  writable: boolean;
}

/** Each figure's definition is its description in schemas.ts (statsReport), which the API publishes. */
export interface StatsReport {
  logicalBytes: number;
  ingestedBytes: number;
  uniqueBytes: number;
  storedBytes: number;
  dedupRatio: number;
  compressionRatio: number;
  totalRatio: number;
  segments: number;
  containers: number;
  reclaimableBytes: number | null;
  deadBytesKept: number | null;
  /** ISO 8601. */
  lastGcAt: string | null;
  shares: number;
  snapshots: number;
}

export interface DeleteShareOptions {
  /** Delete the share's files with it. */
  force: boolean;
  /** Delete its snapshots with it. */
  deleteSnapshots: boolean;
}

export interface ShareSummary {
  name: string;
  /** ISO 8601. */
  created: string;
  files: number;
  logicalBytes: number;
  snapshots: number;
  /** For a clone: where it came from. */
  origin?: { share: string; snapshot?: string };
}

export interface SnapshotSummary {
  share: string;
  name: string;
  /** ISO 8601. */
  created: string;
  files: number;
  logicalBytes: number;
  /** ISO 8601: the end of its retention lock, when it has one (policies, issue 14). */
  lockedUntil?: string;
}

export interface FastcopyResult {
  /** The source as `<share>/<path>` or `<share>/.snapshots/<snapshot>/<path>`. */
  from: string;
  /** The new file or directory, `<share>/<path>`. */
  to: string;
  type: 'file' | 'directory' | 'symlink';
  /** Regular files made (hard links inside a copied tree counted once). */
  files: number;
  /** Directories made, a copied directory itself included. */
  directories: number;
  /** Sum of the sizes of the files made: what the copy adds to logical bytes (and not to stored bytes). */
  logicalBytes: number;
}

/** Definitions: schemas.ts (gcResult). */
export interface GcResult {
  reclaimedBytes: number;
  copiedBytes: number;
  deadBytes: number;
  deadBytesKept: number;
  containersRemoved: number;
  containersRewritten: number;
  /** Absent in results recorded before it existed. */
  containersHeld?: number;
  liveSegments: number;
  deadSegments: number;
}

export interface VerifyProblem {
  kind: string;
  message: string;
  container?: number;
  offset?: number;
  fingerprint?: string;
  /** Which share, snapshot or file reaches the damaged segment, when known. */
  root?: string;
}

export interface VerifyTarget {
  share?: string;
  /** Requires `share`. */
  snapshot?: string;
  /** Re-read and re-hash every segment, not only container structure and index. */
  full?: boolean;
  /** Repair damaged segments found from other copies of the points that reach them (issue 14). */
  repair?: boolean;
}

/** Definitions: schemas.ts (verifyResult). */
export interface VerifyResult {
  /** What was verified, e.g. "store", "share vms", "snapshot vms/nightly". */
  target: string;
  containers: number;
  segmentsChecked: number;
  referencedSegments: number;
  bytesRead: number;
  full: boolean;
  problems: VerifyProblem[];
}

export interface IndexRebuildResult {
  containers: number;
  records: number;
  entriesAdded: number;
  entriesChanged: number;
  entriesRemoved: number;
  unreadableContainers: number[];
}

// VM backup (issue 11). The shapes the API and the CLI show; the composition root fills them from
// the VM registry (src/backup/vm-registry.ts) and the backup service (src/backup/backup-service.ts).

/** One disk of a VM, as QEMU reports it. */
export interface VmDiskView {
  /** The guest's device name, e.g. "vda": the backup file is <device>.raw. */
  device: string;
  /** Image format of the VM's own disk ("qcow2", "raw"). */
  format: string;
  sizeBytes: number;
  /** The VM's image file, when QEMU names one. */
  file?: string;
}

/** One restore point: the backup service's record, as the API returns it. */
export type BackupRecordView = BackupRecord;

/** What a state probe of a VM found: QEMU's run state, or 'unreachable' (with why). */
export interface VmState {
  /** QEMU's status ("running", "paused", ...) or "unreachable". */
  state: string;
  /** Why it is unreachable (the QMP error or the timeout), when it is. */
  stateDetail?: string;
  disks: VmDiskView[];
  lastBackup: BackupRecordView | null;
}

export interface VmView extends VmState {
  name: string;
  share: string;
  qmp: string;
  qga?: string;
  /** The PostgreSQL URL with any password shown as "***". */
  pg?: string;
  workflow?: string;
  /** The external agent that copies the disks (absent: the appliance itself). */
  agent?: string;
  /** The operator's executable the script plug-in runs for this VM. */
  script?: string;
  /** The host whose agent relays its QMP (issue 13). */
  host?: string;
  uuid?: string;
  createdAt: string;
}

export interface NewVmRequest {
  name: string;
  /** Required unless fromCluster. */
  qmp?: string;
  /** The host whose agent relays its QMP (issue 13). */
  host?: string;
  uuid?: string;
  /** Host, qmp and uuid from the cluster map (the VM of this name on one host). */
  fromCluster?: boolean;
  qga?: string;
  pg?: string;
  /** Default: the VM's name. */
  share?: string;
  workflow?: string;
  /** The external agent that copies the disks (vmvault agent --name). */
  agent?: string;
  /** Absolute path of the operator's executable for the script plug-in (src/plugins/script/PROTOCOL.md). */
  script?: string;
}

export interface BackupRequest {
  /** Default: the VM's workflow, else app-consistent. */
  workflow?: string;
  /** Copy every allocated byte, even when an incremental is possible. */
  full?: boolean;
}

export interface RestoreRequest {
  /** A restore point of the VM (default: the newest). */
  point?: string;
  /** Absolute directory on the appliance host the disks are written to (not with inPlace). */
  to?: string;
  /** Default raw. */
  format?: 'raw' | 'qcow2';
  /**
   * Over the disk files the VM uses (issue 13), not into `to`: an HA VM's cluster resource is
   * taken offline and back; a running VM is refused.
   */
  inPlace?: boolean;
}

export interface RestoreResult {
  point: string;
  /** The files written, absolute paths. */
  files: string[];
  /** An in-place restore of an HA VM: its cluster resource, and its role before and after. */
  ha?: { resource: string; before: string; after: string };
}

/**
 * A byte-counted progress report for a backup or restore body (shape of the backup service's
 * BackupProgress); control/job-progress.ts makes one over a JobContext.
 */
export interface ByteProgress {
  phase(name: string): void;
  total(n: number, unit: 'bytes'): void;
  advance(n: number): void;
  log(line: string): void;
  readonly signal: AbortSignal;
}

// Instant recovery (issue 14): a VM run from a clone of its point on the mount, then migrated.
export type { RecoveryView } from '../backup/recovery/recovery-service.js';

export interface RecoverRequest {
  /** Default: the newest restore point. */
  point?: string;
  /** The recovery's name, also its clone share's; default `<vm>-recovery`. */
  name?: string;
}

export interface MigrateRequest {
  /** Absolute directory on the appliance host (production storage). */
  to: string;
  /** Default qcow2. */
  format?: 'raw' | 'qcow2';
}

export interface RecoveryControl {
  list(): Promise<RecoveryView[]>;
  get(name: string): Promise<RecoveryView>;
  /** What a recover job would refuse at once (unknown VM or point, name in use); the name it will use. */
  checkRecover(vm: string, req: RecoverRequest): Promise<{ point: string; name: string }>;
  recover(ctx: JobContext, vm: string, req: RecoverRequest): Promise<RecoveryView>;
  /** Same for a migration (not running, migrated already, bad or unwritable target). */
  checkMigrate(name: string, req: MigrateRequest): Promise<void>;
  migrate(ctx: JobContext, name: string, req: MigrateRequest): Promise<RecoveryView>;
  /** Stops the VM (if it runs) and forgets the recovery; the clone stays unless dropClone. */
  stop(name: string, opts: { dropClone?: boolean }): Promise<{ name: string; clone: 'kept' | 'dropped' }>;
  /** Forgets a migrated recovery, its VM left running; the clone stays unless dropClone. */
  release(name: string, opts: { dropClone?: boolean }): Promise<{ name: string; clone: 'kept' | 'dropped'; pid: number | null }>;
}

export interface ControlServices {
  /** The appliance's version, shown by /health and in the OpenAPI document. */
  readonly version: string;
  /** The receiving side of the transfer protocol (agents send files here); absent: no transfer routes. */
  readonly transfer?: TransferReceiver;
  health(): Promise<HealthReport>;
  /** Exports over NFS and SMB; absent where the appliance supervises no export servers (routes answer NOT_SUPPORTED). */
  readonly exports?: ExportControl;
  /** Instant recovery; absent, its routes answer NOT_SUPPORTED. */
  readonly recovery?: RecoveryControl;
  stats(): Promise<StatsReport>;

  listShares(): Promise<ShareSummary[]>;
  getShare(name: string): Promise<ShareSummary>;
  createShare(name: string): Promise<ShareSummary>;
  /**
   * NOT_EMPTY while the share has files (unless `force`) or snapshots (unless
   * `deleteSnapshots`; force alone never deletes snapshots); the message names them.
   */
  deleteShare(name: string, opts: DeleteShareOptions): Promise<void>;

  listSnapshots(share: string): Promise<SnapshotSummary[]>;
  getSnapshot(share: string, name: string): Promise<SnapshotSummary>;
  createSnapshot(share: string, name: string): Promise<SnapshotSummary>;
  deleteSnapshot(share: string, name: string): Promise<void>;
  /** A new writable share holding the snapshot's files. */
  cloneSnapshot(share: string, snapshot: string, newShare: string): Promise<ShareSummary>;

  /**
   * Copy a file or a directory tree by reference (metadata only: segments are shared). `from`
   * is `<share>/<path>` or `<share>/.snapshots/<snapshot>[/<path>]`; `to` is `<share>/<path>`,
   * in the same share or another, and must not exist yet.
   */
  fastcopy(from: string, to: string): Promise<FastcopyResult>;

  // Job bodies: run by the job runner, which owns cancellation and progress bookkeeping.
  gc(ctx: JobContext): Promise<GcResult>;
  verify(ctx: JobContext, target?: VerifyTarget): Promise<VerifyResult>;
  rebuildIndex(ctx: JobContext): Promise<IndexRebuildResult>;

  // VM backup. State probes are bounded: a QMP socket that does not answer shows as
  // 'unreachable' with the reason, never as a failure of the call.
  listVms(): Promise<VmView[]>;
  getVm(name: string): Promise<VmView>;
  /** Checks the request whole before writing anything: bad names, address forms, unknown workflow, duplicates (CONFLICT). */
  addVm(req: NewVmRequest): Promise<VmView>;
  /** Forgets the VM; its share and restore points stay. */
  removeVm(name: string): Promise<void>;
  /** Restore points, oldest first. */
  listBackups(name: string): Promise<BackupRecordView[]>;
  /** What a backup job would refuse at once (unknown VM, unknown workflow), checked before it starts. */
  checkBackup(name: string, req: BackupRequest): Promise<void>;
  backupVm(ctx: JobContext, name: string, req: BackupRequest): Promise<BackupRecordView>;
  /** Same for a restore (unknown VM or point, bad target). */
  checkRestore(name: string, req: RestoreRequest): Promise<void>;
  restoreVm(ctx: JobContext, name: string, req: RestoreRequest): Promise<RestoreResult>;
}
