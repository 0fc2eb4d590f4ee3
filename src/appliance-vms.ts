// The control plane's VM services (issue 11), over the VM registry and the backup service. Part
// of the composition root: the only place where control/ meets backup/'s service. Every method
// validates its input itself (public methods validate), whatever the HTTP layer checked.

import fs from 'node:fs/promises';
import path from 'node:path';
import { checkNbdUri, looksLikeNbdUri, nbdTargets } from './backup/restore-nbd.js';
import { checkNewVm, checkScriptFile, checkVmName, checkWorkflowName, redactUrl, type VmConfig, type VmRegistry } from './backup/vm-registry.js';
import { jobProgress } from './control/job-progress.js';
import { checkRestoreTarget } from './control/restore-target.js';
import type {
  BackupRecordView,
  BackupRequest,
  ByteProgress,
  JobContext,
  NewVmRequest,
  RestoreRequest,
  RestoreResult,
  VmDiskView,
  VmState,
  VmView,
} from './control/services.js';
import { isVmvaultError, vmError } from './errors.js';
import { validateName } from './namespace/names.js';

/**
 * What the control plane needs of the backup service (src/backup/backup-service.ts, the roster's
 * contract "backup -> surfaces"): BackupService satisfies it structurally.
 */
export interface BackupEngine {
  status(name: string): Promise<{ state: string; disks: Array<VmDiskView & { node?: string }>; lastBackup: BackupRecordView | null }>;
  backup(name: string, opts: { workflow?: string; full?: boolean }, p: ByteProgress): Promise<BackupRecordView>;
  listBackups(name: string): Promise<BackupRecordView[]>;
  restore(name: string, opts: { point?: string; to: string; format?: 'raw' | 'qcow2' }, p: ByteProgress): Promise<RestoreResult>;
  /** Refuses (CONFLICT) a share that holds files other than a VM's backups. */
  checkShare?(share: string): Promise<void>;
  /** Over the VM's own disk files, HA-aware (issue 13). */
  restoreInPlace?(name: string, opts: { point?: string }, p: ByteProgress): Promise<RestoreResult>;
}

export interface VmBackupParts {
  registry: VmRegistry;
  /** The backup service; absent, VMs can be registered and listed but not backed up. */
  engine?: BackupEngine;
  /**
   * The workflows a backup may name (workflows.yaml over the built-in ones), read at each check
   * so an edit counts at once. Used to refuse a backup before its job starts; when it cannot be
   * read, the check is left to the backup itself (whose job then fails with the reason).
   */
  workflows?: () => Promise<ReadonlyMap<string, { steps: ReadonlyArray<{ action: string }> }>>;
  /** Named in "unknown workflow" messages. */
  workflowsFile?: string;
  /** How long a state probe (QMP) may take before the VM shows as unreachable. Default 3000 ms. */
  probeTimeoutMs?: number;
  /**
   * Directories a restore must not write into: the appliance's own mount (its process would
   * write through its own FUSE file system) and its data directory.
   */
  forbiddenRoots?: Array<{ path: string; what: string }>;
  /** Fills a new VM's host, qmp and uuid from the hosts and the cluster map (issue 13, appliance-hosts.ts). */
  placeVm?: (req: NewVmRequest) => Promise<NewVmRequest>;
}

/** What a backup runs when neither the request nor the VM names a workflow (as the backup service does). */
export const DEFAULT_WORKFLOW = 'app-consistent';

/** The probe bound when none is configured: long enough for a loaded QEMU under TCG, short enough for a listing. */
export const DEFAULT_PROBE_TIMEOUT_MS = 3000;

export class ApplianceVms {
  /** `vmParts` undefined: an appliance without VM backup (no VMs; adding one is NOT_SUPPORTED). */
  private readonly removedListeners: Array<(vm: string) => Promise<void>> = [];

  constructor(private readonly vmParts: VmBackupParts | undefined) {}

  async listVms(): Promise<VmView[]> {
    const vms = this.vmParts?.registry.list() ?? [];
    return Promise.all(vms.map((vm) => this.view(vm)));
  }

  async getVm(name: string): Promise<VmView> {
    return this.view(this.registry().get(name));
  }

