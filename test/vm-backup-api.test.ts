// The VM routes over the appliance's own services with the REAL backup service, registry,
// namespace and store, and real QEMU (qemu-system-x86_64 -S, TCG, no guest):
// - a QMP socket that accepts and never answers shows as "unreachable" within the probe bound,
//   with the reason, never a 500 or a hang; a missing socket likewise;
// - two backups of one VM at once: the second is 409 with the first's job id; removing the VM
//   meanwhile is 409; cancel ends the job "cancelled" and no restore point appears;
// - an unknown workflow and an app-consistent backup of a VM without a guest agent are refused
//   before any job starts (400, saying what to do), with nothing made;
// - a VM whose share already holds other files (a hypervisor's datastore: a backup would write
//   vda.raw over its image) is refused; an empty share or an earlier VM's backups are taken;
// - against a real QEMU: the VM's state and disks, a backup job with progress in bytes, the
//   restore point listed, a restore job writing the disks, and a second restore into the same
//   directory refused before it starts.

import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ApplianceServices } from '../src/appliance-services.js';
import { ApplianceVms } from '../src/appliance-vms.js';
import { BackupService } from '../src/backup/backup-service.js';
import { VmRegistry } from '../src/backup/vm-registry.js';
import { loadWorkflows } from '../src/backup/workflow/workflows.js';
import { buildServer } from '../src/control/server.js';
import type { Namespace } from '../src/namespace/namespace.js';
import { openNs, writeFile } from './helpers/ns.js';
import { startQemu } from './helpers/qemu.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const TOKEN = 'f00d'.repeat(16);
const AUTH = { authorization: `Bearer ${TOKEN}` };
const PROBE_MS = 700;
const MiB = 1024 * 1024;

