// The backup and restore service: backs up a running QEMU VM into its share and restores points.
//
// One backup, step beside its undo (libvirt's qemu_backup.c does the same):
//   share exists (made if missing)              -
//   QMP connect, describeVm                     close
//   Fleece.prepare (scratch nodes)              Fleece.release (always: as the copy ends, else
//                                               when the backup fails)
//   workflow: quiesce..., snapshot (qemu plug-in: the point in time), unquiesce..., copy (BackupCopy)
//                                               the engine undoes every quiesce; Fleece.abort
//   vm.json into the share                      -
//   snapshot of the share, named by the point   removed again if a later step fails
//   record + checkpoint written                 -
//   Fleece.commit (previous checkpoint dropped) logged if it fails (the point stands)
// A failed or cancelled backup leaves no snapshot; the share's files may hold part of the failed
// copy, which no point refers to and the next backup replaces (full: new files; incremental:
// files put back from the previous point first, see backup-copy.ts).
//
// Two backups of one VM at once: the second gets CONFLICT before it touches anything.

import fs from 'node:fs/promises';
import path from 'node:path';
import { isVmvaultError, vmError } from '../errors.js';
import type { Namespace } from '../namespace/namespace.js';
import { Fleece } from '../plugins/qemu/fleece.js';
import { type FleeceScratch, LocalScratch } from '../plugins/qemu/fleece-scratch.js';
import { PostgresqlPlugin } from '../plugins/postgresql/postgresql-plugin.js';
import { FLEECE_KEY, GUEST_AGENT_OPENER_KEY, QemuPlugin } from '../plugins/qemu/plugin.js';
import { HostGuestAgent } from './host-qga.js';
import { ScriptPlugin } from '../plugins/script/script-plugin.js';
import { QmpClient } from '../plugins/qemu/qmp.js';
import type { QmpChannel } from '../plugins/qemu/qmp-channel.js';
import { describeVm, type VmDescription, type VmDisk } from '../plugins/qemu/vm-info.js';
import type { VmConfig } from './vm-registry.js';
import type { AgentPool } from './agent-pool.js';
import { BackupCopy, type PreviousPoint } from './backup-copy.js';
import { HostScratch } from './host-scratch.js';
import { HostInPlaceFiles } from './host-in-place.js';
import { type BackupRecord, BackupRecords } from './backup-records.js';
import { COPY_JOB_KEY, CopyPlugin } from './copy-plugin.js';
import { checkpointName, pointName, uniquePointName } from './point-name.js';
import type { QmpOpener } from './qmp-open.js';
import { type CopyPlan, type CopyPlanner, restorePoint } from './restore.js';
import { looksLikeNbdUri, restorePointToNbd } from './restore-nbd.js';
import { type InPlaceResult, restoreInPlace } from './restore-in-place.js';
import type { HaControl } from '../plugins/pacemaker/pacemaker.js';
import { WorkflowEngine } from './workflow/engine.js';
import { loadPluginsFolder } from './workflow/executable-plugins.js';
import { QuiesceJournal } from './workflow/journal.js';
import type { Plugin, WorkflowTarget } from './workflow/plugin.js';
import { PluginRegistry } from './workflow/registry.js';
import { loadWorkflows, type Workflow } from './workflow/workflows.js';

export type { BackupRecord } from './backup-records.js';

/** What the service needs of a VM's registration (src/backup/vm-registry.ts). */
export type VmConfigLike = Omit<VmConfig, 'createdAt'>;
export interface VmLookup {
  get(name: string): VmConfigLike;
}

export interface BackupProgress {
  phase(name: string): void;
  total(n: number, unit: 'bytes'): void;
  advance(n: number): void;
  log(line: string): void;
  signal: AbortSignal;
}

