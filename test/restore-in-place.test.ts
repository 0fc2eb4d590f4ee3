// Restore in place (issue 13) with a real QEMU, a real store, and for the HA cases a real
// three-node Pacemaker cluster (test/helpers/pacemaker.ts) whose ocf:pacemaker:Dummy resource is
// tagged with the VM:
// - without a cluster: a running VM is refused (its disk untouched); a stopped one gets the
//   point's bytes in the very file it uses (found from the point's vm.json);
// - a disk that is no plain file is refused before anything happens;
// - a VM on a host: its disk is written through the host's agent (the agent's real request
//   table behind the real AgentPool), only data runs travel; a malformed agent answer and a disk
//   outside the agent's --in-place-dir folders are refused before anything is written;
// - an HA VM: its resource is taken offline, the disk becomes the point's, the resource comes
//   back online, and the job log says each step in order;
// - a restore that fails midway (QEMU still runs after its resource stopped; a cancel while the
//   disk is written) leaves the disk as it was, no partial file, and the resource back online.
// A Dummy resource does not stop QEMU, as a VirtualDomain resource would: where a test needs the
// VM to stop with its resource, a watcher stands in for the resource agent and stops QEMU when
// the cluster reports the resource Stopped (said at each use).

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { BackupService, type VmConfigLike } from '../src/backup/backup-service.js';
import { isVmvaultError } from '../src/errors.js';
import { HostRequestTable } from '../src/agent/host-requests.js';
import { InPlaceRequests } from '../src/agent/in-place-requests.js';
import { AgentPool } from '../src/backup/agent-pool.js';
import { HostInPlaceFiles } from '../src/backup/host-in-place.js';
import { restoreInPlace } from '../src/backup/restore-in-place.js';
import type { Namespace } from '../src/namespace/namespace.js';
import { localRunner } from '../src/plugins/pacemaker/command-runner.js';
import { Pacemaker } from '../src/plugins/pacemaker/pacemaker.js';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { DiskModel, progress, sha, vmLookup } from './helpers/backup.js';
import { openNs } from './helpers/ns.js';
import { pacemakerAvailable, startPacemakerCluster } from './helpers/pacemaker.js';
import { qemuIo, startQemu, type TestQemu } from './helpers/qemu.js';
import { runTool } from './helpers/run-tool.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

interface Rig {
  dir: string;
  ns: Namespace;
  vm: VmConfigLike;
  disk: string;
  model: DiskModel;
  q: TestQemu;
  /** Starts QEMU again on the same disk (the VM's QMP address follows). */
  restart(): Promise<void>;
  write(writes: Array<[number, number, number]>): Promise<void>;
  /** sha256 of the guest-visible bytes of the disk file (qcow2 read through qemu-img). */
  diskSha(): Promise<string>;
  service(opts?: ConstructorParameters<typeof BackupService>[2] extends infer O ? Partial<O> : never): BackupService;
}

const WORKFLOWS = 'workflows:\n  crash:\n    - snapshot\n    - copy\n';

async function rig(t: TestT, format: 'raw' | 'qcow2'): Promise<Rig> {
  const dir = tmpDir(t, 'vmvault-inplace-');
  const { ns } = await openNs(t, path.join(dir, 'store'));
  const disk = path.join(dir, 'images', `web01-vda.${format}`);
  fs.mkdirSync(path.dirname(disk));
  const start = () => startQemu({ t, dir, name: 'web01', disks: [{ device: 'vda', file: disk, format, sizeBytes: 16 * MiB }] });
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  fs.writeFileSync(path.join(data, 'workflows.yaml'), WORKFLOWS);
  const r: Rig = {
    dir,
    ns,
    disk,
    model: new DiskModel(16 * MiB),
    q: await start(),
    vm: { name: 'web01', share: 'web01', qmp: '', workflow: 'crash' },
    restart: async () => {
      r.q = await start();
      r.vm.qmp = r.q.qmp;
    },
    write: async (writes) => {
      const c = await QmpClient.connect(r.q.qmp);
      try {
        for (const [p, off, len] of writes) await qemuIo(c, r.q.qdevOf('vda'), r.model.write(p, off, len));
      } finally {
        await c.close();
      }
    },
    diskSha: async () => {
      if (format === 'raw') return sha(fs.readFileSync(disk));
      const out = path.join(dir, `check-${Date.now()}.raw`);
      const c = await runTool('qemu-img', ['convert', '-U', '-O', 'raw', disk, out]);
      if (c.code !== 0) throw new Error(c.stderr);
      const h = sha(fs.readFileSync(out));
      fs.rmSync(out);
      return h;
    },
    service: (opts = {}) => new BackupService(ns, vmLookup([r.vm]), { dataDir: data, ...opts }),
  };
  r.vm.qmp = r.q.qmp;
  return r;
}

