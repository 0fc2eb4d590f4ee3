// The composition root: `vmvault appliance` opens the store, mounts it, and serves the
// control plane. The only module (with appliance-services.ts) that imports every layer.
//
// Shutdown (Ctrl-C, SIGTERM): stop taking API requests, unmount (the kernel releases open
// files, which commits their data), commit whatever is still buffered, close the store. A
// second signal exits at once; the store then recovers at the next start. (A second signal
// within SIGNAL_GRACE_MS of the first is the same request twice: Ctrl-C under npm reaches us
// from the terminal and again forwarded by npm.)
//
// While running, the appliance watches its mount (fuse/mount-watch.ts): if someone unmounts it,
// it logs that and mounts it again; if it cannot, it shuts down and exits 1.

import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { HealthProbe } from './appliance-health.js';
import { ApplianceServices, VERSION } from './appliance-services.js';
import { ApplianceVms } from './appliance-vms.js';
import { ApplianceGroups } from './appliance-groups.js';
import { GroupRegistry } from './backup/groups.js';
import { ApplianceRecovery } from './appliance-recovery.js';
import { RecoveryService } from './backup/recovery/recovery-service.js';
import { AgentPool } from './backup/agent-pool.js';
import { openPolicies, type PolicyParts } from './appliance-policies.js';
import { drControl } from './appliance-dr.js';
import { wireBestCopy } from './appliance-bestcopy.js';
import { parseDuration } from './policy/durations.js';
import { BackupService } from './backup/backup-service.js';
import { Pacemaker } from './plugins/pacemaker/pacemaker.js';
import { HostHa } from './backup/host-ha.js';
import { CatalogService } from './catalog/catalog-service.js';
import { ApplianceCatalog } from './appliance-catalog.js';
import { CatalogFilesView } from './catalog/files-view.js';
import { VmRegistry } from './backup/vm-registry.js';
import { ClusterMap } from './backup/cluster-map.js';
import { HostRegistry } from './backup/host-registry.js';
import { makeQmpOpener } from './backup/qmp-open.js';
import { followVm } from './backup/vm-placement.js';
import { ApplianceHosts } from './appliance-hosts.js';
import { loadWorkflows } from './backup/workflow/workflows.js';
import { AuditLog, mountAuditRecord } from './control/audit-log.js';
import { DEFAULT_DATA_DIR, DEFAULT_LISTEN } from './control/defaults.js';
import { JobHistoryFile } from './control/job-history.js';
import { JobRunner } from './control/jobs.js';
import { isLoopback, listen } from './control/listen.js';
import { certificateSha256, ensureSelfSigned } from './control/self-signed.js';
import { buildServer } from './control/server.js';
import { ensureToken } from './control/token.js';
import { AgentTokens } from './control/agent-tokens.js';
import { TransferReceiver } from './transfer/receiver.js';
import { ReplicaService } from './control/replicas.js';
import { fromSystemError, isVmvaultError, vmError } from './errors.js';
import { LlMount } from './fuse/ll-mount.js';
import { loadFuse3 } from './fuse/ll/native.js';
import type { Mount } from './fuse/mount.js';
import { MountWatch } from './fuse/mount-watch.js';
import { Namespace } from './namespace/namespace.js';
import { SegmentStore } from './store/store.js';
import { ExportService } from './export/export-service.js';