  async addVm(input: NewVmRequest): Promise<VmView> {
    if (input !== null && typeof input === 'object' && (input.fromCluster !== undefined || input.host !== undefined) && this.vmParts?.placeVm === undefined) {
      throw vmError('NOT_SUPPORTED', 'this appliance has no host list: a VM cannot be placed on a host');
    }
    checkVmName(input?.name);
    const req = this.vmParts?.placeVm ? await this.vmParts.placeVm(input) : input;
    if (req.qmp === undefined) throw vmError('INVALID_ARGUMENT', `VM ${req.name} needs "qmp" (its QMP socket: unix:/path or tcp:host:port), or fromCluster to take it from the cluster map`);
    const vm = { ...req, qmp: req.qmp as string };
    checkNewVm(vm);
    if (req.workflow !== undefined) await this.checkWorkflow(req.workflow);
    if (req.script !== undefined) await checkScriptFile(req.script);
    await this.vmParts?.engine?.checkShare?.(req.share ?? req.name);
    return this.view(await this.registry().add(vm));
  }

  async removeVm(name: string): Promise<void> {
    await this.registry().remove(name);
    for (const l of this.removedListeners) await l(name);
  }

  /**
   * Runs `listener` after a VM is removed from the registry (the policies unassign it, so no
   * scheduled run fails on a VM that is gone). Its points and share stay, as `vm remove` says.
   */
  onVmRemoved(listener: (vm: string) => Promise<void>): void {
    this.removedListeners.push(listener);
  }

  async listBackups(name: string): Promise<BackupRecordView[]> {
    this.registry().get(name);
    return this.engine().listBackups(name);
  }

  async checkBackup(name: string, req: BackupRequest): Promise<void> {
    const vm = this.registry().get(name);
    const workflow = req.workflow ?? vm.workflow ?? DEFAULT_WORKFLOW;
    const wf = await this.checkWorkflow(workflow);
    // The same refusal the backup service makes inside its job, made before the job exists.
    if (wf !== undefined && vm.qga === undefined && wf.steps.some((s) => s.action === 'quiesce-vm')) {
      throw vmError(
        'INVALID_ARGUMENT',
        `VM ${vm.name} has no guest agent, so workflow '${workflow}' cannot freeze its filesystems: ` +
          `register the agent's socket (vmvault vm remove ${vm.name}, then vm add ${vm.name} ... --qga unix:/path/to/qga.sock) or back up with --workflow crash-consistent`,
        { vm: vm.name, workflow },
      );
    }
    this.engine();
  }

  async backupVm(ctx: JobContext, name: string, req: BackupRequest): Promise<BackupRecordView> {
    const vm = this.registry().get(name);
    const workflow = req.workflow ?? vm.workflow;
    const opts: { workflow?: string; full?: boolean } = {};
    if (workflow !== undefined) opts.workflow = workflow;
    if (req.full === true) opts.full = true;
    return this.engine().backup(name, opts, jobProgress(ctx));
  }

  async checkRestore(name: string, req: RestoreRequest): Promise<void> {
    this.registry().get(name);
    if (req.inPlace === true) return this.checkInPlace(name, req);
    const target = checkRestoreTarget(req.to);
    const nbd = looksLikeNbdUri(target);
    const to = nbd ? await this.checkNbdSockets(target) : await this.checkOutsideRoots(target);
    if (req.format !== undefined && req.format !== 'raw' && req.format !== 'qcow2') throw vmError('INVALID_ARGUMENT', `restore format must be raw or qcow2, not ${JSON.stringify(req.format)}`);
    const points = await this.engine().listBackups(name);
    let rec: BackupRecordView | undefined;
    if (req.point !== undefined) {
      validateName('snapshot', req.point);
      rec = points.find((p) => p.point === req.point);
      if (rec === undefined) {
        throw vmError('NOT_FOUND', `VM ${name} has no restore point ${JSON.stringify(req.point)} (vmvault backup list ${name} shows them)`, { vm: name, point: req.point });
      }
    } else {
      rec = points.at(-1);
      if (rec === undefined) throw vmError('NOT_FOUND', `VM ${name} has no restore point yet (vmvault backup ${name} makes one)`, { vm: name });
    }
    if (nbd) {
      if (req.format !== undefined) throw vmError('INVALID_ARGUMENT', 'an NBD target takes no format: the disk is written as the raw bytes the export stores');
      nbdTargets(to, rec.disks.map((d) => d.device));
      return;
    }
    try {
      const st = await fs.stat(to);
      if (!st.isDirectory()) throw vmError('INVALID_ARGUMENT', `restore target ${to} exists and is not a directory`);
    } catch (err) {
      if (isVmvaultError(err)) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw vmError('IO', `restore target ${req.to}: ${(err as Error).message}`);
    }
    // Never over a file already there (the restore itself refuses too, inside its job).
    const format = req.format ?? 'raw';
    for (const f of [...rec.disks.map((d) => `${d.device}.${format}`), 'vm.json']) {
      const file = path.join(to, f);
      if (await fs.stat(file).then(() => true, () => false)) {
        throw vmError('ALREADY_EXISTS', `${file} exists; restore into an empty directory or remove it`, { file });
      }
    }
  }

