// Instant recovery (issue 14): a VM started straight from a restore point, and later moved to
// production storage while it runs.
//
// recover VM [--point P] [--name N], step beside its undo:
//   the point exists and its vm.json is sound (read through the namespace)   -
//   name N free (no share, no recovery)                                      -
//   writable clone N of the point (namespace: instant, shares every segment) share N removed
//   QEMU started from vm.json, disks = <mount>/N/<device>.raw                QEMU killed
//   QMP answers, status running                                               -
//   record <data>/recover/N/recovery.json                                     -
//
// QEMU is a process of its own that reads and writes the clone through the FUSE mount, which this
// process serves: the appliance never opens the clone's files through the mount itself (it would
// wait on its own event loop), and it never waits synchronously on QEMU. The guest's writes land in
// the clone; the point stays as it was.
//
// recover --migrate --to DIR: blockdev-mirror of every disk to DIR/<device>.<format> (see
// plugins/qemu/mirror.ts), pivot, the old nodes deleted; then nothing of QEMU's block graph and
// no file descriptor of QEMU points into the mount, which is checked, so the clone may be dropped
// and the mount unmounted without touching the VM.
//
// Supervision: a recovered VM on the mount is stopped when the appliance stops (its disks go away
// with the mount); a migrated one is left running (it is production now) and adopted again by pid
// at the next start.

import { type ChildProcess, spawn } from 'node:child_process';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, isVmvaultError, vmError } from '../../errors.js';
import type { Namespace } from '../../namespace/namespace.js';
import { validateName } from '../../namespace/names.js';
import { kvmUsable } from '../../plugins/qemu/kvm-probe.js';
import { mirrorDisks, nodesUnder } from '../../plugins/qemu/mirror.js';
import { QmpClient } from '../../plugins/qemu/qmp.js';
import { checkVmJson, launchPlan, type VmJson } from '../../plugins/qemu/vm-launch.js';
import type { BackupProgress, VmLookup } from '../backup-service.js';
import { type RecoveryRecord, RECOVERY_VERSION, readRecords, recoveryDir, writeRecord } from './recovery-records.js';

export interface RecoveryView {
  name: string;
  vm: string;
  point: string;
  /** The clone share the VM runs from (same as name). */
  clone: string;
  state: 'running' | 'migrated' | 'stopped';
  pid: number | null;
  /** unix:<data>/recover/<name>/qmp.sock */
  qmp: string;
  qga: string;
  console: string;
  startedAt: string;
  disks: Array<{ device: string; file: string }>;
  notes: string[];
  migratedTo?: string;
  migratedAt?: string;
}

export interface RecoverOptions {
  point?: string;
  /** The recovery's name and its clone share's; default `<vm>-recovery`. */
  name?: string;
}

export interface MigrateOptions {
  /** Absolute directory on the appliance host, outside the mount and the data directory. */
  to: string;
  /** Default qcow2. */
  format?: 'raw' | 'qcow2';
}