export interface BackupServiceOptions {
  dataDir: string;
  workflowsFile?: string;
  pluginsDir?: string;
  freezeTimeoutMs?: number;
  log?: (l: string) => void;
  /** Extra plug-ins (after the built-in ones). */
  plugins?: Plugin[];
  /** QMP connect and command timeout. Default 10 s. */
  qmpTimeoutMs?: number;
  /** NBD reads in flight per connection. Default 8. */
  inFlight?: number;
  /**
   * NBD connections per disk. Default 1: with the copy's buffer bounded, 4 measured no faster
   * (the namespace's commits set the pace; tools/PERFORMANCE.md, VM backup).
   */
  nbdConnections?: number;
  /** The clock that names points (time is an input). */
  now?: () => Date;
  /** External agents (issue 12): a VM with `agent` set has its disks copied through this pool. */
  agents?: AgentPool;
  /**
   * Where QEMU's NBD server listens for an external agent: `tcp:HOST:PORT` (HOST is also what the
   * agent connects to). Default: the UNIX socket in the VM's scratch directory, which an agent on
   * this host (any network namespace) or on a shared filesystem reaches.
   */
  agentNbdListen?: string;
  /**
   * The cluster manager whose resources some VMs are (issue 13, the Pacemaker plug-in, run here
   * or through a host's agent). Absent: no VM is HA, and an in-place restore refuses a running VM.
   */
  ha?: Pick<HaControl, 'resourceOf' | 'setRole'>;
  /**
   * The cluster manager for one VM, before `ha`: a VM on a host (`host`) has its resource taken
   * offline through that host's agent (host-ha.ts). Undefined: `ha` applies.
   */
  haFor?: (vm: VmConfigLike) => Pick<HaControl, 'resourceOf' | 'setRole'> | undefined;
  /** How long an in-place restore waits for an HA VM's QEMU to go once its resource stopped. */
  vmStopWaitMs?: number;
  /**
   * Opens a VM's QMP (issue 13, qmp-open.ts): relayed through its host's agent for a VM with
   * `host`. Default: the VM's socket directly.
   */
  qmpOpener?: QmpOpener;
  /** The agent of a host (a VM on a host has its disks copied by that host's agent). */
  agentOfHost?: (host: string) => string;
  /**
   * Runs first in every backup (issue 13, vm-placement.ts): finds where the VM runs now and
   * updates its record; throws (the backup fails with the reason) when its host is unreachable.
   */
  locate?: (name: string, log: (line: string) => void) => Promise<void>;
  /**
   * A backup cleared the VM's scratch folder on a host it ran on before it moved (its record's
   * formerHosts): the registry forgets that host (VmRegistry.forgetFormerHost).
   */
  formerHostCleared?: (vm: string, host: string) => Promise<void>;
}

/** How long a backup waits for a former host's agent to clear a VM's stale scratch. */
const FORMER_HOST_CLEAR_MS = 15_000;

/**
 * Seams a group backup (group-backup.ts) uses to run many VMs' backups as one: each is called at
 * its step of one VM's backup, and may wait (a barrier across the group). A single-VM backup
 * passes none and runs exactly as before.
 */
export interface BackupPhases {
  /** The point's name, the same for every VM of a group run; taken already: CONFLICT. */
  point?: string;
  /** After the fleecing nodes exist, before the workflow runs (load sampling, barrier). */
  prepared?(info: { qmp: QmpChannel; disks: VmDisk[]; incremental: boolean; bytesToRead: number; scratchBytes: () => Promise<number> }): Promise<void>;
  /** Wraps the point-in-time transaction (runs inside the workflow's snapshot step). */
  pointInTime?(fire: () => Promise<void>): Promise<void>;
  /** Wraps the copy (runs inside the workflow's copy step). */
  copy?(run: () => Promise<void>): Promise<void>;
  /**
   * Just before the fleecing state is released: as soon as the copy ended (ok true), before the
   * point is made, or after a failure (ok false). Once per backup.
   */
  beforeRelease?(info: { ok: boolean; scratchFiles: string[]; scratchBytes: () => Promise<number> }): Promise<void>;
  /** The fleecing state is released (or its release failed: error). Once per backup. */
  released?(info: { ok: boolean; error?: string }): void;
}

/** A restore point just made (roster.md, "backup -> policy and catalog-db"). */
export interface PointEvent {
  vm: string;
  share: string;
  /** The snapshot's name. */
  point: string;
  kind: 'full' | 'incremental';
}
export type PointListener = (event: PointEvent) => Promise<void> | void;

/** vm.json's format version (written into every point beside the disks). */
export const VM_JSON_VERSION = 1;

export class BackupService {
  private readonly records: BackupRecords;
  private readonly running = new Set<string>();
  private readonly log: (l: string) => void;
  private engine: Promise<WorkflowEngine> | undefined;
  /** Actions the plug-ins folder's executables declare (workflow files may name them). */
  private extraActions: string[] = [];
  private readonly pointListeners: PointListener[] = [];

  private copyPlanner: CopyPlanner | undefined;

  constructor(
    private readonly ns: Namespace,
    private readonly vms: VmLookup,
    private readonly opts: BackupServiceOptions,
  ) {
    this.records = new BackupRecords(opts.dataDir);
    this.log = opts.log ?? (() => {});
  }