export interface ApplianceConfig {
  data: string;
  mount: string;
  listen: string;
  /** Memory all open files may buffer before writers wait, MiB. */
  dirtyLimitMiB?: number;
  /** Free space kept on the data disk for deletes and GC, MiB (default: 1% of the disk, 64 MiB..2 GiB). */
  reserveMiB?: number;
  /**
   * Let every local user use the mount as the files' owners, groups and modes allow (FUSE
   * allow_other + default_permissions: the kernel checks permissions). Default true; false
   * keeps the mount to the user running the appliance.
   */
  allowOther?: boolean;
  /** How often the mount is checked for having vanished, ms. Default 1000. */
  mountCheckMs?: number;
  /**
   * PEM certificate and key files: the control plane then serves HTTPS, and may listen on an
   * address other than loopback (the appliance image, whose first boot makes them).
   */
  tlsCert?: string;
  tlsKey?: string;
  /** VM backup workflows (YAML); default <data>/workflows.yaml when it exists, else the built-in ones. */
  workflows?: string;
  /** Folder of plug-in executables for workflows. */
  plugins?: string;
  /** Longest a guest may stay frozen before it is thawed and the backup fails, ms. Default 10000. */
  freezeTimeoutMs?: number;
  /**
   * The FUSE binding: only 3 (the libfuse3 low-level binding) remains, accepted so that old
   * configs and command lines keep working; 2 (fuse-native, removed) is refused with a message.
   */
  fuse?: 3;
  /** External agents (issue 12): one silent this long is lost and its tasks go to another, ms. Default 15000. */
  agentLostMs?: number;
  /** Where QEMU's NBD server listens for external agents: tcp:HOST:PORT; default the UNIX socket in <data>/scratch/<vm>/. */
  agentNbdListen?: string;
  /** Exports (src/export/): NFS port (default 2049), NFSv3 MOUNT port (default 20048), SMB port (default 445). */
  nfsPort?: number;
  nfsMountPort?: number;
  smbPort?: number;
  /** Address the NFS and SMB servers listen on (default 0.0.0.0). */
  exportBind?: string;
  /** Host name or address shown in export URLs (default: the bind address, or this host's name). */
  exportHost?: string;
  /** The longest retention lock a policy may set (ms). Default 10 years. */
  maxLockMs?: number;
  /** Scheduled backups running at once. Default 2. */
  maxParallelBackups?: number;
  /**
   * This host is a Pacemaker cluster node (issue 13): VMs that are cluster resources are taken
   * offline and back around an in-place restore, with the cluster's tools run here.
   */
  pacemaker?: boolean;
}

export const DEFAULTS: ApplianceConfig = { data: DEFAULT_DATA_DIR, mount: './vmvault-mnt', listen: DEFAULT_LISTEN };

const USAGE = `usage: vmvault appliance [--data DIR] [--mount DIR] [--listen HOST:PORT] [--config FILE]
                         [--allow-other | --no-allow-other] [--tls-cert FILE --tls-key FILE]
                         [--workflows FILE] [--plugins DIR] [--freeze-timeout SECONDS] [--fuse 3]
                         [--agent-lost SECONDS] [--agent-nbd-listen tcp:HOST:PORT]
                         [--nfs-port N] [--nfs-mount-port N] [--smb-port N] [--export-bind ADDR]
                         [--export-host NAME]
                         [--max-lock DURATION] [--max-parallel-backups N] [--pacemaker]

Opens the store in DIR (default ${DEFAULTS.data}, created if missing), mounts it at the mount
point (default ${DEFAULTS.mount}) and serves the control plane (default ${DEFAULTS.listen}).
The mount is open to every local user as the files' owners and modes allow (--no-allow-other:
only the user running the appliance). With --tls-cert and --tls-key (PEM files) the control plane
serves HTTPS and may listen on any address; without them, loopback only.
VM backup: --workflows names the workflows file (default DIR/workflows.yaml when it exists,
else the built-in app-consistent and crash-consistent), --plugins a folder of plug-in
executables, --freeze-timeout how long a guest may stay frozen (default 10 s; past it the
guest is thawed and the backup fails). VMs are registered in DIR/vms.json.
The mount is served by the libfuse3 low-level binding (native/, built by node
tools/build-native.js where libfuse3-dev is installed); --fuse 3 is accepted and changes nothing.
External agents (vmvault agent): one not heard from for --agent-lost seconds (default 15) is
lost and its copies go to another; QEMU's NBD server listens for them on the VM's scratch UNIX
socket under DIR/scratch/, or on --agent-nbd-listen tcp:HOST:PORT.
Exports (vmvault export ...): nfs-ganesha on --nfs-port (default 2049; NFSv3's MOUNT protocol on
--nfs-mount-port, default 20048) and smbd on --smb-port (default 445), both
listening on --export-bind (default 0.0.0.0); URLs name --export-host (default this host's name).
Their configs and logs are in DIR/nfs and DIR/smb; exports are kept in DIR/exports.json.
Policies (DIR/policies.json): --max-lock is the longest retention lock a policy may set
(default 10y; e.g. 1y, 90d), --max-parallel-backups how many scheduled backups run at once
(default 2; more wait in a queue).
--pacemaker: this host is a Pacemaker cluster node; restore --in-place of a VM that is a cluster
resource (its vmvault-vm attribute, else its id = the VM's name) takes it offline and back.
A config file is JSON with the same keys ({"data": ..., "mount": ..., "listen": ...,
"allowOther": true, "workflows": ..., "plugins": ..., "freezeTimeoutMs": 10000}); options on
the command line win over it. Ctrl-C or SIGTERM commits open files, unmounts and exits 0.`;

