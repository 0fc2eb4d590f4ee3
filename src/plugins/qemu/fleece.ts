// Pull-mode backup of a running VM's disks by image fleecing, as libvirt's qemu_backup.c does it
// (the exact QMP sequences, run against QEMU 7.2 here, are in RESEARCH-vm-backup.md):
//
//   prepare      per disk: scratch qcow2 of the disk's exact virtual size (FleeceScratch: qemu-img
//                here, or the agent of the VM's host, issue 13: QEMU opens it there), then
//                blockdev-add of it with the disk's node as backing. Decides per disk whether
//                the backup can be incremental (the previous checkpoint bitmap exists, is
//                consistent and recording, and the image is qcow2) or must be full, and why.
//   pointInTime  ONE `transaction` for all disks: the new persistent checkpoint bitmap, for an
//                incremental disk the previous checkpoint merged into a disabled bitmap on the
//                scratch node (what the export shows as dirty) and then disabled on the disk, and
//                blockdev-backup sync=none into the scratch node. From here on the scratch node
//                reads as the disk did at this instant; guest writes copy old data into it first.
//   exportAll    nbd-server-start on a UNIX socket, block-export-add of every scratch node
//                (with its dirty bitmap when incremental).
//   commit       the backup is stored: drop the previous checkpoint (the new one now covers
//                everything after this point).
//   abort        the backup failed: re-enable the previous checkpoint, merge the new one into
//                it (writes since the point were recorded only there) and drop the new one, so
//                the next incremental from the previous checkpoint still covers the whole gap.
//   release      always: export del, nbd-server-stop, job cancel (waits BLOCK_JOB_CANCELLED),
//                blockdev-del, scratch files removed. Idempotent; tries every step and reports
//                what it could not undo.
//
// Each step records what it made, beside the undo that release() performs, so a failure at any
// point leaves nothing behind once release() ran.

import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { isVmvaultError, vmError, type VmvaultError } from '../../errors.js';
import { type FleeceScratch, LocalScratch, SCRATCH_FILE } from './fleece-scratch.js';
import type { QmpChannel } from './qmp-channel.js';
import { parseSocketAddress } from './socket-address.js';
import type { VmDisk } from './vm-info.js';

export interface FleeceExport {
  device: string;
  exportName: string;
  sizeBytes: number;
  /** 'qemu:dirty-bitmap:NAME' when this disk is backed up incrementally. */
  dirtyBitmapContext?: string;
  /** Why this disk is backed up in full although an incremental was asked for. */
  fullReason?: string;
}

export interface FleeceOptions {
  /**
   * Where the scratch qcow2 files go (they hold the old data of blocks the guest overwrites), on
   * QEMU's host: `scratch`, else a LocalScratch of `scratchDir`.
   */
  scratch?: FleeceScratch;
  scratchDir?: string;
  /** Name of the checkpoint bitmap this backup creates (persistent, on every qcow2 disk). */
  checkpoint: string;
  /** The checkpoint of the last successful backup; an incremental is asked when given. */
  previousCheckpoint?: string;
  log?: (line: string) => void;
  /** Deadline of each QMP command and event wait (default 30 s). */
  timeoutMs?: number;
}

interface BitmapInfo {
  name: string;
  recording: boolean;
  persistent: boolean;
  busy: boolean;
  granularity: number;
  count: number;
  inconsistent?: boolean;
}

interface NodeInfo {
  'node-name': string;
  drv: string;
  image: { 'virtual-size': number };
  'dirty-bitmaps'?: BitmapInfo[] | null;
}

/** What was made for one disk; release() undoes what is set. */
interface DiskState {
  disk: VmDisk;
  scratchFile: string;
  scratchNode: string;
  jobId: string;
  exportId: string;
  incremental: boolean;
  /** The new checkpoint is added on this disk (qcow2 only). */
  checkpointed: boolean;
  /** Bytes the previous checkpoint marks dirty (what an incremental reads), when incremental. */
  dirtyBytes?: number;
  /** Granularity of the previous checkpoint (the scratch bitmap uses the same). */
  granularity?: number;
  /** The previous checkpoint exists on this disk (commit removes it). */
  hasPrevious: boolean;
  fullReason?: string;
  fileMade: boolean;
  nodeAdded: boolean;
  jobRunning: boolean;
  exported: boolean;
  /** pointInTime() added the new checkpoint and (incremental) disabled the previous. */
  pointTaken: boolean;
}