  private getEngine(): Promise<WorkflowEngine> {
    this.engine ??= (async () => {
      const registry = new PluginRegistry({ log: this.log });
      registry.register(new QemuPlugin());
      registry.register(new PostgresqlPlugin());
      registry.register(new ScriptPlugin({ log: this.log }));
      registry.register(new CopyPlugin());
      for (const p of this.opts.plugins ?? []) registry.register(p);
      if (this.opts.pluginsDir) {
        const folder = await loadPluginsFolder(this.opts.pluginsDir, { log: this.log, reservedNames: registry.list().map((p) => p.name) });
        for (const l of folder.problems) this.log(l);
        for (const p of folder.plugins) registry.register(p);
        this.extraActions = folder.actions;
      }
      const journal = await QuiesceJournal.open(this.opts.dataDir);
      return new WorkflowEngine(registry, { journal, freezeTimeoutMs: this.opts.freezeTimeoutMs, log: this.log });
    })();
    // A failed start (unreadable journal) is tried again by the next call, not kept forever.
    this.engine.catch(() => (this.engine = undefined));
    return this.engine;
  }

  /** The workflows file: the option, else `<data>/workflows.yaml` when it exists, else the built-ins only. */
  private async workflowsFile(): Promise<string | undefined> {
    if (this.opts.workflowsFile !== undefined) return this.opts.workflowsFile;
    const f = path.join(this.opts.dataDir, 'workflows.yaml');
    return (await fs.stat(f).catch(() => null)) ? f : undefined;
  }

  /**
   * Listeners run after the snapshot and the record exist, in order; an error is logged in the
   * job log, never fails the backup.
   */
  onPointCreated(listener: PointListener): void {
    this.pointListeners.push(listener);
  }

  /** At appliance start: thaw and resume whatever a killed appliance left quiesced. */
  async start(): Promise<string[]> {
    const engine = await this.getEngine();
    const lines = await engine.recover();
    for (const l of lines) this.log(l);
    return lines;
  }

  /** The names of a VM's restore points' snapshots (a group run picks a name none of them has). */
  async pointNames(name: string): Promise<Set<string>> {
    return this.snapshotNames(this.vms.get(name).share);
  }

  async status(name: string): Promise<{ state: string; disks: VmDisk[]; lastBackup: BackupRecord | null }> {
    const vm = this.vms.get(name);
    const qmp = await this.openQmp(vm);
    try {
      const d = await describeVm(qmp);
      const list = await this.listBackups(name);
      return { state: d.status, disks: d.disks, lastBackup: list.at(-1) ?? null };
    } finally {
      await qmp.close();
    }
  }

  /** Restore points of a VM, oldest first; a point whose snapshot was deleted is left out. */
  async listBackups(name: string): Promise<BackupRecord[]> {
    const vm = this.vms.get(name);
    const state = await this.records.read(name);
    const snaps = await this.snapshotNames(vm.share);
    return state.records.filter((r) => snaps.has(r.point));
  }

  private async snapshotNames(share: string): Promise<Set<string>> {
    try {
      return new Set((await this.ns.snapshots.list(share)).map((s) => s.name));
    } catch (err) {
      if (isVmvaultError(err, 'NOT_FOUND')) return new Set();
      throw err;
    }
  }

  async backup(name: string, opts: { workflow?: string; full?: boolean }, p: BackupProgress, phases: BackupPhases = {}): Promise<BackupRecord> {
    if (this.running.has(name)) throw vmError('CONFLICT', `a backup of ${name} is already running; wait for it or cancel it`, { vm: name });
    this.running.add(name);
    try {
      return await this.backupNow(name, opts, p, phases);
    } finally {
      this.running.delete(name);
    }
  }

  private async chooseWorkflow(vm: VmConfigLike, asked: string | undefined): Promise<Workflow> {
    await this.getEngine(); // loads the plug-ins folder, whose actions a workflow file may name
    const all = await loadWorkflows(await this.workflowsFile(), { extraActions: this.extraActions });
    const wanted = asked ?? vm.workflow ?? 'app-consistent';
    const wf = all.get(wanted);
    if (!wf) throw vmError('NOT_FOUND', `no workflow named '${wanted}' (known: ${[...all.keys()].join(', ')})`);
    const actions = wf.steps.map((s) => s.action);
    const snap = actions.indexOf('snapshot');
    const copy = actions.indexOf('copy');
    if (snap < 0 || copy < 0 || copy < snap) {
      throw vmError('INVALID_ARGUMENT', `workflow '${wf.name}' (${wf.source}) must have a snapshot step and, after it, a copy step to make a backup`);
    }
    if (actions.includes('quiesce-vm') && !vm.qga) {
      throw vmError(
        'INVALID_ARGUMENT',
        `VM ${vm.name} has no guest agent, so workflow '${wf.name}' cannot freeze its filesystems: ` +
          `add the agent's socket (vmvault vm add ${vm.name} ... --qga unix:/path/to/qga.sock) or back up with --workflow crash-consistent`,
        { vm: vm.name, workflow: wf.name },
      );
    }
    return wf;
  }