const CONFIG_KEYS = ['data', 'mount', 'listen', 'dirtyLimitMiB', 'reserveMiB', 'allowOther', 'mountCheckMs', 'tlsCert', 'tlsKey', 'workflows', 'plugins', 'freezeTimeoutMs', 'fuse', 'agentLostMs', 'agentNbdListen', 'nfsPort', 'nfsMountPort', 'smbPort', 'exportBind', 'exportHost', 'maxLock', 'maxParallelBackups', 'pacemaker'];
const SIGNAL_GRACE_MS = 2000;

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString()} vmvault: ${line}\n`);
}

export async function loadConfig(argv: string[]): Promise<ApplianceConfig | 'help'> {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: 'string' },
      mount: { type: 'string' },
      listen: { type: 'string' },
      config: { type: 'string' },
      'allow-other': { type: 'boolean' },
      'no-allow-other': { type: 'boolean' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      workflows: { type: 'string' },
      plugins: { type: 'string' },
      'freeze-timeout': { type: 'string' },
      fuse: { type: 'string' },
      'agent-lost': { type: 'string' },
      'agent-nbd-listen': { type: 'string' },
      'nfs-port': { type: 'string' },
      'nfs-mount-port': { type: 'string' },
      'smb-port': { type: 'string' },
      'export-bind': { type: 'string' },
      'export-host': { type: 'string' },
      'max-lock': { type: 'string' },
      'max-parallel-backups': { type: 'string' },
      pacemaker: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  let fromFile: Partial<ApplianceConfig> = {};
  if (values.config) {
    let text: string;
    try {
      text = await fs.readFile(values.config, 'utf8');
    } catch (err) {
      throw fromSystemError(err, `reading config file ${values.config}`);
    }
    try {
      fromFile = JSON.parse(text) as Partial<ApplianceConfig>;
    } catch (err) {
      throw vmError('INVALID_ARGUMENT', `config file ${values.config} is not valid JSON: ${(err as Error).message}`);
    }
    for (const k of Object.keys(fromFile)) {
      if (!CONFIG_KEYS.includes(k)) throw vmError('INVALID_ARGUMENT', `config file ${values.config}: unknown key "${k}"`);
    }
  }
  const cfg: ApplianceConfig = {
    data: values.data ?? fromFile.data ?? DEFAULTS.data,
    mount: values.mount ?? fromFile.mount ?? DEFAULTS.mount,
    listen: values.listen ?? fromFile.listen ?? DEFAULTS.listen,
    dirtyLimitMiB: fromFile.dirtyLimitMiB,
    reserveMiB: fromFile.reserveMiB,
    allowOther: values['no-allow-other'] ? false : values['allow-other'] ? true : (fromFile.allowOther ?? true),
    mountCheckMs: fromFile.mountCheckMs,
    tlsCert: values['tls-cert'] ?? fromFile.tlsCert,
    tlsKey: values['tls-key'] ?? fromFile.tlsKey,
    workflows: values.workflows ?? fromFile.workflows,
    plugins: values.plugins ?? fromFile.plugins,
    freezeTimeoutMs: values['freeze-timeout'] !== undefined ? parseSeconds('--freeze-timeout', values['freeze-timeout']) : fromFile.freezeTimeoutMs,
    agentLostMs: values['agent-lost'] !== undefined ? parseSeconds('--agent-lost', values['agent-lost']) : fromFile.agentLostMs,
    agentNbdListen: values['agent-nbd-listen'] ?? fromFile.agentNbdListen,
    maxLockMs: ((v) => (v === undefined ? undefined : parseDuration(v, '--max-lock')))(values['max-lock'] ?? (fromFile as { maxLock?: string }).maxLock),
    maxParallelBackups: ((v) => (v === undefined ? undefined : Number(v)))(values['max-parallel-backups'] ?? fromFile.maxParallelBackups),
    fuse: (values.fuse !== undefined ? Number(values.fuse) : fromFile.fuse) as 3 | undefined,
    nfsPort: values['nfs-port'] !== undefined ? parsePort('--nfs-port', values['nfs-port']) : fromFile.nfsPort,
    nfsMountPort: values['nfs-mount-port'] !== undefined ? parsePort('--nfs-mount-port', values['nfs-mount-port']) : fromFile.nfsMountPort,
    smbPort: values['smb-port'] !== undefined ? parsePort('--smb-port', values['smb-port']) : fromFile.smbPort,
    exportBind: values['export-bind'] ?? fromFile.exportBind,
    exportHost: values['export-host'] ?? fromFile.exportHost,
    pacemaker: values.pacemaker === true || fromFile.pacemaker === true,
  };
  for (const k of ['nfsPort', 'nfsMountPort', 'smbPort'] as const) {
    const v = cfg[k];
    if (v !== undefined && !(Number.isInteger(v) && v >= 1 && v <= 65535)) throw vmError('INVALID_ARGUMENT', `${k} must be a TCP port, 1..65535`);
  }
  if (cfg.exportBind !== undefined && net.isIP(cfg.exportBind) === 0) throw vmError('INVALID_ARGUMENT', `export bind address ${JSON.stringify(cfg.exportBind)} is not an IP address`);
  if (cfg.exportHost !== undefined && !/^[A-Za-z0-9.:-]{1,253}$/.test(cfg.exportHost)) throw vmError('INVALID_ARGUMENT', `export host ${JSON.stringify(cfg.exportHost)} is not a host name or address`);
  if ((cfg.tlsCert === undefined) !== (cfg.tlsKey === undefined)) throw vmError('INVALID_ARGUMENT', 'TLS needs both a certificate (--tls-cert) and its key (--tls-key)');
  if ((cfg.fuse as number) === 2) throw vmError('INVALID_ARGUMENT', 'fuse 2 (fuse-native on libfuse 2) was removed: the mount runs on the libfuse3 binding only; drop --fuse 2 (or "fuse": 2 in the config file)');
  if (cfg.fuse !== undefined && cfg.fuse !== 3) throw vmError('INVALID_ARGUMENT', `fuse must be 3 (the libfuse3 low-level binding, the only one), not ${JSON.stringify(values.fuse ?? fromFile.fuse)}`);
  if (values['allow-other'] && values['no-allow-other']) throw vmError('INVALID_ARGUMENT', '--allow-other and --no-allow-other contradict each other');
  if (typeof cfg.allowOther !== 'boolean') throw vmError('INVALID_ARGUMENT', 'allowOther must be true or false');
  if (cfg.mountCheckMs !== undefined && !(typeof cfg.mountCheckMs === 'number' && cfg.mountCheckMs >= 50)) throw vmError('INVALID_ARGUMENT', 'mountCheckMs must be a number of milliseconds, at least 50');
  for (const k of ['dirtyLimitMiB', 'reserveMiB'] as const) {
    const v = cfg[k];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 0)) throw vmError('INVALID_ARGUMENT', `${k} must be a number of MiB`);
  }
  for (const k of ['data', 'mount', 'listen'] as const) {
    if (typeof cfg[k] !== 'string' || cfg[k].length === 0) throw vmError('INVALID_ARGUMENT', `${k} must be a non-empty string`);
  }
  for (const k of ['workflows', 'plugins'] as const) {
    const v = cfg[k];
    if (v !== undefined && (typeof v !== 'string' || v.length === 0)) throw vmError('INVALID_ARGUMENT', `${k} must be a non-empty path`);
  }
  const al = cfg.agentLostMs;
  if (al !== undefined && !(typeof al === 'number' && Number.isFinite(al) && al >= 500 && al <= 3_600_000)) {
    throw vmError('INVALID_ARGUMENT', 'agentLostMs must be a number of milliseconds from 500 to 3600000 (an hour)');
  }
  if (cfg.agentNbdListen !== undefined && (typeof cfg.agentNbdListen !== 'string' || !/^tcp:(\[[0-9A-Fa-f:.]+\]|[^:[\]]+):\d{1,5}$/.test(cfg.agentNbdListen))) {
    throw vmError('INVALID_ARGUMENT', `agentNbdListen must be tcp:HOST:PORT, not ${JSON.stringify(cfg.agentNbdListen)}`);
  }
  const mp = cfg.maxParallelBackups;
  if (mp !== undefined && !(Number.isInteger(mp) && mp >= 1 && mp <= 64)) throw vmError('INVALID_ARGUMENT', `--max-parallel-backups must be a whole number from 1 to 64, not ${JSON.stringify(values['max-parallel-backups'] ?? fromFile.maxParallelBackups)}`);
  if (cfg.maxLockMs === 0) throw vmError('INVALID_ARGUMENT', '--max-lock must be longer than 0 (policies with no lock need no maximum)');
  const ft = cfg.freezeTimeoutMs;
  if (ft !== undefined && !(typeof ft === 'number' && Number.isFinite(ft) && ft >= 100 && ft <= 600_000)) {
    throw vmError('INVALID_ARGUMENT', 'freezeTimeoutMs must be a number of milliseconds from 100 to 600000 (10 minutes)');
  }
  return cfg;
}

/** "10", "2.5" (seconds) -> milliseconds; anything else is a usage error naming the option. */
function parseSeconds(option: string, text: string): number {
  if (!/^\d+(\.\d+)?$/.test(text)) throw vmError('INVALID_ARGUMENT', `${option} ${JSON.stringify(text)}: expected a number of seconds, e.g. 10`);
  return Math.round(Number(text) * 1000);
}

function parsePort(option: string, text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) throw vmError('INVALID_ARGUMENT', `${option} ${JSON.stringify(text)}: expected a TCP port, 1..65535`);
  return Number(text);
}

export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(s);
  if (!m) throw vmError('INVALID_ARGUMENT', `--listen ${s}: expected HOST:PORT, e.g. 127.0.0.1:7070`);
  return { host: m[1] ?? m[2], port: Number(m[3]) };
}

async function readTls(certFile: string, keyFile: string): Promise<{ cert: Buffer; key: Buffer }> {
  const read = async (file: string, what: string): Promise<Buffer> => {
    try {
      return await fs.readFile(file);
    } catch (err) {
      throw fromSystemError(err, `reading the TLS ${what} ${file}`);
    }
  };
  return { cert: await read(certFile, 'certificate'), key: await read(keyFile, 'key') };
}

export interface RunningAppliance {
  url: string;
  stop(): Promise<void>;
  /** Rejects if the appliance cannot go on (its mount vanished and could not be made again). */
  failed: Promise<never>;
}

export async function startAppliance(cfg: ApplianceConfig): Promise<RunningAppliance> {
  const data = path.resolve(cfg.data);
  const mount = path.resolve(cfg.mount);
  const { host, port } = parseListen(cfg.listen);
  if (mount === data || mount.startsWith(data + path.sep)) {
    throw vmError('INVALID_ARGUMENT', `the mount point ${mount} must not be inside the data directory ${data}`);
  }
  log(`vmvault ${VERSION}: opening the store in ${data}`);
  const store = await SegmentStore.open(data, { reserveBytes: cfg.reserveMiB === undefined ? undefined : cfg.reserveMiB * 1024 * 1024 });
  if (store.recovery && (store.recovery.containersScanned > 0 || store.recovery.problems.length > 0)) {
    const r = store.recovery;
    log(`recovered from an unclean shutdown: ${r.containersScanned} container(s) checked, ${r.containersRepaired} repaired, ${r.recordsRecovered} record(s) re-indexed, ${r.bytesCut} torn byte(s) cut`);
    for (const p of r.problems) log(`recovery: ${p}`);
  }
  let ns: Namespace | undefined;
  let fuse: Mount | undefined;
  let watch: MountWatch | undefined;
  let server: Awaited<ReturnType<typeof buildServer>> | undefined;
  let jobs: JobRunner | undefined;
  let svc: ApplianceServices | undefined;
  let agents: AgentPool | undefined;
  let exportSvc: ExportService | undefined;
  let policies: PolicyParts | undefined;
  let recovery: RecoveryService | undefined;
  const audit = new AuditLog(path.join(data, 'audit.log'), { log });
  let fail: (err: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => (fail = reject));
  failed.catch(() => {});
  try {
    ns = await Namespace.open(store, { dirtyLimitBytes: cfg.dirtyLimitMiB ? cfg.dirtyLimitMiB * 1024 * 1024 : undefined, log });
    const vms = await VmRegistry.open(data);
    if (vms.list().length > 0) log(`protecting ${vms.list().length} VM(s) (${vms.file})`);
    agents = new AgentPool({ lostAfterMs: cfg.agentLostMs, log });
    // Hosts reached through their agents and the cluster map (issue 13).
    const hostList = await HostRegistry.open(data);
    const clusterMap = new ClusterMap({ pool: agents, hosts: () => hostList.list(), registered: () => vms.list(), log });
    const hosts = new ApplianceHosts(hostList, vms, agents, clusterMap);
    // How any part opens a VM's QMP: relayed through its host's agent, or its socket directly.
    const qmpOpener = makeQmpOpener({ pool: agents, agentOf: (h) => hosts.agentOf(h) });
    const backups = new BackupService(ns, vms, {
      qmpOpener,
      agentOfHost: (h) => hosts.agentOf(h),
      locate: async (name, jobLog) => void (await followVm({ vms, map: clusterMap }, name, jobLog)),
      formerHostCleared: (vm, h) => vms.forgetFormerHost(vm, h),
      dataDir: data,
      workflowsFile: cfg.workflows,
      pluginsDir: cfg.plugins,
      freezeTimeoutMs: cfg.freezeTimeoutMs,
      log,
      agents,
      ...(cfg.agentNbdListen !== undefined ? { agentNbdListen: cfg.agentNbdListen } : {}),
      ...(cfg.pacemaker ? { ha: new Pacemaker() } : {}),
      // A VM on a host: its cluster resource through that host's agent (vmvault agent --pacemaker).
      haFor: (vm) => (vm.host !== undefined ? new HostHa(agents!, hosts.agentOf(vm.host)) : undefined),
    });
    // First, before anything else can fail: a killed appliance may have left a guest frozen or a
    // database quiesced; the journal says which, and start() undoes them (and logs each).
    try {
      const lines = await backups.start();
      if (lines.length > 0) log(`quiesce journal: ${lines.length} thing(s) left quiesced by the last run were undone (see above)`);
    } catch (err) {
      log(`quiesce journal recovery failed (${isVmvaultError(err) ? err.code : 'IO'}): ${(err as Error).message}; a VM frozen by the last run may still be frozen: thaw it with its guest agent (guest-fsfreeze-thaw)`);
    }
    // The guest-file catalog (issue 15): a job of its own after each backup, never failing it.
    const catalog = new CatalogService(ns, { dataDir: data, mountPath: () => mount, log });
    const catalogApi = new ApplianceCatalog(ns, catalog, vms);
    backups.onPointCreated((e) => {
      if (!jobs) return;
      const job = jobs.start('catalog', `${e.share} point ${e.point}`, (ctx) => catalogApi.build(ctx, { share: e.share, point: e.point }));
      log(`backup ${e.vm}: catalog of ${e.point} started as job ${job.id}`);
    });
    const workflowsFile = cfg.workflows ?? (await fs.stat(path.join(data, 'workflows.yaml')).then(() => path.join(data, 'workflows.yaml'), () => undefined));
    // Read now so a malformed file is in the log at start, not only in a failed backup's job.
    // (With a plug-ins folder, a workflow may name the actions its executables declare, which only
    // the backup service knows: then the file is checked when a backup reads it.)
    if (cfg.plugins === undefined) {
      await loadWorkflows(workflowsFile).then(
        (all) => log(`workflows: ${[...all.keys()].join(', ')}${workflowsFile === undefined ? ' (built in)' : ` (${workflowsFile})`}`),
        (err) => log(`workflows: ${(err as Error).message}; backups fail until it is fixed`),
      );
    }
    const token = await ensureToken(data);
    if (token.created) log(`created the API token in ${token.file} (mode 0600)`);
    const allowOther = cfg.allowOther ?? true;
    // The libfuse3 addon is the only binding: without it (built where libfuse3-dev is) the
    // appliance refuses to start, naming what to install and run (NOT_SUPPORTED from loadFuse3).
    loadFuse3();
    // default_permissions (LlMount): the kernel checks the namespace's owners and modes for every caller.
    fuse = new LlMount(mount, ns, { mkdir: true, log, allowOther, virtual: new CatalogFilesView(ns, catalog), audit: (e) => void audit.append(mountAuditRecord(e)) });
    try {
      await fuse.mount();
    } catch (err) {
      if (allowOther && process.getuid?.() !== 0 && !isVmvaultError(err)) {
        throw vmError('IO', `${(err as Error).message} (a user other than root may use allow_other only with user_allow_other in /etc/fuse.conf; or start with --no-allow-other)`);
      }
      throw err;
    }
    log(`mounted at ${mount} (libfuse3 low-level${allowOther ? ', open to all local users as modes allow' : ', only for this user'})`);
    watch = new MountWatch(fuse, { intervalMs: cfg.mountCheckMs, log, onFailed: (err) => fail(err) });
    watch.start();
    const nsForExports = ns;
    const bind = cfg.exportBind ?? '0.0.0.0';
    exportSvc = await ExportService.open({
      dataDir: data,
      mount,
      nfsPort: cfg.nfsPort,
      nfsMountPort: cfg.nfsMountPort,
      smbPort: cfg.smbPort,
      bind,
      host: cfg.exportHost ?? (bind === '0.0.0.0' || bind === '::' ? os.hostname() : bind),
      listShares: async () => (await nsForExports.shares.list()).map((s) => s.name),
      log,
    });
    await exportSvc.start();
    const applianceVms = new ApplianceVms({
        registry: vms,
        engine: backups,
        workflows: () => loadWorkflows(workflowsFile),
        workflowsFile,
        placeVm: (req) => hosts.prepareVm(req),
        forbiddenRoots: [
          { path: mount, what: 'mount' },
          { path: data, what: 'data directory' },
        ],
      });
    svc = new ApplianceServices(ns, new HealthProbe(ns, fuse, watch, exportSvc), applianceVms);
    svc.exports = exportSvc;
    // Instant recovery (issue 14): VMs run by QEMU from clones on this mount.
    recovery = new RecoveryService(ns, vms, {
      dataDir: data,
      mountPath: mount,
      forbiddenRoots: [
        { path: mount, what: 'mount' },
        { path: data, what: 'data directory' },
      ],
      points: (vm) => backups.listBackups(vm),
      log,
    });
    await recovery.start();
    svc.recovery = new ApplianceRecovery(recovery);
    const history = new JobHistoryFile(path.join(data, 'jobs.json'), log);
    jobs = new JobRunner({
      persist: history,
      onInternalError: (job, err) => log(`${job.kind} job ${job.id} failed unexpectedly: ${(err as Error)?.stack ?? String(err)}`),
    });
    await jobs.restore();
    let tls = cfg.tlsCert !== undefined && cfg.tlsKey !== undefined ? await readTls(cfg.tlsCert, cfg.tlsKey) : undefined;
    if (tls === undefined && !isLoopback(host)) {
      // Beyond loopback the token (an agent's too) must not cross in clear: a certificate of our own.
      const own = await ensureSelfSigned(data, host);
      if (own.created) log(`made a self-signed TLS certificate in ${own.certFile} (replace it and its key to use another)`);
      tls = { cert: own.cert, key: own.key };
    }
    if (tls !== undefined) log(`TLS certificate SHA-256 ${certificateSha256(tls.cert)} (agents pin it: vmvault agent --pin ...)`);
    // VM groups (issue 13): <data>/groups.json; a removed VM leaves every group that lists it.
    // Made before the policies, which assign groups and run their group backups; a group a
    // policy names cannot be removed (the policy would lose its VMs' schedule silently).
    const groupRegistry = await GroupRegistry.open(data);
    applianceVms.onVmRemoved(async (vm) => {
      const changed = await groupRegistry.forgetVm(vm);
      if (changed.length > 0) log(`VM ${vm} removed from group(s) ${changed.join(', ')}`);
    });
    const groups = new ApplianceGroups({
      groups: groupRegistry,
      vms: () => vms.list(),
      engine: backups,
      checkBackup: (vm, req) => applianceVms.checkBackup(vm, req),
      usedBy: (g) => policies?.service.policyOfGroup(g),
    });
    // The DR copy resolves destination names through the policies' registry, made just below.
    const dr = drControl({ data, store, mount, resolve: (to) => policies!.resolveDr(to) });
    policies = await openPolicies({ data, ns, vms, backups, jobs, svc, maxLockMs: cfg.maxLockMs, maxParallel: cfg.maxParallelBackups, dr, groups: { members: (g) => groups.members(g), control: groups }, log });
    const policyService = policies.service;
    // Restore from the best copy and verify --repair read damage from the recorded clone copies.
    wireBestCopy({ ns, backups, svc, vms, copies: policies.clones });
    applianceVms.onVmRemoved((vm) => policyService.vmRemoved(vm));
    const agentTokens = await AgentTokens.load(data);
    // An agent token writes only the file of a task the pool gave one of its agents (issue 12).
    const pool = agents;
    // A replication token (another appliance's clone copies, issue 14) writes only its own clone targets.
    const replicas = await ReplicaService.open(ns, data);
    svc.transfer = new TransferReceiver(ns, {
      log,
      authorize: (caller, share, file, taskId) => {
        if (caller.kind === 'agent' && caller.replication === true) replicas.authorize({ admin: false, name: caller.name }, share);
        else if (caller.kind === 'agent') pool.authorizeTransfer(caller.name, share, file, taskId);
      },
    });
    server = await buildServer(svc, { token: token.token, jobs, audit, tls, agentTokens, agents, catalog: catalogApi, policies: policies.service, hosts, groups, replicas, clones: policies.clones, dr });
    // A run missed while the appliance was down starts now (once); before the "control plane at"
    // line, which is what supervisors and tests wait for.
    await policies.scheduler.start();
    await policies.cloneScheduler.start();
    await policies.drScheduler?.start();
    const unbuilt = await catalogApi.uncataloged();
    const url = await listen(server, { host, port, tls: tls !== undefined });
    log(`control plane at ${url}/api/v1 (token in ${token.file})`);
    // Catalogs a stop left unbuilt (issue 15: every backup is cataloged): the build after a
    // backup is a job of its own, so an appliance stopped before or during it left a point
    // without one, and nothing else would build it. After the control plane is up: the builds
    // share the event loop, and the start is not held back by them. (Which points, is known
    // before the line, so the line and the job's come together.)
    if (unbuilt.length > 0) {
      const n = unbuilt.reduce((k, s) => k + s.points.length, 0);
      const job = jobs.start('catalog', `${n} restore point(s) left without a catalog`, (ctx) => catalogApi.buildAll(ctx, unbuilt));
      log(`catalog: ${n} restore point(s) have no catalog (${unbuilt.map((s) => `${s.share}: ${s.points.length}`).join(', ')}); building them as job ${job.id}`);
    }
    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopping ??= (async () => {
        svc!.closing = true;
        log('shutting down: committing open files and unmounting');
        await watch!.stop();
        agents!.close();
        policies!.scheduler.stop();
        policies!.cloneScheduler.stop();
        policies!.drScheduler?.stop();
        await server!.close().catch((err) => log(`closing the control plane: ${(err as Error).message}`));
        await jobs!.close().catch((err) => log(`stopping jobs: ${(err as Error).message}`));
        await policies!.scheduler.settled().catch((err) => log(`policy run history: ${(err as Error).message}`));
        await policies!.cloneScheduler.settled().catch((err) => log(`clone run history: ${(err as Error).message}`));
        await policies!.drScheduler?.settled().catch((err) => log(`DR copy run history: ${(err as Error).message}`));
        await svc!.transfer?.close().catch((err) => log(`closing transfer sessions: ${(err as Error).message}`));
        await catalog.close().catch((err) => log(`closing the catalog: ${(err as Error).message}`));
        await audit.close();
        // Recovered VMs still on the mount hold its files open too (migrated ones run on).
        await recovery!.close().catch((err) => log(`stopping recovered VMs: ${(err as Error).message}`));
        // The export servers hold files of the mount open: they go before the unmount.
        await exportSvc!.close().catch((err) => log(`stopping the export servers: ${(err as Error).message}`));
        if (fuse!.mounted) await fuse!.unmount().catch((err) => log(`unmounting ${mount}: ${(err as Error).message}`));
        await ns!.close();
        await store.close();
        log('stopped cleanly');
      })());
    return { url, stop, failed };
  } catch (err) {
    await watch?.stop();
    agents?.close();
    policies?.scheduler.stop();
    await server?.close().catch(() => {});
    await jobs?.close().catch(() => {});
    await recovery?.close().catch(() => {});
    await exportSvc?.close().catch(() => {});
    if (fuse?.mounted) await fuse.unmount().catch(() => {});
    await ns?.close().catch(() => {});
    await store.close().catch(() => {});
    throw err;
  }
}

/**
 * Started by npm (npx, npm start) through a shell that does not pass signals on: SIGTERM to npm
 * reaches the shell, which dies and leaves us running, reparented. Seeing our parent change is
 * then the only news of the stop request, so it counts as one. (The project's .npmrc makes npm
 * use bash, which execs the command, so npm signals us directly; this covers npm run elsewhere.)
 * Not without npm: a shell closed behind `nohup node bin/vmvault.js appliance &` is no stop.
 */
function watchLauncher(onGone: () => void): void {
  if (process.env.npm_command === undefined) return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer);
      onGone();
    }
  }, 500);
  timer.unref();
}

/** `vmvault appliance [options]`: runs until a signal. */
export async function main(argv: string[]): Promise<number> {
  let cfg: ApplianceConfig | 'help';
  try {
    cfg = await loadConfig(argv);
  } catch (err) {
    process.stderr.write(`vmvault appliance: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (cfg === 'help') {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  let app: RunningAppliance;
  try {
    app = await startAppliance(cfg);
  } catch (err) {
    const code = isVmvaultError(err) ? err.code : 'IO';
    log(`cannot start (${code}): ${(err as Error).message}`);
    return 1;
  }
  let firstSignalAt = 0;
  const signalled = new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      const now = Date.now();
      if (firstSignalAt !== 0) {
        if (now - firstSignalAt < SIGNAL_GRACE_MS) return;
        log(`${sig} again: exiting without a clean shutdown (the store recovers at the next start)`);
        process.exit(130);
      }
      firstSignalAt = now;
      log(`${sig}: stopping`);
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    watchLauncher(() => {
      if (firstSignalAt !== 0) return;
      firstSignalAt = Date.now();
      log('the npm process that started the appliance went away: stopping');
      resolve();
    });
  });
  let code = 0;
  try {
    await Promise.race([signalled, app.failed]);
  } catch (err) {
    log(`stopping: ${(err as Error).message}`);
    code = 1;
  }
  try {
    await app.stop();
  } catch (err) {
    log(`shutdown failed: ${(err as Error).message}`);
    return 1;
  }
  return code;
}