/** Bitmap on the scratch node that the export offers as qemu:dirty-bitmap:NAME. */
const DIRTY_BITMAP = 'vmvault-dirty';

export class Fleece {
  private serverStarted = false;
  private state: 'prepared' | 'point' | 'exported' | 'committed' | 'aborted' = 'prepared';
  private released = false;

  private constructor(
    private readonly qmp: QmpChannel,
    private readonly disks: DiskState[],
    private readonly opts: FleeceOptions,
    private readonly timeoutMs: number,
    private readonly scratch: FleeceScratch,
  ) {}

  private log(line: string): void {
    this.opts.log?.(line);
  }

  /**
   * Makes the scratch images and nodes and decides full or incremental per disk. On any failure
   * it releases what it made and rethrows.
   */
  static async prepare(qmp: QmpChannel, disks: VmDisk[], opts: FleeceOptions): Promise<Fleece> {
    if (disks.length === 0) throw vmError('INVALID_ARGUMENT', 'fleece: no disks to back up');
    checkBitmapName(opts.checkpoint, 'checkpoint');
    if (opts.previousCheckpoint !== undefined) checkBitmapName(opts.previousCheckpoint, 'previous checkpoint');
    if (opts.previousCheckpoint === opts.checkpoint) {
      throw vmError('INVALID_ARGUMENT', `fleece: the new checkpoint ${opts.checkpoint} has the previous checkpoint's name`);
    }
    const devices = new Set<string>();
    for (const d of disks) {
      if (devices.has(d.device)) throw vmError('INVALID_ARGUMENT', `fleece: disk ${d.device} is listed twice`);
      devices.add(d.device);
    }
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const scratch = opts.scratch ?? (opts.scratchDir !== undefined ? new LocalScratch(opts.scratchDir) : undefined);
    if (!scratch) throw vmError('INVALID_ARGUMENT', 'fleece: no scratch (scratch or scratchDir)');
    // What a killed appliance left in this QEMU would wedge every later backup (the NBD server
    // still running, the scratch node still attached): remove it first.
    await Fleece.removeStale(qmp, { log: opts.log, timeoutMs, scratch });
    const tag = randomBytes(3).toString('hex');
    const nodes = await qmp.execute<NodeInfo[]>('query-named-block-nodes', { flat: true }, { timeoutMs });
    const byName = new Map(nodes.map((n) => [n['node-name'], n]));
    const states: DiskState[] = disks.map((disk, i) => ({
      disk,
      scratchFile: '',
      scratchNode: `vmv-s-${tag}-${i}`,
      jobId: `vmv-j-${tag}-${i}`,
      exportId: `vmv-e-${tag}-${i}`,
      incremental: false,
      checkpointed: false,
      hasPrevious: false,
      fileMade: false,
      nodeAdded: false,
      jobRunning: false,
      exported: false,
      pointTaken: false,
    }));
    const f = new Fleece(qmp, states, opts, timeoutMs, scratch);
    try {
      for (const s of states) f.decide(s, byName.get(s.disk.node));
      for (const s of states) {
        // Step: scratch image of the exact virtual size (another size is refused by blockdev-backup),
        // on QEMU's host. Undo: remove (release; a half-made one goes with the scratch's clear()).
        s.scratchFile = await scratch.create(s.disk.device, s.disk.sizeBytes);
        s.fileMade = true;
        opts.log?.(`fleece: ${s.disk.device}: scratch image ${s.scratchFile} (${scratch.where})`);
        // Step: the scratch node, backed by the disk, so unchanged blocks read through to it.
        // Undo: blockdev-del (release).
        await qmp.execute(
          'blockdev-add',
          {
            driver: 'qcow2',
            'node-name': s.scratchNode,
            file: { driver: 'file', filename: s.scratchFile },
            backing: s.disk.node,
            // The scratch is discarded after the backup: no point flushing it.
            cache: { 'no-flush': true },
          },
          { timeoutMs },
        );
        s.nodeAdded = true;
      }
    } catch (err) {
      await f.release().catch((e) => f.log(`fleece: release after a failed prepare: ${(e as Error).message}`));
      throw err;
    }
    return f;
  }