  /**
   * Refuses a share that already holds files and is not a VM's backup share (no vm.json at its
   * top): a backup writes `<device>.raw` there and snapshots the whole share, so it would
   * overwrite a hypervisor's image of that name and mix the share's other files into every
   * point. A missing or empty share, or one holding an earlier VM's backups (vm.json; the
   * chain of a VM removed and added again goes on), is fine.
   */
  async checkShare(share: string): Promise<void> {
    let entries: Array<{ name: string }>;
    try {
      entries = await this.ns.fs.readdir(`/${share}`);
    } catch (err) {
      if (isVmvaultError(err, 'NOT_FOUND')) return;
      throw err;
    }
    const names = entries.map((e) => e.name).filter((n) => n !== '.' && n !== '..' && !n.startsWith('.snapshots') && !n.startsWith('.clones'));
    if (names.length === 0 || names.includes('vm.json')) return;
    const shown = names.slice(0, 5).map((n) => JSON.stringify(n)).join(', ') + (names.length > 5 ? `, ... (${names.length} in all)` : '');
    throw vmError(
      'CONFLICT',
      `share ${JSON.stringify(share)} already holds files that are not a VM's backups (${shown}); a backup writes <device>.raw files into its share ` +
        'and snapshots all of it, so it could overwrite them: give this VM another share (--share), or empty that one',
      { share },
    );
  }

  /** Makes the VM's share if it is missing; true when this call made it. */
  private async ensureShare(share: string): Promise<boolean> {
    try {
      await this.ns.shares.get(share);
      return false;
    } catch (err) {
      if (!isVmvaultError(err, 'NOT_FOUND')) throw err;
      await this.ns.shares.create(share);
      return true;
    }
  }

  /**
   * A first backup that fails must not leave behind the share it made (empty, or holding half a
   * copy and no point): an operator would find a share that looks like a backup and is none.
   * The namespace refuses to remove a share that has snapshots, so a point is never lost here.
   */
  private async backupNow(name: string, opts: { workflow?: string; full?: boolean }, p: BackupProgress, phases: BackupPhases): Promise<BackupRecord> {
    let madeShare: string | undefined;
    try {
      return await this.backupSteps(name, opts, p, phases, (share) => (madeShare = share));
    } catch (err) {
      if (madeShare !== undefined) {
        const share = madeShare;
        await this.ns.shares.remove(share, { force: true }).then(
          () => p.log(`removed the share ${share} this failed first backup had made`),
          (e) => p.log(`removing the share ${share} this failed backup had made failed: ${(e as Error).message}`),
        );
      }
      throw err;
    }
  }