/** A point holding pattern 0x11 (and 0x12), then the disk moves on (0x5a over it). */
async function pointThenChange(r: Rig, svc: BackupService): Promise<{ point: string; want: string; changed: string }> {
  await r.write([[0x11, 0, 2 * MiB], [0x12, 9 * MiB, 1 * MiB]]);
  const rec = await svc.backup('web01', {}, progress());
  const want = r.model.sha();
  await r.write([[0x5a, 1 * MiB, 4 * MiB], [0x5b, 12 * MiB, 64 * 1024]]);
  return { point: rec.point, want, changed: r.model.sha() };
}

function leftovers(r: Rig): string[] {
  return fs.readdirSync(path.dirname(r.disk)).filter((f) => f.includes('vmvault-restore'));
}

t.test('without a cluster: a running VM is refused; a stopped one gets the point in its own file', async (t) => {
  const r = await rig(t, 'raw');
  const svc = r.service();
  const { point, want, changed } = await pointThenChange(r, svc);
  const mode = 0o640;
  fs.chmodSync(r.disk, mode);

  const p1 = progress();
  const err = await svc.restoreInPlace('web01', { point }, p1).catch((e) => e);
  t.ok(isVmvaultError(err, 'CONFLICT'), `CONFLICT: ${(err as Error).message}`);
  t.match((err as Error).message, /VM web01 is running \(its QMP at unix:.* answers\): shut it down before restoring its disks in place/);
  t.equal(await r.diskSha(), changed, 'the disk is untouched');

  await r.q.stop();
  const p2 = progress();
  const res = await svc.restoreInPlace('web01', { point }, p2);
  t.same(res, { point, files: [r.disk] });
  t.equal(await r.diskSha(), want, 'the disk file the VM uses is the point\'s');
  t.equal(fs.statSync(r.disk).mode & 0o777, mode, 'the file keeps its mode');
  t.same(leftovers(r), [], 'no partial file');
  t.match(p2.lines.join('\n'), /does not run .*its disks as the point .* recorded them: vda .*web01-vda\.raw/);
  t.equal(p2.advanced, 16 * MiB, 'progress covers the disk');
  // The VM boots from it again (QEMU opens it).
  await r.restart();
  t.pass('QEMU starts on the restored disk');
});

t.test('a disk that is not a plain file is refused before anything happens', async (t) => {
  const r = await rig(t, 'raw');
  const svc = r.service();
  const { point, changed } = await pointThenChange(r, svc);
  await r.q.stop();
  // The point recorded a path; now it is a symlink to a directory, i.e. no regular file.
  fs.renameSync(r.disk, `${r.disk}.moved`);
  fs.mkdirSync(r.disk);
  const err = await svc.restoreInPlace('web01', { point }, progress()).catch((e) => e);
  t.ok(isVmvaultError(err, 'INVALID_ARGUMENT'));
  t.match((err as Error).message, /disk vda of VM web01 \(.*web01-vda\.raw\) is not a regular file; --in-place writes only plain files the appliance can write: restore with --to DIR instead/);
  fs.rmdirSync(r.disk);
  fs.renameSync(`${r.disk}.moved`, r.disk);
  t.equal(await r.diskSha(), changed);
  await t.rejects(svc.restoreInPlace('web01', { point: '2000-01-01T00-00-00Z' }, progress()), { code: 'NOT_FOUND' });
});