export interface RecoveryServiceOptions {
  dataDir: string;
  /** Where the namespace is mounted (QEMU opens the clone's files under it). */
  mountPath: string;
  /** Directories a migration must not write into (the mount, the data directory). */
  forbiddenRoots?: Array<{ path: string; what: string }>;
  /** The points of a VM (the backup service's listBackups: records whose snapshot exists). */
  points(vm: string): Promise<Array<{ point: string }>>;
  log?: (l: string) => void;
  qemuBinary?: string;
  /** Use KVM (true) or TCG (false); default: KVM where kvm-probe.ts finds it able to run the VM. */
  kvm?: boolean;
  /** How long QEMU may take to answer on QMP after it starts. Default 30 s. */
  startTimeoutMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export class RecoveryService {
  private readonly records = new Map<string, RecoveryRecord>();
  /** Names taken by a recovery being set up (before its record exists). */
  private readonly reserved = new Set<string>();
  /** Names whose VM a job is migrating or stopping. */
  private readonly busy = new Set<string>();
  private readonly children = new Map<string, ChildProcess>();
  private readonly log: (l: string) => void;

  constructor(
    private readonly ns: Namespace,
    private readonly vms: VmLookup,
    private readonly opts: RecoveryServiceOptions,
  ) {
    this.log = opts.log ?? (() => {});
  }

  /** Loads the records a previous run left; a VM whose QEMU is gone shows as stopped. */
  async start(): Promise<void> {
    for (const r of await readRecords(this.opts.dataDir, this.log)) {
      if (r.state !== 'stopped' && !this.isOurQemu(r)) {
        r.state = 'stopped';
        await writeRecord(this.opts.dataDir, r).catch(() => {});
      }
      this.records.set(r.name, r);
      this.log(`instant recovery ${r.name} (${r.vm} at ${r.point}): ${r.state}${r.state === 'stopped' ? '' : `, QEMU pid ${r.pid}`}`);
    }
  }

  /** The pid still runs QEMU with this recovery's QMP socket (a pid reused by another process is not ours). */
  private isOurQemu(r: RecoveryRecord): boolean {
    if (!alive(r.pid)) return false;
    try {
      const cmd = fsSync.readFileSync(`/proc/${r.pid}/cmdline`, 'utf8');
      return cmd.includes(path.join(recoveryDir(this.opts.dataDir, r.name), 'qmp.sock'));
    } catch {
      return false;
    }
  }

  list(): RecoveryView[] {
    return [...this.records.values()].sort((a, b) => a.name.localeCompare(b.name)).map((r) => this.view(r));
  }

  get(name: string): RecoveryView {
    return this.view(this.record(name));
  }

  private record(name: string): RecoveryRecord {
    validateName('share', name);
    const r = this.records.get(name);
    if (r === undefined) throw vmError('NOT_FOUND', `no instant recovery named ${JSON.stringify(name)} (vmvault recover list shows them)`, { recovery: name });
    return r;
  }

  private view(r: RecoveryRecord): RecoveryView {
    const dir = recoveryDir(this.opts.dataDir, r.name);
    const running = r.state !== 'stopped' && alive(r.pid);
    return {
      name: r.name,
      vm: r.vm,
      point: r.point,
      clone: r.name,
      state: running ? r.state : 'stopped',
      pid: running ? r.pid : null,
      qmp: `unix:${path.join(dir, 'qmp.sock')}`,
      qga: `unix:${path.join(dir, 'qga.sock')}`,
      console: path.join(dir, 'console.log'),
      startedAt: r.startedAt,
      disks: r.disks.map((d) => ({ device: d.device, file: d.file })),
      notes: r.notes,
      ...(r.migratedTo !== undefined ? { migratedTo: r.migratedTo } : {}),
      ...(r.migratedAt !== undefined ? { migratedAt: r.migratedAt } : {}),
    };
  }

  /** What recover() would refuse at once: unknown VM or point, a name in use. Returns the point and name. */
  async check(vm: string, o: RecoverOptions): Promise<{ point: string; name: string }> {
    const cfg = this.vms.get(vm);
    const name = o.name ?? `${vm}-recovery`;
    validateName('share', name);
    if (o.point !== undefined) validateName('snapshot', o.point);
    const points = await this.opts.points(vm);
    if (points.length === 0) throw vmError('NOT_FOUND', `VM ${vm} has no restore point to recover from (vmvault backup ${vm} makes one)`, { vm });
    const point = o.point ?? points.at(-1)!.point;
    if (!points.some((p) => p.point === point)) {
      throw vmError('NOT_FOUND', `VM ${vm} has no restore point ${JSON.stringify(point)} (vmvault backup list ${vm} shows them)`, { vm, point });
    }
    if (this.records.has(name) || this.reserved.has(name)) {
      throw vmError('ALREADY_EXISTS', `an instant recovery named ${name} exists already; choose another with --name, or stop it (vmvault recover stop ${name} --drop-clone)`, { recovery: name });
    }
    const exists = await this.ns.shares.get(name).then(() => true, (err) => {
      if (isVmvaultError(err, 'NOT_FOUND')) return false;
      throw err;
    });
    if (exists) throw vmError('ALREADY_EXISTS', `a share named ${name} exists already; recover under another name with --name`, { share: name });
    void cfg;
    return { point, name };
  }

  async recover(vm: string, o: RecoverOptions, p: BackupProgress): Promise<RecoveryView> {
    const { point, name } = await this.check(vm, o);
    this.reserved.add(name);
    try {
      return await this.recoverNow(vm, point, name, p);
    } finally {
      this.reserved.delete(name);
    }
  }

  private async recoverNow(vm: string, point: string, name: string, p: BackupProgress): Promise<RecoveryView> {
    const t0 = performance.now();
    const share = this.vms.get(vm).share;
    p.phase('clone');
    const desc = await this.readVmJson(share, point);
    await this.ns.snapshots.clone(share, point, name);
    let child: ChildProcess | undefined;
    try {
      const disks = [];
      for (const d of desc.disks) {
        const inClone = `/${name}/${d.device}.raw`;
        const attr = await this.ns.fs.getattr(inClone).catch((err) => {
          if (isVmvaultError(err, 'NOT_FOUND')) throw vmError('CORRUPT_RECORD', `point ${point} of ${vm} has no ${d.device}.raw although its vm.json lists disk ${d.device}`, { vm, point });
          throw err;
        });
        if (attr.size !== d.sizeBytes) p.log(`${d.device}: ${attr.size} bytes in the point, vm.json says ${d.sizeBytes}`);
        disks.push({ device: d.device, file: path.join(this.opts.mountPath, name, `${d.device}.raw`), readOnly: d.readOnly === true });
      }
      p.log(`clone ${name} of ${share}/${point}: ${(performance.now() - t0).toFixed(0)} ms`);
      if (p.signal.aborted) throw vmError('CANCELLED', 'the recovery was cancelled before QEMU started; the clone is removed');
      const dir = recoveryDir(this.opts.dataDir, name);
      await fs.rm(dir, { recursive: true, force: true });
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      const qemu = this.opts.qemuBinary ?? 'qemu-system-x86_64';
      const kvm = this.opts.kvm !== undefined
        ? { usable: this.opts.kvm, reason: 'KVM is switched off for recoveries: the VM runs under TCG (software emulation)' }
        : await kvmUsable(qemu);
      const plan = launchPlan(desc, disks, { dir, name, kvm });
      for (const n of plan.notes) p.log(n);
      p.phase('start');
      const errLog = await fs.open(path.join(dir, 'qemu.log'), 'w');
      try {
        // Detached: a migrated VM outlives the appliance (one still on the mount is stopped by close()).
        child = spawn(qemu, plan.argv, { detached: true, stdio: ['ignore', 'ignore', errLog.fd] });
      } finally {
        await errLog.close();
      }
      const c = child;
      let exited: string | null = null;
      c.on('exit', (code, sig) => {
        exited = `exit ${code ?? sig}`;
        this.children.delete(name);
      });
      c.on('error', (err) => (exited = err.message));
      c.unref();
      if (c.pid === undefined) throw vmError('IO', `QEMU did not start: ${await sleep(50).then(() => exited ?? 'no pid')}`);
      this.children.set(name, c);
      const deadline = Date.now() + (this.opts.startTimeoutMs ?? 30_000);
      for (;;) {
        if (exited !== null) {
          const why = await fs.readFile(path.join(dir, 'qemu.log'), 'utf8').catch(() => '');
          throw vmError('IO', `QEMU exited at start (${exited}): ${why.trim().slice(-2000) || 'no message'}`);
        }
        try {
          const qmp = await QmpClient.connect(`unix:${plan.qmpSocket}`, { timeoutMs: 2000 });
          try {
            const st = await qmp.execute<{ status: string }>('query-status');
            p.log(`QEMU pid ${c.pid} ${st.status}: ${(performance.now() - t0).toFixed(0)} ms after the command`);
          } finally {
            await qmp.close();
          }
          break;
        } catch (err) {
          if (p.signal.aborted) throw vmError('CANCELLED', 'the recovery was cancelled; QEMU is stopped and the clone removed');
          if (Date.now() > deadline) throw vmError('TIMEOUT', `QEMU did not answer on ${plan.qmpSocket} within ${this.opts.startTimeoutMs ?? 30_000} ms: ${(err as Error).message}`);
          await sleep(50);
        }
      }
      const rec: RecoveryRecord = {
        version: RECOVERY_VERSION,
        name,
        vm,
        point,
        share,
        startedAt: new Date().toISOString(),
        pid: c.pid,
        argv: plan.argv,
        disks: plan.nodes.map((n) => ({ device: n.device, file: n.file, node: n.node, fileNode: n.fileNode })),
        notes: plan.notes,
        state: 'running',
      };
      await writeRecord(this.opts.dataDir, rec);
      this.records.set(name, rec);
      this.log(`instant recovery ${name}: ${vm} at ${point} runs from the mount (QEMU pid ${c.pid})`);
      return this.view(rec);
    } catch (err) {
      if (child?.pid !== undefined && alive(child.pid)) {
        child.kill('SIGKILL');
        await this.waitGone(child.pid, 5000);
      }
      this.children.delete(name);
      await fs.rm(recoveryDir(this.opts.dataDir, name), { recursive: true, force: true }).catch(() => {});
      await this.ns.shares.remove(name, { force: true, deleteSnapshots: false }).catch((e) => p.log(`removing the clone ${name} failed: ${(e as Error).message}`));
      throw err;
    }
  }

  /** vm.json of a point, through the namespace (never the mount). */
  private async readVmJson(share: string, point: string): Promise<VmJson> {
    const file = `/${share}/.snapshots/${point}/vm.json`;
    let text: string;
    try {
      const size = (await this.ns.fs.getattr(file)).size;
      if (size > 1 << 20) throw vmError('INVALID_ARGUMENT', `${file} is ${size} bytes; a vm.json is a few KiB`);
      const fh = await this.ns.fs.open(file, 0);
      try {
        text = (await this.ns.fs.read(fh, 0, size)).toString('utf8');
      } finally {
        await this.ns.fs.release(fh);
      }
    } catch (err) {
      if (isVmvaultError(err, 'NOT_FOUND')) throw vmError('NOT_FOUND', `point ${share}/${point} has no vm.json: it does not say how to start the VM`, { share, point });
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw vmError('INVALID_ARGUMENT', `${share}/${point}/vm.json is not JSON: ${(err as Error).message}`);
    }
    return checkVmJson(parsed, `${share}/${point}/vm.json`);
  }

  private async waitGone(pid: number, ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (alive(pid)) {
      // A child of ours is a zombie until reaped; node reaps it on its exit event.
      try {
        const st = fsSync.readFileSync(`/proc/${pid}/stat`, 'utf8');
        if (/\) Z /.test(st)) return true;
      } catch {
        return true;
      }
      if (Date.now() > until) return false;
      await sleep(100);
    }
    return true;
  }