  private async backupSteps(name: string, opts: { workflow?: string; full?: boolean }, p: BackupProgress, phases: BackupPhases, shareMade: (share: string) => void): Promise<BackupRecord> {
    const started = new Date();
    const t0 = performance.now();
    const log = (l: string) => {
      p.log(l);
      this.log(`backup ${name}: ${l}`);
    };
    p.phase('prepare');
    if (this.opts.locate) await this.opts.locate(name, log);
    const vm = this.vms.get(name);
    // A VM on a host (issue 13): its host's agent copies it, unless the VM names its own agent.
    const copyAgent = vm.agent ?? (vm.host !== undefined ? this.opts.agentOfHost?.(vm.host) : undefined);
    if (copyAgent !== undefined && this.opts.agents === undefined) {
      throw vmError('NOT_SUPPORTED', `VM ${name} is copied by agent ${copyAgent}, but this appliance runs no agent pool`, { vm: name });
    }
    const wf = await this.chooseWorkflow(vm, opts.workflow);
    const engine = await this.getEngine();
    if (await this.ensureShare(vm.share)) shareMade(vm.share);
    const state = await this.records.read(name);
    const snaps = await this.snapshotNames(vm.share);
    if (phases.point !== undefined && snaps.has(phases.point)) {
      throw vmError('CONFLICT', `VM ${name} already has a restore point named ${phases.point}`, { vm: name, point: phases.point });
    }
    const point = phases.point ?? uniquePointName(pointName(this.opts.now?.() ?? started), snaps);
    const checkpoint = checkpointName(point);

    let previous: PreviousPoint | undefined;
    const prevCk = state.checkpoint;
    if (opts.full) log('full backup asked for');
    else if (!prevCk) log('no previous checkpoint: full backup');
    else if (!snaps.has(prevCk.point)) log(`the previous point ${prevCk.point} was deleted: full backup`);
    else {
      const rec = state.records.find((r) => r.point === prevCk.point);
      if (rec) previous = { point: rec.point, disks: new Map(rec.disks.map((d) => [d.device, d.sizeBytes])) };
      else log(`no record of the previous point ${prevCk.point}: full backup`);
    }

    const qmp = await this.openQmp(vm);
    if (vm.host !== undefined) log(`QMP through host ${vm.host}'s agent: ${qmp.address}`);
    // Everything QEMU opens (scratch images, the NBD socket) is made on QEMU's host: for a VM on
    // a host by its agent, in the agent's scratch folder; else in <data>/scratch/<vm>.
    const hostAgent = vm.host !== undefined && this.opts.agents !== undefined && this.opts.agentOfHost !== undefined ? this.opts.agentOfHost(vm.host) : undefined;
    const scratch: FleeceScratch =
      hostAgent !== undefined
        ? new HostScratch(this.opts.agents!, vm.host!, hostAgent, name)
        : new LocalScratch(path.join(this.opts.dataDir, 'scratch', name));
    let scratchUsed = false;
    // A backup killed on a host the VM has since left kept its scratch there: cleared beside this
    // backup, best effort (an unreachable host stays on the list for the next one).
    const formerCleared = this.clearFormerHosts(vm, log);
    try {
      const desc = await describeVm(qmp);
      if (desc.disks.length === 0) throw vmError('INVALID_ARGUMENT', `VM ${name} has no disks to back up`);
      // What a killed run left (files QEMU no longer holds; Fleece.removeStale frees the rest).
      scratchUsed = true;
      await scratch.clear();
      const fleece = await Fleece.prepare(qmp, desc.disks, {
        scratch,
        checkpoint,
        previousCheckpoint: previous ? prevCk!.name : undefined,
        log,
      });
      let snapshotMade = false;
      let pointMade = false;
      // Once, as the copy ends or (a failure before) in the finally below; resolves with the
      // release's error, if any.
      let releasing: Promise<string | undefined> | undefined;
      const releaseFleece = (ok: boolean): Promise<string | undefined> =>
        (releasing ??= (async () => {
          await phases.beforeRelease?.({ ok, scratchFiles: fleece.objects.files, scratchBytes: () => fleece.scratchBytes() }).catch((e) => log(`before the release: ${(e as Error).message}`));
          let releaseError: string | undefined;
          await fleece.release().catch((e) => {
            releaseError = (e as Error).message;
            log(`releasing the fleecing nodes failed: ${releaseError}`);
          });
          phases.released?.(releaseError === undefined ? { ok } : { ok, error: releaseError });
          return releaseError;
        })());
      try {
        await phases.prepared?.({ qmp, disks: desc.disks, incremental: fleece.plan.some((d) => d.incremental), bytesToRead: fleece.bytesToRead, scratchBytes: () => fleece.scratchBytes() });
        const copy = new BackupCopy({
          ns: this.ns,
          share: vm.share,
          vmName: name,
          fleece,
          ...(copyAgent !== undefined ? { agents: { pool: this.opts.agents!, pinned: copyAgent, ...(this.opts.agentNbdListen ? { listen: this.opts.agentNbdListen } : {}) } } : {}),
          socketPath: scratch.socketPath(),
          previous,
          progress: { total: (n, u) => p.total(n, u), advance: (n) => p.advance(n) },
          log,
          inFlight: this.opts.inFlight,
          connections: this.opts.nbdConnections,
        });
        const target: WorkflowTarget = {
          vm: name,
          qmp: vm.qmp,
          ...(vm.qga ? { qga: vm.qga } : {}),
          ...(vm.pg ? { pg: vm.pg } : {}),
          ...(vm.script ? { script: vm.script } : {}),
        };
        p.phase('workflow');
        // A group run wraps the transaction and the copy (barrier, busiest-first queue); the
        // workflow's steps themselves are the same.
        const pointInTime = phases.pointInTime;
        const copyWrap = phases.copy;
        // The fleecing is released the moment the copy has read everything (issue 13: the
        // scratch image grows with the guest's writes while it is held), before the point is
        // made: the point is the share's files, and the checkpoints (commit, abort) are bitmaps
        // on the VM's own disks, not on the fleecing nodes.
        const copyThenRelease = async (signal: AbortSignal, l: (line: string) => void): Promise<void> => {
          await copy.run(signal, l);
          await releaseFleece(true);
        };
        const report = await engine.run(wf, target, {
          signal: p.signal,
          state: new Map<string, unknown>([
            [FLEECE_KEY, pointInTime ? { pointInTime: () => pointInTime(() => fleece.pointInTime()) } : fleece],
            [COPY_JOB_KEY, { run: (signal: AbortSignal, l: (line: string) => void) => (copyWrap ? copyWrap(() => copyThenRelease(signal, l)) : copyThenRelease(signal, l)) }],
            // A VM on a host: its guest agent's socket is there too; relayed like its QMP.
            ...(hostAgent !== undefined
              ? [[GUEST_AGENT_OPENER_KEY, (address: string) =>
                    // A tcp: address is reached directly, as before; a UNIX socket only on the host.
                    address.startsWith('tcp:') ? undefined : HostGuestAgent.open(this.opts.agents!, { host: vm.host!, agent: hostAgent, socket: address, timeoutMs: this.opts.qmpTimeoutMs })] as [string, unknown]]
              : []),
          ]),
        });
        if (!copy.done) throw vmError('INVALID_ARGUMENT', `workflow '${wf.name}' finished without copying`);
        if (p.signal.aborted) throw vmError('CANCELLED', 'the backup was cancelled');

        for (const a of report.actions) log(`${a.phase === 'undo' ? 'undo ' : ''}${a.action} (plug-in ${a.plugin}): ${a.outcome}, ${a.durationMs} ms`);
        if (report.freezeMs !== null) log(`guest frozen ${report.freezeMs} ms`);

        p.phase('finish');
        const tf = performance.now();
        await this.writeVmJson(vm.share, desc, point);
        await this.ns.snapshots.create(vm.share, point);
        snapshotMade = true;
        log(`vm.json and snapshot ${point}: ${(performance.now() - tf).toFixed(0)} ms`);
        const kind = copy.disks.every((d) => d.kind === 'incremental') ? 'incremental' : 'full';
        const record: BackupRecord = {
          vm: name,
          point,
          kind,
          startedAt: started.toISOString(),
          durationMs: Math.round(performance.now() - t0),
          bytesRead: copy.bytesRead,
          bytesWritten: copy.bytesWritten,
          freezeMs: freezeOf(report),
          disks: copy.disks,
          workflow: wf.name,
        };
        await this.records.write({ ...state, checkpoint: { name: checkpoint, point }, records: [...state.records, record] });
        try {
          await fleece.commit();
        } catch (err) {
          log(`dropping the previous checkpoint failed (the point ${point} stands): ${(err as Error).message}`);
        }
        // A full backup while an older checkpoint exists (--full, its point deleted): that bitmap
        // would record every write forever; nothing will ever read it.
        if (prevCk && !previous) await dropBitmap(qmp, desc.disks, prevCk.name, log);
        log(`restore point ${point}: ${kind}, read ${record.bytesRead} bytes, ${record.durationMs} ms`);
        for (const l of this.pointListeners) {
          try {
            await l({ vm: name, share: vm.share, point, kind });
          } catch (err) {
            log(`after the point ${point}: ${(err as Error).message}`);
          }
        }
        pointMade = true;
        return record;
      } catch (err) {
        const rep = (err as { details?: { report?: { actions?: Array<{ phase: string; action: string; plugin: string; outcome: string; durationMs: number }> } } }).details?.report;
        for (const a of rep?.actions ?? []) log(`${a.phase === 'undo' ? 'undo ' : ''}${a.action} (plug-in ${a.plugin}): ${a.outcome}, ${a.durationMs} ms`);
        log(`backup failed: ${(err as Error).message}`);
        if (snapshotMade) await this.ns.snapshots.remove(vm.share, point).catch((e) => log(`removing the unfinished point ${point} failed: ${(e as Error).message}`));
        await fleece.abort().catch((e) => log(`rolling back the checkpoint failed: ${(e as Error).message}`));
        throw err;
      } finally {
        // Released already when the copy ended; a release that failed then is tried once more.
        const early = releasing !== undefined;
        if ((await releaseFleece(pointMade)) !== undefined && early) {
          await fleece.release().then(
            () => log('releasing the fleecing nodes again: done'),
            (e) => log(`releasing the fleecing nodes again failed: ${(e as Error).message}`),
          );
        }
      }
    } finally {
      await qmp.close().catch(() => {});
      if (scratchUsed) await scratch.clear().catch((e) => log(`removing the scratch ${scratch.where} failed: ${(e as Error).message}`));
      await formerCleared;
    }
  }