  /** An in-place restore: the engine can do it, the point exists; the rest is checked in its job. */
  private async checkInPlace(name: string, req: RestoreRequest): Promise<void> {
    if (req.to !== undefined || req.format !== undefined) {
      throw vmError('INVALID_ARGUMENT', "an in-place restore writes over the VM's own disk files in their own format: give no target directory or format with it");
    }
    if (this.engine().restoreInPlace === undefined) throw vmError('NOT_SUPPORTED', 'this appliance\'s backup service cannot restore in place');
    const points = await this.engine().listBackups(name);
    if (req.point !== undefined) {
      validateName('snapshot', req.point);
      if (!points.some((p) => p.point === req.point)) {
        throw vmError('NOT_FOUND', `VM ${name} has no restore point ${JSON.stringify(req.point)} (vmvault backup list ${name} shows them)`, { vm: name, point: req.point });
      }
    } else if (points.length === 0) {
      throw vmError('NOT_FOUND', `VM ${name} has no restore point yet (vmvault backup ${name} makes one)`, { vm: name });
    }
  }

  async restoreVm(ctx: JobContext, name: string, req: RestoreRequest): Promise<RestoreResult> {
    this.registry().get(name);
    if (req.inPlace === true) {
      await this.checkInPlace(name, req);
      return this.engine().restoreInPlace!(name, req.point !== undefined ? { point: req.point } : {}, jobProgress(ctx));
    }
    const to = checkRestoreTarget(req.to);
    const opts: { point?: string; to: string; format?: 'raw' | 'qcow2' } = { to: looksLikeNbdUri(to) ? await this.checkNbdSockets(to) : await this.checkOutsideRoots(to) };
    if (req.point !== undefined) opts.point = req.point;
    if (req.format !== undefined) opts.format = req.format;
    return this.engine().restore(name, opts, jobProgress(ctx));
  }

  /**
   * An NBD URI unless its UNIX socket lies in the appliance's own mount (connecting there would
   * make this process wait on its own FUSE mount) or data directory.
   */
  private async checkNbdSockets(uri: string): Promise<string> {
    for (const s of checkNbdUri(uri).sockets) await this.checkOutsideRoots(s.split('{device}').join('vda'));
    return uri;
  }

  /** `to` (absolute, canonical) unless it is, or is under, a forbidden root, by name or through symbolic links. */
  private async checkOutsideRoots(to: string): Promise<string> {
    const roots = this.vmParts?.forbiddenRoots ?? [];
    const inside = (p: string, root: string) => p === root || p.startsWith(root.endsWith('/') ? root : `${root}/`);
    // By name first: no file system call at all for a path under the mount.
    for (const r of roots) {
      if (inside(to, r.path)) throw vmError('INVALID_ARGUMENT', `restore target ${to} is inside the appliance's ${r.what} (${r.path}); restore to a directory outside it`);
    }
    // Then through symbolic links: the nearest existing ancestor's real path.
    let existing = to;
    const rest: string[] = [];
    for (;;) {
      const real = await fs.realpath(existing).catch(() => undefined);
      if (real !== undefined) {
        const full = path.join(real, ...rest);
        for (const r of roots) {
          const rootReal = await fs.realpath(r.path).catch(() => r.path);
          if (inside(full, rootReal)) throw vmError('INVALID_ARGUMENT', `restore target ${to} is inside the appliance's ${r.what} (${r.path}, through a symbolic link); restore to a directory outside it`);
        }
        return to;
      }
      const parent = path.dirname(existing);
      if (parent === existing) return to;
      rest.unshift(path.basename(existing));
      existing = parent;
    }
  }