  /** Stops QEMU (quit, SIGKILL after `graceMs`) if it runs, then forgets the recovery; the clone stays unless dropClone. */
  async stop(name: string, o: { dropClone?: boolean } = {}): Promise<{ name: string; clone: 'kept' | 'dropped' }> {
    const r = this.record(name);
    if (this.busy.has(name)) throw vmError('CONFLICT', `instant recovery ${name} is being migrated or stopped; wait for that job`, { recovery: name });
    this.busy.add(name);
    try {
      await this.stopQemu(r, 10_000);
      if (o.dropClone) await this.ns.shares.remove(name, { force: true, deleteSnapshots: false });
      this.records.delete(name);
      await fs.rm(recoveryDir(this.opts.dataDir, name), { recursive: true, force: true });
      this.log(`instant recovery ${name}: stopped, clone ${o.dropClone ? 'dropped' : 'kept'}`);
      return { name, clone: o.dropClone ? 'dropped' : 'kept' };
    } finally {
      this.busy.delete(name);
    }
  }

  /**
   * Forgets a migrated recovery without touching its VM (it runs from the migration's target), and
   * drops the clone when asked. Refused for a VM still on the mount.
   */
  async release(name: string, o: { dropClone?: boolean } = {}): Promise<{ name: string; clone: 'kept' | 'dropped'; pid: number | null }> {
    const r = this.record(name);
    if (r.state !== 'migrated') throw vmError('INVALID_ARGUMENT', `instant recovery ${name} still runs from the mount; migrate it first (vmvault recover ${r.vm} --migrate --name ${name} --to DIR) or stop it`, { recovery: name });
    if (this.busy.has(name)) throw vmError('CONFLICT', `instant recovery ${name} is busy; wait for its job`, { recovery: name });
    if (o.dropClone) await this.ns.shares.remove(name, { force: true, deleteSnapshots: false });
    this.records.delete(name);
    // The directory keeps QEMU's sockets: the VM goes on using them.
    await fs.rm(path.join(recoveryDir(this.opts.dataDir, name), 'recovery.json'), { force: true });
    this.log(`instant recovery ${name}: released (QEMU pid ${r.pid} runs on from ${r.migratedTo}), clone ${o.dropClone ? 'dropped' : 'kept'}`);
    return { name, clone: o.dropClone ? 'dropped' : 'kept', pid: alive(r.pid) ? r.pid : null };
  }