  /** Clears the VM's scratch folder on every former host (formerHosts); never rejects. */
  private async clearFormerHosts(vm: VmConfigLike, log: (line: string) => void): Promise<void> {
    const pool = this.opts.agents;
    const agentOf = this.opts.agentOfHost;
    if (vm.formerHosts === undefined || vm.formerHosts.length === 0 || pool === undefined || agentOf === undefined) return;
    await Promise.all(
      vm.formerHosts.filter((h) => h !== vm.host).map(async (host) => {
        let agent: string;
        try {
          agent = agentOf(host);
        } catch (err) {
          // The host left the host list: nothing here reaches it any more.
          log(`former host ${host} of VM ${vm.name}: ${(err as Error).message}; forgotten (clear its agent's scratch folder by hand if it comes back)`);
          await this.opts.formerHostCleared?.(vm.name, host).catch(() => {});
          return;
        }
        try {
          await new HostScratch(pool, host, agent, vm.name).clear(FORMER_HOST_CLEAR_MS);
          log(`stale scratch of VM ${vm.name} on its former host ${host} (agent ${agent}) removed`);
          await this.opts.formerHostCleared?.(vm.name, host).catch((e) => log(`forgetting former host ${host}: ${(e as Error).message}`));
        } catch (err) {
          log(`stale scratch of VM ${vm.name} on its former host ${host} not removed (tried again next backup): ${(err as Error).message}`);
        }
      }),
    );
  }