  // Without VM backup the registry is empty: a name is simply not found, and only adding says why.
  private registry(): Pick<VmRegistry, 'get' | 'remove' | 'add'> {
    if (this.vmParts !== undefined) return this.vmParts.registry;
    return {
      get: (name: string) => {
        checkVmName(name);
        throw vmError('NOT_FOUND', `no VM ${JSON.stringify(name)}: this appliance was started without VM backup`, { vm: name });
      },
      remove: async (name: string) => {
        checkVmName(name);
        throw vmError('NOT_FOUND', `no VM ${JSON.stringify(name)}: this appliance was started without VM backup`, { vm: name });
      },
      add: async (req) => {
        checkNewVm(req);
        throw vmError('NOT_SUPPORTED', 'this appliance was started without VM backup');
      },
    };
  }

  private engine(): BackupEngine {
    const engine = this.vmParts?.engine;
    if (engine === undefined) throw vmError('NOT_SUPPORTED', 'this appliance has no backup service: VMs can be registered but not backed up or restored');
    return engine;
  }

  /** The workflow, when the workflows could be read; INVALID_ARGUMENT when they were and it is not among them. */
  private async checkWorkflow(name: string): Promise<{ steps: ReadonlyArray<{ action: string }> } | undefined> {
    checkWorkflowName(name);
    const load = this.vmParts?.workflows;
    if (load === undefined) return undefined;
    let known: ReadonlyMap<string, { steps: ReadonlyArray<{ action: string }> }>;
    try {
      known = await load();
    } catch {
      return undefined;
    }
    const wf = known.get(name);
    if (wf === undefined) {
      const file = this.vmParts?.workflowsFile;
      throw vmError(
        'INVALID_ARGUMENT',
        `unknown workflow ${JSON.stringify(name)}; known: ${[...known.keys()].sort().join(', ')}${file === undefined ? '' : ` (workflows are defined in ${file})`}`,
        { workflow: name },
      );
    }
    return wf;
  }

  /** The registration plus QEMU's view, probed within the bound: a silent QMP shows as unreachable. */
  private async view(vm: VmConfig): Promise<VmView> {
    const out: VmView = { name: vm.name, share: vm.share, qmp: vm.qmp, createdAt: vm.createdAt, ...(await this.state(vm)) };
    if (vm.qga !== undefined) out.qga = vm.qga;
    if (vm.pg !== undefined) out.pg = redactUrl(vm.pg);
    if (vm.workflow !== undefined) out.workflow = vm.workflow;
    if (vm.agent !== undefined) out.agent = vm.agent;
    if (vm.script !== undefined) out.script = vm.script;
    if (vm.host !== undefined) out.host = vm.host;
    if (vm.uuid !== undefined) out.uuid = vm.uuid;
    return out;
  }

  private async state(vm: VmConfig): Promise<VmState> {
    const engine = this.vmParts?.engine;
    if (engine === undefined) return { state: 'unknown', stateDetail: 'this appliance has no backup service', disks: [], lastBackup: null };
    const ms = this.vmParts?.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(vmError('IO', `QMP at ${vm.qmp} did not answer within ${ms} ms (QEMU serves one QMP client at a time: a backup of this VM or another client may hold it)`)), ms);
    });
    try {
      const st = await Promise.race([engine.status(vm.name), timeout]);
      return { state: st.state, disks: st.disks.map(({ device, format, sizeBytes, file }) => (file === undefined ? { device, format, sizeBytes } : { device, format, sizeBytes, file })), lastBackup: st.lastBackup };
    } catch (err) {
      let lastBackup: BackupRecordView | null = null;
      try {
        lastBackup = (await engine.listBackups(vm.name)).at(-1) ?? null;
      } catch {
        // The listing reads the store; if that fails too, the state says enough.
      }
      return { state: 'unreachable', stateDetail: (err as Error)?.message ?? String(err), disks: [], lastBackup };
    } finally {
      clearTimeout(timer);
    }
  }
}