  /** Full or incremental for one disk, from what QEMU reports of its node now. */
  private decide(s: DiskState, node: NodeInfo | undefined): void {
    const { disk } = s;
    const { checkpoint, previousCheckpoint } = this.opts;
    if (!node) throw vmError('NOT_FOUND', `fleece: disk ${disk.device}: block node ${disk.node} does not exist in the VM (was the disk removed?)`);
    if (node.image['virtual-size'] !== disk.sizeBytes) {
      throw vmError(
        'CONFLICT',
        `fleece: disk ${disk.device} is ${node.image['virtual-size']} bytes now, not ${disk.sizeBytes} as described; describe the VM again`,
      );
    }
    // Unnamed bitmaps are QEMU's own (a running job's copy bitmap); only named ones are checkpoints.
    const bitmaps = (node['dirty-bitmaps'] ?? []).filter((b) => typeof b.name === 'string' && b.name.length > 0);
    if (bitmaps.some((b) => b.name === checkpoint)) {
      throw vmError('ALREADY_EXISTS', `fleece: disk ${disk.device} already has a bitmap named ${checkpoint}; choose another checkpoint name`);
    }
    const busy = bitmaps.find((b) => b.busy);
    if (busy) throw vmError('CONFLICT', `fleece: disk ${disk.device}: bitmap ${busy.name} is in use by another job (another backup running?)`);
    s.checkpointed = node.drv === 'qcow2';
    const prev = previousCheckpoint === undefined ? undefined : bitmaps.find((b) => b.name === previousCheckpoint);
    s.hasPrevious = prev !== undefined;
    if (previousCheckpoint === undefined) {
      this.log(`fleece: ${disk.device}: full backup${s.checkpointed ? `, checkpoint ${checkpoint}` : ''}`);
    } else if (!s.checkpointed) {
      s.fullReason = `disk ${disk.device} is a ${node.drv} image: QEMU can keep a persistent dirty bitmap only in a qcow2 image, so every backup of this disk is full`;
    } else if (!prev) {
      s.fullReason =
        `checkpoint bitmap ${previousCheckpoint} is missing on disk ${disk.device} (node ${disk.node}): ` +
        'the VM was started from another image, the disk was replaced or resized, or the bitmap was removed';
    } else if (prev.inconsistent) {
      s.fullReason = `checkpoint bitmap ${previousCheckpoint} on disk ${disk.device} is inconsistent (QEMU stopped without writing it back)`;
    } else if (!prev.recording) {
      s.fullReason = `checkpoint bitmap ${previousCheckpoint} on disk ${disk.device} is not recording (an interrupted backup left it disabled)`;
    } else if (!prev.persistent) {
      s.fullReason = `checkpoint bitmap ${previousCheckpoint} on disk ${disk.device} is not persistent`;
    } else {
      s.incremental = true;
      s.granularity = prev.granularity;
      s.dirtyBytes = prev.count;
      this.log(`fleece: ${disk.device}: incremental since ${previousCheckpoint} (${prev.count} bytes dirty), checkpoint ${checkpoint}`);
    }
    if (s.fullReason) this.log(`fleece: ${disk.device}: full backup: ${s.fullReason}`);
  }

  /** Disks and how each is backed up (before exportAll too). */
  get plan(): Array<{ device: string; incremental: boolean; fullReason?: string }> {
    return this.disks.map((s) => ({ device: s.disk.device, incremental: s.incremental, ...(s.fullReason ? { fullReason: s.fullReason } : {}) }));
  }

  /**
   * The bytes the copy will read: an incremental disk's dirty count (its previous checkpoint's
   * count when prepared; writes before the point add a little), a full disk's size. A group
   * backup ranks its copies by it.
   */
  get bytesToRead(): number {
    return this.disks.reduce((n, s) => n + (s.incremental ? (s.dirtyBytes ?? s.disk.sizeBytes) : s.disk.sizeBytes), 0);
  }