  private openQmp(vm: VmConfigLike): Promise<QmpChannel> {
    if (this.opts.qmpOpener) return this.opts.qmpOpener(vm);
    return QmpClient.connect(vm.qmp, { timeoutMs: this.opts.qmpTimeoutMs });
  }

  private async writeVmJson(share: string, desc: VmDescription, point: string): Promise<void> {
    const file = `/${share}/vm.json`;
    const body = Buffer.from(JSON.stringify({ version: VM_JSON_VERSION, point, ...desc }, null, 2) + '\n');
    try {
      await this.ns.fs.unlink(file);
    } catch (err) {
      if (!isVmvaultError(err, 'NOT_FOUND')) throw err;
    }
    const fh = await this.ns.fs.create(file, 0o644);
    try {
      await this.ns.write(fh, 0, body);
    } finally {
      await this.ns.fs.release(fh);
    }
  }

  async restore(name: string, opts: { point?: string; to: string; format?: 'raw' | 'qcow2' }, p: BackupProgress): Promise<{ point: string; files: string[] }> {
    const vm = this.vms.get(name);
    const format = opts.format ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') throw vmError('INVALID_ARGUMENT', `format must be raw or qcow2, not ${String(format)}`);
    if (typeof opts.to !== 'string' || opts.to === '') throw vmError('INVALID_ARGUMENT', 'restore needs a target directory or NBD URI (--to DIR|URI)');
    const points = await this.listBackups(name);
    let rec: { point: string; disks: Array<{ device: string; sizeBytes: number }> } | undefined =
      opts.point === undefined ? points.at(-1) : points.find((r) => r.point === opts.point);
    let plan: CopyPlan | undefined;
    if (!rec && opts.point !== undefined && this.copyPlanner) {
      // The primary no longer holds the point (deleted by hand, or lost): a recorded clone or
      // archive copy of it may (policy/best-copy.ts says which, or why none).
      plan = await this.copyPlanner(name, vm.share, opts.point, (l) => p.log(l));
      if (plan?.source) {
        const known = (await this.records.read(name)).records.find((r) => r.point === opts.point);
        const files = await plan.source.files();
        const disks = known?.disks ?? files.filter((f) => f.path.endsWith('.raw') && !f.path.includes('/')).map((f) => ({ device: f.path.slice(0, -4), sizeBytes: f.size }));
        rec = { point: opts.point, disks };
      }
    }
    if (!rec) {
      await plan?.finish(false);
      if (points.length === 0) throw vmError('NOT_FOUND', `VM ${name} has no restore point`);
      throw vmError('NOT_FOUND', `VM ${name} has no restore point ${opts.point} (latest: ${points.at(-1)!.point})`);
    }
    p.phase('restore');
    p.total(rec.disks.reduce((n, d) => n + d.sizeBytes, 0), 'bytes');
    const devices = rec.disks.map((d) => d.device);
    const nbd = looksLikeNbdUri(opts.to);
    // Other copies of the point for damage met on the way (policy/best-copy.ts, when set): the
    // same plan whatever the target, files in a directory or NBD exports.
    plan ??= await this.copyPlanner?.(name, vm.share, rec.point, (l) => p.log(l));
    const common = { signal: p.signal, advance: (n: number) => p.advance(n), rescue: plan?.rescue, source: plan?.source };
    let files: string[];
    try {
      files = nbd
        ? await restorePointToNbd(this.ns, vm.share, rec.point, devices, opts.to, { ...common, log: (l) => p.log(l) })
        : await restorePoint(this.ns, vm.share, rec.point, devices, path.resolve(opts.to), { ...common, format });
    } catch (err) {
      await plan?.finish(false);
      throw err;
    }
    await plan?.finish(true);
    p.log(`restored ${rec.point} of ${name}${plan?.source ? ` from ${plan.source.name}` : ''}${nbd ? ' over NBD' : ''}: ${files.join(', ')}`);
    return { point: rec.point, files };
  }