  private async stopQemu(r: RecoveryRecord, graceMs: number): Promise<void> {
    if (r.state === 'stopped' || !this.isOurQemu(r)) return;
    try {
      const qmp = await QmpClient.connect(`unix:${path.join(recoveryDir(this.opts.dataDir, r.name), 'qmp.sock')}`, { timeoutMs: 3000 });
      await qmp.execute('quit').catch(() => {});
      await qmp.close();
    } catch (err) {
      this.log(`instant recovery ${r.name}: quit over QMP failed (${(err as Error).message}); killing pid ${r.pid}`);
    }
    if (!(await this.waitGone(r.pid, graceMs))) {
      try {
        process.kill(r.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      await this.waitGone(r.pid, 5000);
    }
    r.state = 'stopped';
  }

  /** What migrate() would refuse at once. Returns the canonical target directory. */
  async checkMigrate(name: string, o: MigrateOptions): Promise<string> {
    const r = this.record(name);
    if (o.format !== undefined && o.format !== 'raw' && o.format !== 'qcow2') throw vmError('INVALID_ARGUMENT', `migrate format must be raw or qcow2, not ${JSON.stringify(o.format)}`);
    if (r.state === 'migrated') throw vmError('INVALID_ARGUMENT', `instant recovery ${name} was migrated already (to ${r.migratedTo})`, { recovery: name });
    if (r.state === 'stopped' || !this.isOurQemu(r)) throw vmError('INVALID_ARGUMENT', `instant recovery ${name} is not running; only a running recovered VM can be migrated`, { recovery: name });
    if (this.busy.has(name)) throw vmError('CONFLICT', `instant recovery ${name} is being migrated or stopped already`, { recovery: name });
    const to = await this.checkTarget(o.to);
    const format = o.format ?? 'qcow2';
    for (const d of r.disks) {
      const f = path.join(to, `${d.device}.${format}`);
      if (await fs.stat(f).then(() => true, () => false)) throw vmError('ALREADY_EXISTS', `${f} exists; migrate into a directory without it`, { file: f });
    }
    return to;
  }

  /** An absolute, writable directory outside the mount and the data directory (made when missing). */
  private async checkTarget(to: unknown): Promise<string> {
    if (typeof to !== 'string' || to === '') throw vmError('INVALID_ARGUMENT', 'migrate needs a target directory (--to DIR)');
    if (!path.isAbsolute(to)) throw vmError('INVALID_ARGUMENT', `migrate target ${to} must be an absolute path`);
    const dir = path.resolve(to);
    const inside = (p: string, root: string) => p === root || p.startsWith(root.endsWith('/') ? root : `${root}/`);
    // By name first: no file system call at all for a path under the mount.
    for (const r of this.opts.forbiddenRoots ?? []) {
      if (inside(dir, r.path)) throw vmError('INVALID_ARGUMENT', `migrate target ${dir} is inside the appliance's ${r.what} (${r.path}); production storage is elsewhere`);
    }
    let st: fsSync.Stats | undefined;
    try {
      st = await fs.stat(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, `migrate target ${dir}`);
    }
    if (st !== undefined && !st.isDirectory()) throw vmError('INVALID_ARGUMENT', `migrate target ${dir} is not a directory`);
    if (st === undefined) await fs.mkdir(dir, { recursive: true }).catch((err) => {
      throw vmError('INVALID_ARGUMENT', `migrate target ${dir} cannot be made: ${(err as Error).message}`);
    });
    const real = await fs.realpath(dir);
    for (const r of this.opts.forbiddenRoots ?? []) {
      const rootReal = await fs.realpath(r.path).catch(() => r.path);
      if (inside(real, rootReal)) throw vmError('INVALID_ARGUMENT', `migrate target ${dir} is inside the appliance's ${r.what} (${r.path}, through a symbolic link)`);
    }
    // Writable for real (root passes access(2) checks on a read-only file system): a probe file.
    const probe = path.join(dir, `.vmvault-probe-${process.pid}-${Date.now()}`);
    try {
      await fs.writeFile(probe, '');
      await fs.rm(probe, { force: true });
    } catch (err) {
      throw vmError('INVALID_ARGUMENT', `migrate target ${dir} is not writable: ${(err as Error).message}`);
    }
    return dir;
  }

  async migrate(name: string, o: MigrateOptions, p: BackupProgress): Promise<RecoveryView> {
    const to = await this.checkMigrate(name, o);
    const r = this.record(name);
    const format = o.format ?? 'qcow2';
    this.busy.add(name);
    try {
      const t0 = performance.now();
      p.phase('mirror');
      const qmp = await QmpClient.connect(`unix:${path.join(recoveryDir(this.opts.dataDir, name), 'qmp.sock')}`, { timeoutMs: 10_000 });
      try {
        const blocks = await qmp.execute<Array<{ qdev?: string; inserted?: { 'node-name': string; image: { 'virtual-size': number } } }>>('query-block');
        const disks = r.disks.map((d) => {
          const b = blocks.find((x) => x.inserted?.['node-name'] === d.node);
          if (!b?.inserted) throw vmError('CONFLICT', `${name}: disk ${d.device} is no longer on node ${d.node} (query-block); was it changed by hand?`);
          return { device: d.device, node: d.node, fileNode: d.fileNode, sizeBytes: b.inserted.image['virtual-size'], target: path.join(to, `${d.device}.${format}`) };
        });
        // The mirror's total grows while the guest writes (new dirty bytes must be copied too), so
        // the job's total follows it rather than keeping the first figure.
        let lastTotal = 0;
        let last = 0;
        const moved = await mirrorDisks(qmp, disks, format, {
          signal: p.signal,
          log: (l) => p.log(l),
          bytes: (done, total) => {
            if (total > 0 && total !== lastTotal) {
              p.total(total, 'bytes');
              lastTotal = total;
            }
            if (done > last) {
              p.advance(done - last);
              last = done;
            }
          },
        });
        p.phase('check');
        const still = await nodesUnder(qmp, this.opts.mountPath);
        const fds = this.fdsUnderMount(r.pid);
        if (still.length > 0 || fds.length > 0) {
          throw vmError('IO', `${name}: after the pivot QEMU still uses the mount (${[...still, ...fds].join(', ')})`);
        }
        r.disks = moved.map((m) => ({ device: m.device, file: m.file, node: m.node }));
        r.state = 'migrated';
        r.migratedTo = to;
        r.migratedAt = new Date().toISOString();
        await writeRecord(this.opts.dataDir, r);
        p.log(`migrated ${name} to ${to} in ${((performance.now() - t0) / 1000).toFixed(1)} s; the VM no longer uses the mount (vmvault recover release ${name} --drop-clone drops the clone)`);
        this.log(`instant recovery ${name}: migrated to ${to}`);
        return this.view(r);
      } finally {
        await qmp.close();
      }
    } finally {
      this.busy.delete(name);
    }
  }

  /** QEMU's open files under the mount, from /proc (readlink names the path; nothing is opened through the mount). */
  private fdsUnderMount(pid: number): string[] {
    const root = this.opts.mountPath.endsWith('/') ? this.opts.mountPath : `${this.opts.mountPath}/`;
    const out: string[] = [];
    let fds: string[] = [];
    try {
      fds = fsSync.readdirSync(`/proc/${pid}/fd`);
    } catch {
      return out;
    }
    for (const fd of fds) {
      try {
        const target = fsSync.readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (target.startsWith(root)) out.push(target);
      } catch {
        // closed meanwhile
      }
    }
    return out;
  }

  /** At appliance stop: every VM still on the mount is stopped (its disks go with the mount); migrated ones run on. */
  async close(): Promise<void> {
    for (const r of this.records.values()) {
      if (r.state !== 'running') continue;
      await this.stopQemu(r, 10_000).catch((err) => this.log(`instant recovery ${r.name}: stopping failed: ${(err as Error).message}`));
      await writeRecord(this.opts.dataDir, r).catch(() => {});
      this.log(`instant recovery ${r.name}: stopped with the appliance (its clone stays; vmvault recover stop ${r.name} --drop-clone removes it)`);
    }
  }
}
