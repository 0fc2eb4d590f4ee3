// What the control plane needs from the rest of the appliance. The composition root
// (src/appliance.ts) implements ControlServices over the namespace and the store and hands it to
// buildServer(); tests hand in an in-memory double. The HTTP layer validates names and paths
// before calling in, but implementations must validate too (public methods validate): FUSE and
// plug-ins enter the namespace through other doors.
//
// Failures are VmvaultErrors; the HTTP layer maps their codes to statuses in http-status.ts.
// Every method may be called concurrently with any other, and with running jobs.

export type ProgressUnit = 'bytes' | 'items';

/** Handed to a job body. */
export interface JobContext {
  /** Aborted when someone cancels the job or the server closes; stop soon and throw. */
  readonly signal: AbortSignal;
  /** Report how far along the job is; `total` 0 means not known yet. Cheap: call it often. */
  progress(done: number, total: number, unit: ProgressUnit): void;
  /** A line for the job's log (kept with the job, bounded). */
  log(message: string): void;
}

export interface HealthReport {
  /** 'ok': serving; 'degraded': serving with a problem named in `detail`; 'closing': shutting down. */
  status: 'ok' | 'degraded' | 'closing';
  detail?: string;
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
}

export interface FastcopyResult {
  share: string;
  from: string;
  to: string;
  /** Size of the copied file. */
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

export interface ControlServices {
  /** The appliance's version, shown by /health and in the OpenAPI document. */
  readonly version: string;
  health(): Promise<HealthReport>;
  stats(): Promise<StatsReport>;

  listShares(): Promise<ShareSummary[]>;
  getShare(name: string): Promise<ShareSummary>;
  createShare(name: string): Promise<ShareSummary>;
  /** NOT_EMPTY unless the share has no files and no snapshots, or `force`. */
  deleteShare(name: string, opts: { force: boolean }): Promise<void>;

  listSnapshots(share: string): Promise<SnapshotSummary[]>;
  getSnapshot(share: string, name: string): Promise<SnapshotSummary>;
  createSnapshot(share: string, name: string): Promise<SnapshotSummary>;
  deleteSnapshot(share: string, name: string): Promise<void>;
  /** A new writable share holding the snapshot's files. */
  cloneSnapshot(share: string, snapshot: string, newShare: string): Promise<ShareSummary>;

  /** Copy one file's content by reference; `from` and `to` are paths inside the share. */
  fastcopy(share: string, from: string, to: string): Promise<FastcopyResult>;

  // Job bodies: run by the job runner, which owns cancellation and progress bookkeeping.
  gc(ctx: JobContext): Promise<GcResult>;
  verify(ctx: JobContext, target?: VerifyTarget): Promise<VerifyResult>;
  rebuildIndex(ctx: JobContext): Promise<IndexRebuildResult>;
}