  /**
   * The point in time: one transaction for every disk. Runs inside the guest's freeze, so it
   * does only this one QMP command.
   */
  async pointInTime(): Promise<void> {
    if (this.state !== 'prepared' || this.released) throw vmError('INVALID_ARGUMENT', `fleece: pointInTime() in state ${this.released ? 'released' : this.state}`);
    const prev = this.opts.previousCheckpoint;
    const actions: object[] = [];
    for (const s of this.disks) {
      if (s.incremental) {
        actions.push(
          { type: 'block-dirty-bitmap-add', data: { node: s.scratchNode, name: DIRTY_BITMAP, persistent: false, disabled: true, granularity: s.granularity } },
          { type: 'block-dirty-bitmap-merge', data: { node: s.scratchNode, target: DIRTY_BITMAP, bitmaps: [{ node: s.disk.node, name: prev }] } },
        );
      }
      if (s.checkpointed) actions.push({ type: 'block-dirty-bitmap-add', data: { node: s.disk.node, name: this.opts.checkpoint, persistent: true } });
      if (s.incremental) actions.push({ type: 'block-dirty-bitmap-disable', data: { node: s.disk.node, name: prev } });
      actions.push({ type: 'blockdev-backup', data: { 'job-id': s.jobId, device: s.disk.node, target: s.scratchNode, sync: 'none', 'auto-dismiss': true } });
    }
    const started = Date.now();
    await this.qmp.execute('transaction', { actions }, { timeoutMs: this.timeoutMs });
    for (const s of this.disks) {
      s.jobRunning = true;
      s.pointTaken = true;
    }
    this.state = 'point';
    this.log(`fleece: point in time for ${this.disks.length} disk(s) in one transaction, ${Date.now() - started} ms`);
  }

  /**
   * Starts QEMU's NBD server on `listen` and exports every scratch node, named by device.
   * `listen`: a UNIX socket path (or `unix:/path`), or `tcp:HOST:PORT` where an external agent
   * reaches it over the network (issue 12).
   */
  async exportAll(listen: string): Promise<FleeceExport[]> {
    if (this.state !== 'point' || this.released) throw vmError('INVALID_ARGUMENT', `fleece: exportAll() in state ${this.released ? 'released' : this.state}`);
    const where = parseSocketAddress(listen, 'NBD server');
    const addr = where.kind === 'unix' ? { type: 'unix', data: { path: where.path } } : { type: 'inet', data: { host: where.host, port: String(where.port) } };
    try {
      await this.qmp.execute('nbd-server-start', { addr }, { timeoutMs: this.timeoutMs });
    } catch (err) {
      if (isVmvaultError(err) && /already running/i.test(err.message)) {
        throw vmError('CONFLICT', `fleece: the VM's NBD server is already running (another backup or a migration in progress?): ${err.message}`, undefined, err);
      }
      throw err;
    }
    this.serverStarted = true;
    const out: FleeceExport[] = [];
    for (const s of this.disks) {
      await this.qmp.execute(
        'block-export-add',
        {
          type: 'nbd',
          id: s.exportId,
          'node-name': s.scratchNode,
          name: s.disk.device,
          writable: false,
          ...(s.incremental ? { bitmaps: [DIRTY_BITMAP] } : {}),
        },
        { timeoutMs: this.timeoutMs },
      );
      s.exported = true;
      out.push({
        device: s.disk.device,
        exportName: s.disk.device,
        sizeBytes: s.disk.sizeBytes,
        ...(s.incremental ? { dirtyBitmapContext: `qemu:dirty-bitmap:${DIRTY_BITMAP}` } : {}),
        ...(s.fullReason ? { fullReason: s.fullReason } : {}),
      });
    }
    this.state = 'exported';
    return out;
  }

  /**
   * The backup is stored: the previous checkpoint is no longer needed on any disk. Also after
   * release(): the checkpoints are bitmaps on the disks' own nodes, and a backup releases its
   * fleecing as soon as the copy has read everything, before it makes the point.
   */
  async commit(): Promise<void> {
    if (this.state !== 'point' && this.state !== 'exported') {
      throw vmError('INVALID_ARGUMENT', `fleece: commit() in state ${this.state}`);
    }
    const prev = this.opts.previousCheckpoint;
    if (prev !== undefined) {
      for (const s of this.disks) {
        if (!s.hasPrevious) continue;
        await this.qmp.execute('block-dirty-bitmap-remove', { node: s.disk.node, name: prev }, { timeoutMs: this.timeoutMs });
        s.hasPrevious = false;
      }
    }
    this.state = 'committed';
    this.log(`fleece: committed checkpoint ${this.opts.checkpoint}${prev ? `, dropped ${prev}` : ''}`);
  }