  /** Where a restore finds other copies of a point (the composition root sets policy's BestCopy). */
  setCopyPlanner(planner: CopyPlanner | undefined): void {
    this.copyPlanner = planner;
  }

  /**
   * Restores a point over the disk files the VM uses (restore-in-place.ts): an HA VM's resource
   * offline first and back after, a running VM refused. One at a time per VM, and never beside
   * a backup of it (CONFLICT).
   */
  async restoreInPlace(name: string, opts: { point?: string }, p: BackupProgress): Promise<InPlaceResult> {
    const vm = this.vms.get(name);
    const points = await this.listBackups(name);
    if (points.length === 0) throw vmError('NOT_FOUND', `VM ${name} has no restore point`);
    const rec = opts.point === undefined ? points.at(-1)! : points.find((r) => r.point === opts.point);
    if (!rec) throw vmError('NOT_FOUND', `VM ${name} has no restore point ${opts.point} (latest: ${points.at(-1)!.point})`);
    if (this.running.has(name)) throw vmError('CONFLICT', `a backup or restore of ${name} is running; wait for it or cancel it`, { vm: name });
    this.running.add(name);
    try {
      p.phase('restore');
      p.total(rec.disks.reduce((n, d) => n + d.sizeBytes, 0), 'bytes');
      const r = await restoreInPlace({
        ns: this.ns,
        vm,
        point: rec.point,
        devices: rec.disks.map((d) => d.device),
        openQmp: (address) => (this.opts.qmpOpener ? this.opts.qmpOpener({ ...vm, qmp: address }) : QmpClient.connect(address, { timeoutMs: Math.min(this.opts.qmpTimeoutMs ?? 3000, 3000) })),
        ...((h) => (h ? { ha: h } : {}))(this.opts.haFor?.(vm) ?? this.opts.ha),
        ...(this.opts.vmStopWaitMs !== undefined ? { vmStopWaitMs: this.opts.vmStopWaitMs } : {}),
        // A VM on a host: its disk files are there, written through that host's agent.
        ...(vm.host !== undefined && this.opts.agents !== undefined && this.opts.agentOfHost !== undefined
          ? { files: new HostInPlaceFiles(this.opts.agents, vm.host, this.opts.agentOfHost(vm.host)) }
          : {}),
        log: (l) => {
          p.log(l);
          this.log(`restore ${name} in place: ${l}`);
        },
        advance: (n) => p.advance(n),
        signal: p.signal,
      });
      p.log(`restored ${rec.point} of ${name} in place: ${r.files.join(', ')}`);
      return r;
    } finally {
      this.running.delete(name);
    }
  }
}

/** Removes a checkpoint bitmap from every disk that has it (best effort, logged). */
async function dropBitmap(qmp: QmpChannel, disks: VmDisk[], name: string, log: (l: string) => void): Promise<void> {
  for (const d of disks) {
    try {
      await qmp.execute('block-dirty-bitmap-remove', { node: d.node, name });
      log(`${d.device}: dropped the unused checkpoint ${name}`);
    } catch (err) {
      if (!/not found|Dirty bitmap '.*' not found/i.test((err as Error).message)) log(`${d.device}: could not drop the old checkpoint ${name}: ${(err as Error).message}`);
    }
  }
}

/** The guest's freeze window from the engine's report (null when the workflow froze nothing). */
function freezeOf(report: unknown): number | null {
  const v = (report as { freezeMs?: unknown } | undefined)?.freezeMs;
  return typeof v === 'number' ? v : null;
}