async function setup(t: TestT) {
  const dir = tmpDir(t, 'vmvault-vmapi-');
  const { ns } = await openNs(t, path.join(dir, 'store'));
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  const registry = await VmRegistry.open(data);
  const backups = new BackupService(ns, registry, { dataDir: data, qmpTimeoutMs: 3000 });
  const vms = new ApplianceVms({
    registry,
    engine: backups,
    workflows: () => loadWorkflows(undefined),
    probeTimeoutMs: PROBE_MS,
    forbiddenRoots: [{ path: data, what: 'data directory' }],
  });
  const app = await buildServer(new ApplianceServices(ns, undefined, vms), { token: TOKEN });
  t.teardown(() => app.close());
  const call = (method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown) =>
    app.inject({
      method,
      url,
      headers: body === undefined ? AUTH : { ...AUTH, 'content-type': 'application/json' },
      payload: body === undefined ? undefined : JSON.stringify(body),
    });
  const waitJob = async (id: string, ms = 60_000) => {
    const until = Date.now() + ms;
    for (;;) {
      const job = (await call('GET', `/api/v1/jobs/${id}`)).json();
      if (job.state !== 'queued' && job.state !== 'running') return job;
      if (Date.now() > until) throw new Error(`job ${id} still ${job.state}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return { dir, data, ns, call, waitJob };
}

/** A UNIX socket that accepts connections and never says a word (a hung QEMU, a wrong socket). */
async function silentSocket(t: TestT, dir: string): Promise<string> {
  const file = path.join(dir, 'silent.sock');
  const held = new Set<net.Socket>();
  const server = net.createServer((s) => {
    held.add(s);
    s.on('close', () => held.delete(s));
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(file, resolve));
  t.teardown(async () => {
    for (const s of held) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return file;
}

async function snapshots(ns: Namespace, share: string): Promise<string[]> {
  return ns.snapshots.list(share).then(
    (l) => l.map((s) => s.name),
    () => [],
  );
}

t.test('a QMP socket that never answers: "unreachable" within the bound, with the reason', async (t) => {
  const s = await setup(t);
  const sock = await silentSocket(t, s.dir);
  let t0 = Date.now();
  const added = await s.call('POST', '/api/v1/vms', { name: 'hung', qmp: `unix:${sock}` });
  t.equal(added.statusCode, 201, added.body);
  // Which bound answered is in the message (the probe's, not the service's own 3 s QMP timeout);
  // the time is only checked against a hang, the machine being shared and loaded.
  t.ok(Date.now() - t0 < 15_000, `answered in ${Date.now() - t0} ms`);
  t.match(added.json(), { name: 'hung', state: 'unreachable', stateDetail: new RegExp(`QMP at unix:${sock} did not answer within ${PROBE_MS} ms`), disks: [], lastBackup: null });

  t.equal((await s.call('POST', '/api/v1/vms', { name: 'gone', qmp: `unix:${path.join(s.dir, 'no-such.sock')}` })).statusCode, 201);
  t0 = Date.now();
  const list = await s.call('GET', '/api/v1/vms');
  t.equal(list.statusCode, 200);
  t.ok(Date.now() - t0 < 15_000, `listing both took ${Date.now() - t0} ms: probed side by side, each bounded`);
  const [gone, hung] = list.json().vms;
  t.match(gone, { name: 'gone', state: 'unreachable', stateDetail: /no-such\.sock/ });
  t.match(hung, { name: 'hung', state: 'unreachable', stateDetail: new RegExp(`did not answer within ${PROBE_MS} ms`) });
  const one = await s.call('GET', '/api/v1/vms/hung');
  t.equal(one.statusCode, 200, 'not a 500');
  t.equal(one.json().state, 'unreachable');
});

t.test('two backups of one VM: the second 409; remove refused meanwhile; cancel leaves no point', async (t) => {
  const s = await setup(t);
  const sock = await silentSocket(t, s.dir);
  t.equal((await s.call('POST', '/api/v1/vms', { name: 'slow', qmp: `unix:${sock}`, workflow: 'crash-consistent' })).statusCode, 201);
  const first = await s.call('POST', '/api/v1/vms/slow/backups', {});
  t.equal(first.statusCode, 202, first.body);
  const id = first.json().job;
  t.equal(first.headers.location, `/api/v1/jobs/${id}`);

  const second = await s.call('POST', '/api/v1/vms/slow/backups', { full: true });
  t.equal(second.statusCode, 409);
  t.match(second.json().error, { code: 'CONFLICT', job: id, message: new RegExp(`backup job ${id} \\(vm slow\\) is (queued|running)`) });
  const remove = await s.call('DELETE', '/api/v1/vms/slow');
  t.equal(remove.statusCode, 409);
  t.match(remove.json().error, { code: 'CONFLICT', job: id, message: /wait for it or cancel it \(vmvault jobs cancel/ });

  t.equal((await s.call('DELETE', `/api/v1/jobs/${id}`)).statusCode, 202);
  const job = await s.waitJob(id);
  t.equal(job.state, 'cancelled', JSON.stringify(job.error));
  t.equal(job.kind, 'backup');
  t.same(await snapshots(s.ns, 'slow'), [], 'no restore point');
  t.same((await s.call('GET', '/api/v1/vms/slow/backups')).json(), { backups: [] });

  // Once it has ended, the VM takes a backup again (it fails: QMP never answers; said in the job).
  const again = await s.call('POST', '/api/v1/vms/slow/backups', {});
  t.equal(again.statusCode, 202);
  const failed = await s.waitJob(again.json().job);
  t.equal(failed.state, 'failed');
  t.match(failed.error, { code: 'IO', message: /QMP|did not answer|no answer|timed out|within/i });
  t.same(await snapshots(s.ns, 'slow'), [], 'still no restore point');
  t.equal((await s.call('DELETE', '/api/v1/vms/slow')).statusCode, 204, 'removable once no backup runs');
});

t.test('refused before any job: unknown workflow, app-consistent without a guest agent', async (t) => {
  const s = await setup(t);
  t.equal((await s.call('POST', '/api/v1/vms', { name: 'noagent', qmp: 'unix:/run/qemu/noagent.qmp' })).statusCode, 201);
  const unknown = await s.call('POST', '/api/v1/vms/noagent/backups', { workflow: 'nightly' });
  t.equal(unknown.statusCode, 400);
  t.match(unknown.json().error, { code: 'INVALID_ARGUMENT', message: /unknown workflow "nightly"; known: app-consistent, crash-consistent/ });
  const noAgent = await s.call('POST', '/api/v1/vms/noagent/backups', {});
  t.equal(noAgent.statusCode, 400, 'app-consistent is the default');
  t.match(noAgent.json().error.message, /VM noagent has no guest agent, so workflow 'app-consistent' cannot freeze its filesystems: .*--qga .* or back up with --workflow crash-consistent/);
  const addUnknown = await s.call('POST', '/api/v1/vms', { name: 'x', qmp: 'unix:/a', workflow: 'nightly' });
  t.equal(addUnknown.statusCode, 400);
  t.match(addUnknown.json().error.message, /unknown workflow "nightly"/);
  t.same((await s.call('GET', '/api/v1/jobs')).json().jobs, [], 'no job');
  t.same((await s.call('GET', '/api/v1/vms')).json().vms.map((v: { name: string }) => v.name), ['noagent'], 'no VM x');
  await t.rejects(s.ns.shares.get('noagent'), { code: 'NOT_FOUND' }, 'no share made');
  const restore = await s.call('POST', '/api/v1/vms/noagent/restores', { to: path.join(s.dir, 'out') });
  t.equal(restore.statusCode, 404);
  t.match(restore.json().error.message, /VM noagent has no restore point yet/);

  // A share that holds a hypervisor's images is not a backup share.
  await s.ns.shares.create('datastore');
  const image = Buffer.alloc(4096, 9);
  await writeFile(s.ns, '/datastore/vda.raw', image);
  await writeFile(s.ns, '/datastore/web02.vmdk', Buffer.alloc(512, 1));
  const taken = await s.call('POST', '/api/v1/vms', { name: 'web02', qmp: 'unix:/run/qemu/web02.qmp', share: 'datastore' });
  t.equal(taken.statusCode, 409);
  t.match(taken.json().error.message, /share "datastore" already holds files that are not a VM's backups \("vda\.raw", "web02\.vmdk"\); .*give this VM another share \(--share\)/);
  const fh = await s.ns.fs.open('/datastore/vda.raw', 0);
  t.ok((await s.ns.fs.read(fh, 0, 4096)).equals(image), 'the image in it is untouched');
  await s.ns.fs.release(fh);
  // An empty share, and a share with an earlier VM's backups (vm.json), are taken.
  await s.ns.shares.create('fresh');
  t.equal((await s.call('POST', '/api/v1/vms', { name: 'web03', qmp: 'unix:/run/qemu/web03.qmp', share: 'fresh' })).statusCode, 201);
  await s.ns.shares.create('old-web04');
  await writeFile(s.ns, '/old-web04/vm.json', Buffer.from('{"name":"web04"}'));
  await writeFile(s.ns, '/old-web04/vda.raw', image);
  t.equal((await s.call('POST', '/api/v1/vms', { name: 'web04', qmp: 'unix:/run/qemu/web04.qmp', share: 'old-web04' })).statusCode, 201, 'a removed VM added again continues in its share');
});

t.test('against a real QEMU: state and disks, a backup job with byte progress, its point, a restore job', async (t) => {
  const s = await setup(t);
  const q = await startQemu({ t, dir: s.dir, name: 'web01', disks: [{ device: 'vda', sizeBytes: 16 * MiB, file: path.join(s.dir, 'vda.qcow2') }] });
  const added = await s.call('POST', '/api/v1/vms', { name: 'web01', qmp: q.qmp });
  t.equal(added.statusCode, 201, added.body);
  t.match(added.json(), { state: 'prelaunch', disks: [{ device: 'vda', format: 'qcow2', sizeBytes: 16 * MiB }], lastBackup: null });

  const started = await s.call('POST', '/api/v1/vms/web01/backups', { workflow: 'crash-consistent' });
  t.equal(started.statusCode, 202, started.body);
  const job = await s.waitJob(started.json().job);
  t.equal(job.state, 'succeeded', JSON.stringify(job.error));
  t.equal(job.progress.unit, 'bytes');
  t.equal(job.progress.total, 16 * MiB, 'total: the disk size');
  t.match(job.result, { vm: 'web01', kind: 'full', workflow: 'crash-consistent', freezeMs: null, disks: [{ device: 'vda', sizeBytes: 16 * MiB }] });
  const point = job.result.point as string;
  t.ok(job.log.length > 0, 'the job log names the steps');

  const list = (await s.call('GET', '/api/v1/vms/web01/backups')).json().backups;
  t.same(list.map((b: { point: string }) => b.point), [point]);
  const vm = (await s.call('GET', '/api/v1/vms/web01')).json();
  t.equal(vm.lastBackup.point, point, 'GET shows the last backup');

  const to = path.join(s.dir, 'restored');
  const r = await s.call('POST', '/api/v1/vms/web01/restores', { to });
  t.equal(r.statusCode, 202, r.body);
  const rj = await s.waitJob(r.json().job);
  t.equal(rj.state, 'succeeded', JSON.stringify(rj.error));
  t.equal(rj.kind, 'restore');
  t.same(rj.result, { point, files: [path.join(to, 'vda.raw'), path.join(to, 'vm.json')] });
  t.equal(fs.statSync(path.join(to, 'vda.raw')).size, 16 * MiB);

  const again = await s.call('POST', '/api/v1/vms/web01/restores', { to, point });
  t.equal(again.statusCode, 409, 'over existing files: refused before a job');
  t.match(again.json().error, { code: 'ALREADY_EXISTS', message: /vda\.raw exists; restore into an empty directory/ });
  const badPoint = await s.call('POST', '/api/v1/vms/web01/restores', { to: path.join(s.dir, 'r2'), point: '2000-01-01T00-00-00Z' });
  t.equal(badPoint.statusCode, 404);
  t.match(badPoint.json().error.message, /VM web01 has no restore point "2000-01-01T00-00-00Z" \(vmvault backup list web01/);
  t.notOk(fs.existsSync(path.join(s.dir, 'r2')), 'nothing made for a refused restore');

  const intoData = await s.call('POST', '/api/v1/vms/web01/restores', { to: path.join(s.data, 'restore') });
  t.equal(intoData.statusCode, 400);
  t.match(intoData.json().error.message, /is inside the appliance's data directory .*; restore to a directory outside it/);
  fs.symlinkSync(s.data, path.join(s.dir, 'sneaky'));
  const viaLink = await s.call('POST', '/api/v1/vms/web01/restores', { to: path.join(s.dir, 'sneaky', 'sub', 'dir') });
  t.equal(viaLink.statusCode, 400);
  t.match(viaLink.json().error.message, /through a symbolic link/);
  t.notOk(fs.existsSync(path.join(s.data, 'restore')) || fs.existsSync(path.join(s.data, 'sub')), 'nothing written into the data directory');
});

t.test('restore in place through the API: refused while the VM runs, done once it is stopped', async (t) => {
  const s = await setup(t);
  const disk = path.join(s.dir, 'vda.qcow2');
  const q = await startQemu({ t, dir: s.dir, name: 'web01', disks: [{ device: 'vda', sizeBytes: 16 * MiB, file: disk }] });
  t.equal((await s.call('POST', '/api/v1/vms', { name: 'web01', qmp: q.qmp })).statusCode, 201);
  const b = await s.waitJob((await s.call('POST', '/api/v1/vms/web01/backups', { workflow: 'crash-consistent' })).json().job);
  t.equal(b.state, 'succeeded', JSON.stringify(b.error));

  const both = await s.call('POST', '/api/v1/vms/web01/restores', { inPlace: true, to: path.join(s.dir, 'x') });
  t.equal(both.statusCode, 400);
  t.match(both.json().error.message, /give no to or format with inPlace/);
  const neither = await s.call('POST', '/api/v1/vms/web01/restores', {});
  t.equal(neither.statusCode, 400, 'no target and not in place');
  const badPoint = await s.call('POST', '/api/v1/vms/web01/restores', { inPlace: true, point: '2000-01-01T00-00-00Z' });
  t.equal(badPoint.statusCode, 404);

  const running = await s.waitJob((await s.call('POST', '/api/v1/vms/web01/restores', { inPlace: true })).json().job);
  t.equal(running.state, 'failed');
  t.match(running.error, { code: 'CONFLICT', message: /VM web01 is running .*: shut it down before restoring its disks in place/ });

  await q.stop();
  const r = await s.call('POST', '/api/v1/vms/web01/restores', { inPlace: true, point: b.result.point });
  t.equal(r.statusCode, 202, r.body);
  const rj = await s.waitJob(r.json().job);
  t.equal(rj.state, 'succeeded', JSON.stringify(rj.error));
  t.same(rj.result, { point: b.result.point, files: [disk] });
  t.match(rj.target, /vm web01 point .* in place/);
  t.ok(rj.log.some((l: string) => /is now the point/.test(l)), 'the job log says what was replaced');
});