  /**
   * The backup failed: roll the checkpoints back so the previous one again covers everything
   * since the last good backup. Order matters: the previous checkpoint is enabled first, then
   * the new one merged into it, then the new one dropped, so no guest write falls between.
   * Safe to call in any state before commit (a no-op before pointInTime).
   */
  async abort(): Promise<void> {
    if (this.state === 'committed') throw vmError('INVALID_ARGUMENT', 'fleece: abort() after commit()');
    if (this.state === 'aborted') return;
    const prev = this.opts.previousCheckpoint;
    const errors: string[] = [];
    for (const s of this.disks) {
      if (!s.pointTaken || !s.checkpointed) continue;
      const node = s.disk.node;
      try {
        if (s.incremental && prev !== undefined) {
          await this.qmp.execute('block-dirty-bitmap-enable', { node, name: prev }, { timeoutMs: this.timeoutMs });
          await this.qmp.execute(
            'block-dirty-bitmap-merge',
            { node, target: prev, bitmaps: [this.opts.checkpoint] },
            { timeoutMs: this.timeoutMs },
          );
        }
        await this.qmp.execute('block-dirty-bitmap-remove', { node, name: this.opts.checkpoint }, { timeoutMs: this.timeoutMs });
        s.pointTaken = false;
      } catch (err) {
        errors.push(`${s.disk.device}: ${(err as Error).message}`);
      }
    }
    if (errors.length > 0) {
      throw vmError('IO', `fleece: could not roll the checkpoints back (the next backup may be full): ${errors.join('; ')}`);
    }
    this.state = 'aborted';
    this.log(`fleece: aborted; checkpoint ${this.opts.checkpoint} dropped${prev ? `, ${prev} recording again` : ''}`);
  }