t.test("a VM on a host: its disk written through the host's agent, only inside its allowed folders", async (t) => {
  const r = await rig(t, 'qcow2');
  const svc = r.service();
  const { point, want, changed } = await pointThenChange(r, svc);
  const mode = 0o640;
  fs.chmodSync(r.disk, mode);
  await r.q.stop();
  // The agent's real request table, behind the real AgentPool; an in-process loop stands in for
  // the agent's long-poll (the HTTP hop is the host-requests and netns tests' part).
  const table = new HostRequestTable();
  new InPlaceRequests([path.dirname(r.disk)]).register(table);
  const pool = new AgentPool();
  let tamper: ((kind: string, a: { ok: boolean; result?: unknown; error?: { code: string; message: string } }) => typeof a) | undefined;
  const seen: string[] = [];
  pool.register({ name: 'a1', version: 'test', hostname: 'node1.test', addresses: [], streams: 1, reach: [], requests: table.kinds() }, '127.0.0.1');
  const ac = new AbortController();
  const loop = (async () => {
    while (!ac.signal.aborted) {
      await pool.poll('a1', 200, [], ac.signal).catch(() => {});
      if (ac.signal.aborted) return;
      for (const q of pool.takeRequests('a1')) {
        seen.push(q.kind);
        void table.run(q, ac.signal).then((a) => !ac.signal.aborted && pool.answerRequest('a1', q.id, tamper ? tamper(q.kind, a as never) : a));
      }
    }
  })();
  t.teardown(async () => {
    ac.abort();
    await loop;
    pool.close();
  });
  const restore = (p = progress(), files = new HostInPlaceFiles(pool, 'node1', 'a1')) =>
    restoreInPlace({ ns: r.ns, vm: r.vm, point, devices: ['vda'], openQmp: (a) => QmpClient.connect(a, { timeoutMs: 2000 }), files, log: (l) => p.lines.push(l), advance: (n) => p.advance(n) });

  // An agent whose check answer is malformed: refused before any file is made.
  tamper = (kind, a) => (kind === 'inplace-check' ? { ok: true, result: { kind: 'file', writable: 'yes' } } : a);
  const bad = await restore().catch((e) => e);
  t.ok(isVmvaultError(bad, 'IO'), String(bad));
  t.match(String(bad), /agent a1 answered inplace-check with something malformed: writable is not a boolean/);
  t.notOk(seen.includes('inplace-open'), 'nothing was opened');
  tamper = undefined;

  // A disk outside the agent's --in-place-dir folders (QEMU may report any path): FORBIDDEN.
  const other = new InPlaceRequests([path.join(r.dir, 'elsewhere')]);
  const t2 = new HostRequestTable();
  other.register(t2);
  const refused = await other.check({ path: r.disk }).catch((e) => e);
  t.ok(isVmvaultError(refused, 'FORBIDDEN'), String(refused));
  t.match(String(refused), /is not inside this agent's --in-place-dir folders/);
  for (const p of [`${r.disk}/../../etc/passwd`, 'relative.raw']) t.ok(isVmvaultError(await other.check({ path: p }).catch((e) => e), 'INVALID_ARGUMENT'), `${p} is refused`);
  t.ok(isVmvaultError(await new InPlaceRequests([]).open({ path: r.disk, size: 1 }).catch((e) => e), 'FORBIDDEN'), 'an agent without --in-place-dir writes nothing');
  t.equal(await r.diskSha(), changed, 'the disk is untouched so far');

  const p = progress();
  const res = await restore(p);
  t.same(res, { point, files: [r.disk] });
  t.equal(await r.diskSha(), want, "the VM's disk on the host is the point's");
  t.equal(fs.statSync(r.disk).mode & 0o777, mode, 'the file keeps its mode');
  t.equal(JSON.parse((await runTool('qemu-img', ['info', '--output=json', r.disk])).stdout).format, 'qcow2', 'still a qcow2');
  t.same(leftovers(r), [], 'no partial file');
  t.equal(p.advanced, 16 * MiB, 'progress covers the disk');
  t.match(p.lines.join('\n'), /vda: written beside .* \(qcow2\) on host node1 \(through agent a1\)/);
  t.ok(seen.filter((k) => k === 'inplace-write').length <= 3, `only the data runs travel (${seen.filter((k) => k === 'inplace-write').length} writes of 1 MiB for 3 MiB of data)`);
  await r.restart();
  t.pass('QEMU starts on the restored disk');
});

t.test('an HA VM: resource offline, disk restored, resource back; failures bring it back too', { skip: pacemakerAvailable(), timeout: 300_000 }, async (t) => {
  const cluster = await startPacemakerCluster(t);
  await cluster.addDummy('vm-web01', 'web01');
  await cluster.waitFor('vm-web01 started', (x) => /<resource id="vm-web01"[^>]*role="Started"/.test(x));
  const pm = new Pacemaker({ run: localRunner(cluster.node('node1').prefix), roleTimeoutMs: 20_000 });
  const r = await rig(t, 'qcow2');
  const svc = r.service({ ha: pm, vmStopWaitMs: 3_000 });
  const { point, want, changed } = await pointThenChange(r, svc);
  const role = async () => {
    const x = await pm.resourceOf('web01');
    return `${x?.role}${x?.node ? '@' : ''}${x?.node ? 'node' : ''}`;
  };

  // 1. The Dummy does not stop QEMU: the restore must refuse and bring the resource back. (QEMU
  // holds the qcow2 open and may not have flushed: compare the file's own bytes, not the guest's.)
  const fileBefore = sha(fs.readFileSync(r.disk));
  const p1 = progress();
  const e1 = await svc.restoreInPlace('web01', { point }, p1).catch((e) => e);
  t.ok(isVmvaultError(e1, 'CONFLICT'), `CONFLICT: ${(e1 as Error).message}`);
  t.match((e1 as Error).message, /VM web01 still runs \(its QMP at .* answers\) although the cluster stopped resource vm-web01: its resource agent did not stop this QEMU/);
  t.equal(await role(), 'Started@node', 'the resource is back online');
  t.equal(sha(fs.readFileSync(r.disk)), fileBefore, 'the disk file is untouched');
  const l1 = p1.lines.join('\n');
  t.match(l1, /taking cluster resource vm-web01 offline \(Started on node\d\): target-role Stopped[\s\S]*cluster resource vm-web01 is Stopped[\s\S]*in-place restore failed: VM web01 still runs[\s\S]*bringing cluster resource vm-web01 back online[\s\S]*cluster resource vm-web01 is Started on node\d/);

  // The stand-in for the resource agent: QEMU stops when the cluster reports the resource Stopped.
  const stopWithResource = (): { done: Promise<void>; cancel(): void } => {
    let on = true;
    const done = (async () => {
      while (on) {
        if ((await pm.resourceOf('web01'))?.role === 'Stopped') {
          await r.q.stop();
          return;
        }
        await new Promise((res) => setTimeout(res, 100));
      }
    })();
    return { done, cancel: () => (on = false) };
  };

  // 2. Cancelled while the disk is written: nothing changed, no partial file, resource back.
  const agent2 = stopWithResource();
  const p2 = progress(() => p2.controller.abort());
  const e2 = await svc.restoreInPlace('web01', { point }, p2).catch((e) => e);
  agent2.cancel();
  await agent2.done;
  t.ok(isVmvaultError(e2, 'CANCELLED'), `CANCELLED: ${(e2 as Error).message}`);
  t.equal(await r.diskSha(), changed, 'the disk is as it was');
  t.same(leftovers(r), [], 'no partial file');
  t.equal(await role(), 'Started@node', 'the resource is back online');
  t.match(p2.lines.join('\n'), /removed the partly written files; the VM's disks are unchanged[\s\S]*cluster resource vm-web01 is Started/);

  // 3. The restore itself.
  await r.restart();
  const agent3 = stopWithResource();
  const p3 = progress();
  const res = await svc.restoreInPlace('web01', { point }, p3);
  agent3.cancel();
  await agent3.done;
  t.same(res.files, [r.disk]);
  t.equal(res.ha?.resource, 'vm-web01');
  t.match(res.ha?.before, /^Started on node\d$/);
  t.match(res.ha?.after, /^Started on node\d$/);
  t.equal(await r.diskSha(), want, 'the disk is the point\'s');
  const info = JSON.parse((await runTool('qemu-img', ['info', '-U', '--output=json', r.disk])).stdout);
  t.equal(info.format, 'qcow2', 'still a qcow2, as QEMU opens it');
  t.equal(await role(), 'Started@node', 'the resource is back online');
  t.match(p3.lines.join('\n'), /the VM's disks \(query-block\): vda [\s\S]*taking cluster resource vm-web01 offline[\s\S]*is Stopped[\s\S]*QEMU of web01 is not running[\s\S]*vda: written beside[\s\S]*vda: .* is now the point[\s\S]*bringing cluster resource vm-web01 back online[\s\S]*is Started on node\d/);
  t.same(leftovers(r), []);
});