  /**
   * Removes the exports, the NBD server, the fleecing jobs, the scratch nodes and files.
   * Idempotent: what is already gone is skipped; every step is tried, and what could not be
   * undone is reported in one error (a later call tries it again).
   */
  async release(): Promise<void> {
    const errors: string[] = [];
    const step = async (what: string, fn: () => Promise<void>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        errors.push(`${what}: ${(err as Error).message}`);
      }
    };
    const t = { timeoutMs: this.timeoutMs };
    for (const s of this.disks) {
      if (!s.exported) continue;
      await step(`export ${s.exportId}`, async () => {
        this.qmp.clearEvents('BLOCK_EXPORT_DELETED');
        try {
          // hard: a reader still connected is disconnected rather than keeping the export alive.
          await this.qmp.execute('block-export-del', { id: s.exportId, mode: 'hard' }, t);
          await this.qmp.waitEvent('BLOCK_EXPORT_DELETED', (d) => d?.id === s.exportId, this.timeoutMs);
        } catch (err) {
          if (!gone(err)) throw err;
        }
        s.exported = false;
      });
    }
    if (this.serverStarted) {
      await step('nbd-server-stop', async () => {
        try {
          await this.qmp.execute('nbd-server-stop', undefined, t);
        } catch (err) {
          if (!(isVmvaultError(err) && /not running/i.test(err.message))) throw err;
        }
        this.serverStarted = false;
      });
    }
    for (const s of this.disks) {
      if (!s.jobRunning) continue;
      await step(`job ${s.jobId}`, async () => {
        this.qmp.clearEvents('BLOCK_JOB_CANCELLED');
        try {
          await this.qmp.execute('block-job-cancel', { device: s.jobId, force: true }, t);
          await this.qmp.waitEvent('BLOCK_JOB_CANCELLED', (d) => d?.device === s.jobId, this.timeoutMs);
        } catch (err) {
          if (!gone(err)) throw err;
        }
        s.jobRunning = false;
      });
    }
    for (const s of this.disks) {
      if (!s.nodeAdded) continue;
      await step(`scratch node ${s.scratchNode}`, async () => {
        try {
          await this.qmp.execute('blockdev-del', { 'node-name': s.scratchNode }, t);
        } catch (err) {
          if (!gone(err)) throw err;
        }
        s.nodeAdded = false;
      });
    }
    for (const s of this.disks) {
      if (!s.fileMade) continue;
      // Only after the node is gone: QEMU still writes into the file while the node exists.
      if (s.nodeAdded) continue;
      await step(`scratch file ${s.scratchFile}`, async () => {
        await this.scratch.remove(s.scratchFile);
        s.fileMade = false;
      });
    }
    if (errors.length > 0) {
      throw vmError('IO', `fleece: release left something behind (call release() again): ${errors.join('; ')}`);
    }
    this.released = true;
    this.log('fleece: released (exports, NBD server, jobs, scratch nodes and files gone)');
  }

  /**
   * Removes the exports, jobs and scratch nodes (and their scratch files) that an earlier fleece
   * left in this QEMU because the appliance died before release(): everything named with our
   * prefixes (vmv-e-, vmv-j-, vmv-s-). Stops the NBD server too when such objects were found and
   * no export remains. prepare() calls it, so only one Fleece per VM may exist at a time (the
   * backup service runs one backup per VM). Returns one line per object removed.
   */
  static async removeStale(qmp: QmpChannel, opts: { log?: (l: string) => void; timeoutMs?: number; scratch?: FleeceScratch } = {}): Promise<string[]> {
    const t = { timeoutMs: opts.timeoutMs ?? 30_000 };
    const lines: string[] = [];
    const say = (l: string) => {
      lines.push(l);
      opts.log?.(l);
    };
    const exports = await qmp.execute<Array<{ id: string }>>('query-block-exports', undefined, t);
    const jobs = await qmp.execute<Array<{ device: string }>>('query-block-jobs', undefined, t);
    const nodes = await qmp.execute<Array<NodeInfo & { image: { filename?: string } }>>('query-named-block-nodes', { flat: true }, t);
    const staleExports = exports.filter((e) => e.id.startsWith('vmv-e-'));
    const staleJobs = jobs.filter((j) => j.device.startsWith('vmv-j-'));
    const staleNodes = nodes.filter((n) => n['node-name'].startsWith('vmv-s-'));
    if (staleExports.length + staleJobs.length + staleNodes.length === 0) return lines;
    for (const e of staleExports) {
      qmp.clearEvents('BLOCK_EXPORT_DELETED');
      await qmp.execute('block-export-del', { id: e.id, mode: 'hard' }, t);
      await qmp.waitEvent('BLOCK_EXPORT_DELETED', (d) => d?.id === e.id, t.timeoutMs);
      say(`fleece: removed export ${e.id} left by an interrupted backup`);
    }
    if ((await qmp.execute<unknown[]>('query-block-exports', undefined, t)).length === 0) {
      try {
        await qmp.execute('nbd-server-stop', undefined, t);
        say('fleece: stopped the NBD server left by an interrupted backup');
      } catch (err) {
        if (!(isVmvaultError(err) && /not running/i.test(err.message))) throw err;
      }
    }
    for (const j of staleJobs) {
      qmp.clearEvents('BLOCK_JOB_CANCELLED');
      await qmp.execute('block-job-cancel', { device: j.device, force: true }, t);
      await qmp.waitEvent('BLOCK_JOB_CANCELLED', (d) => d?.device === j.device, t.timeoutMs);
      say(`fleece: cancelled job ${j.device} left by an interrupted backup`);
    }
    for (const n of staleNodes) {
      await qmp.execute('blockdev-del', { 'node-name': n['node-name'] }, t);
      const file = scratchFileOf(n.image?.filename);
      // Only a file this module named is removed: the scratch image, never anything else; where
      // QEMU runs (the host's agent removes it only inside its own scratch folder).
      let removed = false;
      if (file && SCRATCH_FILE.test(path.basename(file))) {
        try {
          await (opts.scratch ?? new LocalScratch(path.dirname(file))).remove(file);
          removed = true;
        } catch (err) {
          say(`fleece: could not remove the stale scratch image ${file}: ${(err as Error).message}`);
        }
      }
      say(`fleece: removed scratch node ${n['node-name']}${removed ? ` and ${file}` : ''} left by an interrupted backup`);
    }
    return lines;
  }

  /** The named bitmaps (checkpoints) on each disk's node, by device. */
  static async checkpoints(
    qmp: QmpChannel,
    disks: VmDisk[],
  ): Promise<Record<string, Array<{ name: string; recording: boolean; persistent: boolean; count: number; granularity: number; inconsistent: boolean }>>> {
    const nodes = await qmp.execute<NodeInfo[]>('query-named-block-nodes', { flat: true });
    const out: Record<string, Array<{ name: string; recording: boolean; persistent: boolean; count: number; granularity: number; inconsistent: boolean }>> = {};
    for (const d of disks) {
      const n = nodes.find((x) => x['node-name'] === d.node);
      out[d.device] = (n?.['dirty-bitmaps'] ?? [])
        .filter((b) => typeof b.name === 'string' && b.name.length > 0)
        .map((b) => ({ name: b.name, recording: b.recording, persistent: b.persistent, count: b.count, granularity: b.granularity, inconsistent: b.inconsistent === true }));
    }
    return out;
  }

  /**
   * Drops the named checkpoints from every disk that has them (e.g. one an interrupted backup
   * created, which no backup record names). Missing ones are skipped.
   */
  static async removeCheckpoints(qmp: QmpChannel, disks: VmDisk[], names: string[]): Promise<string[]> {
    const have = await Fleece.checkpoints(qmp, disks);
    const lines: string[] = [];
    for (const d of disks) {
      for (const b of have[d.device] ?? []) {
        if (!names.includes(b.name)) continue;
        await qmp.execute('block-dirty-bitmap-remove', { node: d.node, name: b.name });
        lines.push(`fleece: removed checkpoint ${b.name} from ${d.device}`);
      }
    }
    return lines;
  }

  /**
   * Bytes the scratch images hold now (QEMU's actual-size of each scratch node): read over QMP,
   * since the files are on QEMU's host, which for a VM on a host is not this machine.
   */
  async scratchBytes(): Promise<number> {
    const nodes = await this.qmp.execute<Array<{ 'node-name': string; image?: { 'actual-size'?: number } }>>('query-named-block-nodes', { flat: true }, { timeoutMs: this.timeoutMs });
    const mine = new Set(this.disks.filter((s) => s.nodeAdded).map((s) => s.scratchNode));
    return nodes.filter((n) => mine.has(n['node-name'])).reduce((sum, n) => sum + (Number.isSafeInteger(n.image?.['actual-size']) ? n.image!['actual-size']! : 0), 0);
  }

  /** The names QEMU knows this fleece's objects by (tests check they are gone). */
  get objects(): { nodes: string[]; jobs: string[]; exports: string[]; files: string[] } {
    return {
      nodes: this.disks.map((s) => s.scratchNode),
      jobs: this.disks.map((s) => s.jobId),
      exports: this.disks.map((s) => s.exportId),
      files: this.disks.map((s) => s.scratchFile),
    };
  }
}

/**
 * The scratch image's path from a scratch node's filename. With its backing given as a node,
 * QEMU names the node json:{"backing": ..., "file": {"driver": "file", "filename": PATH}}.
 */
function scratchFileOf(filename: string | undefined): string | undefined {
  if (!filename) return undefined;
  if (!filename.startsWith('json:')) return filename;
  try {
    const spec = JSON.parse(filename.slice(5)) as { file?: { filename?: unknown } };
    return typeof spec.file?.filename === 'string' ? spec.file.filename : undefined;
  } catch {
    return undefined;
  }
}

/** A QMP error that means the object is already gone (so its undo is done). */
function gone(err: unknown): boolean {
  if (!isVmvaultError(err)) return false;
  if (err.code === 'NOT_FOUND') return true;
  const desc = String((err as VmvaultError).details?.qmpDesc ?? '');
  return /not found|no such|cannot find|does not exist|isn't running|no active block job|Export '.*' is not found/i.test(desc);
}

function checkBitmapName(name: string, what: string): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > 1023 || /[\u0000-\u001f]/.test(name)) {
    throw vmError('INVALID_ARGUMENT', `fleece: ${what} name ${JSON.stringify(name)} is not a valid bitmap name (1-1023 printable characters)`);
  }
}
