// The backup service against a real QEMU (qemu-system-x86_64 -S, TCG, no guest; guest-like writes
// through QEMU's block layer with HMP qemu-io), a real NBD export, a real store and namespace:
// - full then incremental points each read back identical to the disk at that moment, and an
//   incremental reads exactly the dirty bytes;
// - a failure before the point, after the point, and a cancel during the copy leave no snapshot,
//   no record, and the next incremental still covers the gap;
// - a missing checkpoint bitmap and a resized disk fall back to full with the reason;
// - two backups of one VM at once: the second is refused with CONFLICT;
// - an app-consistent backup of a VM without a guest agent is refused before anything starts;
// - restore writes the point's disks and vm.json.
// QEMU serves one QMP client at a time: the test connects only between backups.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { BackupService, type VmConfigLike } from '../src/backup/backup-service.js';
import { isVmvaultError } from '../src/errors.js';
import type { Namespace } from '../src/namespace/namespace.js';
import type { ActionContext, Plugin } from '../src/plugins/plugin-api.js';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { DiskModel, progress, sha, vmLookup } from './helpers/backup.js';
import { openNs, readFile } from './helpers/ns.js';
import { qemuIo, startQemu, type TestQemu } from './helpers/qemu.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A plug-in pinned by the test workflows: fails quiesce-database or unquiesce-database on demand. */
class FailingDb implements Plugin {
  readonly name = 'test-db';
  failAt: string | null = null;
  calls: string[] = [];
  performs(action: string): boolean {
    return action === 'quiesce-database' || action === 'unquiesce-database';
  }
  async run(action: string, _ctx: ActionContext): Promise<unknown> {
    this.calls.push(action);
    if (action === this.failAt) throw new Error(`test-db: ${action} fails on purpose`);
    return null;
  }
}

const WORKFLOWS = `
workflows:
  crash:
    - snapshot
    - copy
  db:
    - action: quiesce-database
      plugin: test-db
    - snapshot
    - action: unquiesce-database
      plugin: test-db
    - copy
`;

interface Setup {
  dir: string;
  ns: Namespace;
  q: TestQemu;
  svc: BackupService;
  db: FailingDb;
  models: Record<string, DiskModel>;
  vm: VmConfigLike;
  /** Applies qemu-io writes (pattern, offset, length) to the disk and its model. */
  write(device: string, writes: Array<[number, number, number]>): Promise<void>;
  qmp<T>(fn: (q: QmpClient) => Promise<T>): Promise<T>;
  /** sha256 of a file of a point, read through the namespace. */
  pointSha(point: string, device: string): Promise<string>;
}

async function setup(t: TestT, sizes: Record<string, number> = { vda: 32 * MiB, vdb: 16 * MiB }, nbdConnections?: number): Promise<Setup> {
  const dir = tmpDir(t, 'vmvault-bq-');
  const { ns } = await openNs(t, path.join(dir, 'store'));
  const q = await startQemu({ t, dir, name: 'web01', qga: true, disks: Object.entries(sizes).map(([device, sizeBytes]) => ({ device, sizeBytes, file: path.join(dir, `${device}.qcow2`) })) });
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  fs.writeFileSync(path.join(data, 'workflows.yaml'), WORKFLOWS);
  const db = new FailingDb();
  const vm: VmConfigLike = { name: 'web01', share: 'web01', qmp: q.qmp, workflow: 'crash' };
  const svc = new BackupService(ns, vmLookup([vm, { name: 'noagent', share: 'noagent', qmp: q.qmp }, { name: 'gone', share: 'gone', qmp: `unix:${path.join(dir, 'no-such-qmp.sock')}`, workflow: 'crash' }]), { dataDir: data, plugins: [db], nbdConnections });
  const models = Object.fromEntries(Object.entries(sizes).map(([d, s]) => [d, new DiskModel(s)]));
  const qmp = async <T>(fn: (c: QmpClient) => Promise<T>): Promise<T> => {
    const c = await QmpClient.connect(q.qmp);
    try {
      return await fn(c);
    } finally {
      await c.close();
    }
  };
  return {
    dir, ns, q, svc, db, models, vm, qmp,
    write: (device, writes) =>
      qmp(async (c) => {
        for (const [p, off, len] of writes) await qemuIo(c, q.qdevOf(device), models[device].write(p, off, len));
      }),
    pointSha: async (point, device) => sha(await readFile(ns, `/web01/.snapshots/${point}/${device}.raw`)),
  };
}

t.test('full, then incremental: every point is the disk at its moment; incremental reads the dirty bytes', async (t) => {
  const s = await setup(t);
  await s.write('vda', [[0x11, 0, 4 * MiB], [0x12, 20 * MiB, 1 * MiB]]);
  await s.write('vdb', [[0x21, 8 * MiB, 2 * MiB]]);
  const p1 = progress();
  const r1 = await s.svc.backup('web01', {}, p1);
  t.equal(r1.kind, 'full');
  t.same(r1.disks.map((d) => [d.device, d.kind, d.sizeBytes]), [['vda', 'full', 32 * MiB], ['vdb', 'full', 16 * MiB]]);
  t.equal(r1.bytesRead, 7 * MiB, 'a full backup reads only allocated extents (holes and zeros are skipped)');
  t.equal(r1.freezeMs, null, 'crash-consistent: no freeze');
  t.same(p1.phases, ['prepare', 'workflow', 'finish']);
  t.equal(p1.advanced, r1.bytesRead, 'progress counts the bytes read');
  const want1 = { vda: s.models.vda.sha(), vdb: s.models.vdb.sha() };
  t.equal(await s.pointSha(r1.point, 'vda'), want1.vda, 'vda of point 1 is the disk at point 1');
  t.equal(await s.pointSha(r1.point, 'vdb'), want1.vdb);
  const vmJson = JSON.parse((await readFile(s.ns, `/web01/.snapshots/${r1.point}/vm.json`)).toString());
  t.equal(vmJson.name, 'web01');
  t.same(vmJson.disks.map((d: { device: string; sizeBytes: number }) => [d.device, d.sizeBytes]), [['vda', 32 * MiB], ['vdb', 16 * MiB]]);

  // Known extents, 64 KiB aligned: 3 x 64 KiB on vda, one 128 KiB on vdb.
  await s.write('vda', [[0x31, 1 * MiB, 64 * KiB], [0x32, 10 * MiB, 64 * KiB], [0x33, 30 * MiB, 64 * KiB]]);
  await s.write('vdb', [[0x41, 8 * MiB + 512 * KiB, 128 * KiB]]);
  const r2 = await s.svc.backup('web01', {}, progress());
  t.equal(r2.kind, 'incremental');
  t.same(r2.disks.map((d) => [d.device, d.kind, d.bytesRead]), [['vda', 'incremental', 192 * KiB], ['vdb', 'incremental', 128 * KiB]], 'bytes read == dirty bytes');
  t.not(r2.point, r1.point);
  t.equal(await s.pointSha(r2.point, 'vda'), s.models.vda.sha(), 'point 2 is the disk at point 2');
  t.equal(await s.pointSha(r2.point, 'vdb'), s.models.vdb.sha());
  t.equal(await s.pointSha(r1.point, 'vda'), want1.vda, 'point 1 is unchanged');

  // Nothing written: an incremental reads nothing.
  const r3 = await s.svc.backup('web01', {}, progress());
  t.equal(r3.bytesRead, 0);
  t.equal(await s.pointSha(r3.point, 'vda'), s.models.vda.sha());

  // --full: a whole image again; and the old checkpoint does not linger on the disks.
  const r4 = await s.svc.backup('web01', { full: true }, progress());
  t.equal(r4.kind, 'full');
  t.equal(await s.pointSha(r4.point, 'vda'), s.models.vda.sha());
  const bitmaps = await s.qmp(async (c) => {
    const nodes = await c.execute<Array<{ 'node-name': string; 'dirty-bitmaps'?: Array<{ name: string }> }>>('query-named-block-nodes', { flat: true });
    return nodes.filter((n) => n['node-name'] === 'disk-vda').flatMap((n) => (n['dirty-bitmaps'] ?? []).map((b) => b.name));
  });
  t.same(bitmaps, [`vmvault-${r4.point}`], 'one checkpoint on the disk: the latest');

  const list = await s.svc.listBackups('web01');
  t.same(list.map((r) => r.point), [r1.point, r2.point, r3.point, r4.point]);

  // Restore point 2 as raw and check it against the model of that moment.
  const out = path.join(s.dir, 'restored');
  const rp = progress();
  const res = await s.svc.restore('web01', { point: r2.point, to: out }, rp);
  t.same(res.files.map((f) => path.basename(f)), ['vda.raw', 'vdb.raw', 'vm.json']);
  t.equal(rp.advanced, 48 * MiB);
  // (point 2 and now are the same bytes: nothing was written since)
  t.equal(sha(fs.readFileSync(path.join(out, 'vda.raw'))), s.models.vda.sha());
  t.equal(sha(fs.readFileSync(path.join(out, 'vdb.raw'))), s.models.vdb.sha());
  const e = await s.svc.restore('web01', { point: 'nope', to: path.join(s.dir, 'x') }, progress()).catch((x) => x);
  t.ok(isVmvaultError(e, 'NOT_FOUND'), String(e));
});

t.test('failures leave no point and the next incremental covers the gap', async (t) => {
  const s = await setup(t);
  await s.write('vda', [[0x11, 0, 2 * MiB]]);
  await s.write('vdb', [[0x21, 0, 1 * MiB]]);
  const r1 = await s.svc.backup('web01', { workflow: 'db' }, progress());
  t.same(s.db.calls, ['quiesce-database', 'unquiesce-database']);

  const expectNoPoint = async (what: string, run: () => Promise<unknown>, code: string) => {
    const before = (await s.ns.snapshots.list('web01')).map((x) => x.name);
    const err = await run().then(() => null, (x) => x);
    t.ok(isVmvaultError(err, code as never), `${what}: fails with ${code}: ${err}`);
    t.same((await s.ns.snapshots.list('web01')).map((x) => x.name), before, `${what}: no snapshot made`);
    t.same((await s.svc.listBackups('web01')).map((r) => r.point), [r1.point], `${what}: no record made`);
    t.same(fs.readdirSync(path.join(s.dir, 'data')).filter((f) => f === 'scratch' && fs.readdirSync(path.join(s.dir, 'data', f)).length > 0), [], `${what}: no scratch left`);
  };

  // Before the point: quiesce-database fails.
  await s.write('vda', [[0x51, 4 * MiB, 64 * KiB]]);
  s.db.failAt = 'quiesce-database';
  await expectNoPoint('quiesce fails', () => s.svc.backup('web01', { workflow: 'db' }, progress()), 'PLUGIN_FAILED');

  // After the point: unquiesce-database fails (the checkpoint was taken, then rolled back).
  await s.write('vda', [[0x52, 6 * MiB, 64 * KiB]]);
  s.db.failAt = 'unquiesce-database';
  await expectNoPoint('unquiesce fails', () => s.svc.backup('web01', { workflow: 'db' }, progress()), 'PLUGIN_FAILED');
  s.db.failAt = null;

  // During the copy: cancelled after the first bytes arrive (the share's files are half written).
  await s.write('vda', [[0x53, 8 * MiB, 2 * MiB]]);
  await s.write('vdb', [[0x61, 2 * MiB, 64 * KiB]]);
  const pc = progress((p) => p.controller.abort());
  await expectNoPoint('cancel during copy', () => s.svc.backup('web01', {}, pc), 'CANCELLED');

  // Written after the failures, before the next backup.
  await s.write('vda', [[0x54, 12 * MiB, 64 * KiB]]);
  const r2 = await s.svc.backup('web01', {}, progress());
  t.equal(r2.kind, 'incremental');
  const dirty = { vda: 64 * KiB + 64 * KiB + 2 * MiB + 64 * KiB, vdb: 64 * KiB };
  t.same(r2.disks.map((d) => [d.device, d.bytesRead]), [['vda', dirty.vda], ['vdb', dirty.vdb]], 'every write since point 1 is read, failed runs included');
  t.equal(await s.pointSha(r2.point, 'vda'), s.models.vda.sha(), 'the point is the disk now');
  t.equal(await s.pointSha(r2.point, 'vdb'), s.models.vdb.sha());
});

t.test('missing bitmap and resized disk fall back to full with the reason', async (t) => {
  const s = await setup(t);
  await s.write('vda', [[0x11, 0, 1 * MiB]]);
  await s.write('vdb', [[0x21, 0, 1 * MiB]]);
  const r1 = await s.svc.backup('web01', {}, progress());
  await s.qmp((c) => c.execute('block-dirty-bitmap-remove', { node: 'disk-vda', name: `vmvault-${r1.point}` }));
  await s.write('vdb', [[0x22, 2 * MiB, 64 * KiB]]);
  const p2 = progress();
  const r2 = await s.svc.backup('web01', {}, p2);
  const vda = r2.disks.find((d) => d.device === 'vda')!;
  const vdb = r2.disks.find((d) => d.device === 'vdb')!;
  t.equal(vda.kind, 'full');
  t.match(vda.fullReason ?? '', /bitmap|checkpoint/i, `reason: ${vda.fullReason}`);
  t.equal(vdb.kind, 'incremental');
  t.equal(vdb.bytesRead, 64 * KiB);
  t.ok(p2.lines.some((l) => l.includes('vda') && /full/.test(l)), 'the job log says why vda is full');
  t.equal(await s.pointSha(r2.point, 'vda'), s.models.vda.sha());
  t.equal(await s.pointSha(r2.point, 'vdb'), s.models.vdb.sha());

  // vdb grows by 16 MiB: its bytes are new, a full copy of it.
  await s.qmp((c) => c.execute('block_resize', { 'node-name': 'disk-vdb', size: 32 * MiB }));
  const grown = new DiskModel(32 * MiB);
  s.models.vdb.bytes.copy(grown.bytes);
  s.models.vdb = grown;
  await s.write('vdb', [[0x23, 20 * MiB, 64 * KiB]]);
  const r3 = await s.svc.backup('web01', {}, progress());
  const vdb3 = r3.disks.find((d) => d.device === 'vdb')!;
  t.equal(vdb3.kind, 'full');
  t.match(vdb3.fullReason ?? '', /size/i, `reason: ${vdb3.fullReason}`);
  t.equal(vdb3.sizeBytes, 32 * MiB);
  t.equal(await s.pointSha(r3.point, 'vdb'), s.models.vdb.sha());
  t.equal(r3.disks.find((d) => d.device === 'vda')!.kind, 'incremental');
});

t.test('bad input: a second backup at once, no guest agent, unknown workflow', async (t) => {
  const s = await setup(t);
  await s.write('vda', [[0x11, 0, 8 * MiB]]);
  const first = s.svc.backup('web01', {}, progress());
  const second = await s.svc.backup('web01', {}, progress()).catch((e) => e);
  t.ok(isVmvaultError(second, 'CONFLICT'), `the second is refused: ${second}`);
  const r = await first;
  t.equal(r.kind, 'full', 'the first completes');

  const e1 = await s.svc.backup('noagent', { workflow: 'app-consistent' }, progress()).catch((e) => e);
  t.ok(isVmvaultError(e1, 'INVALID_ARGUMENT'), String(e1));
  t.match(String(e1), /guest agent.*--qga.*crash-consistent/);
  t.rejects(s.ns.shares.get('noagent'), 'refused before anything: no share made');

  const e2 = await s.svc.backup('web01', { workflow: 'nightly-typo' }, progress()).catch((e) => e);
  t.ok(isVmvaultError(e2, 'NOT_FOUND'), String(e2));
  t.match(String(e2), /crash-consistent/, 'the message lists the known workflows');

  // A first backup that fails after its share was made (QEMU is not there) leaves no share.
  const e4 = await s.svc.backup('gone', {}, progress()).catch((e) => e);
  t.ok(e4 instanceof Error, `the backup of a VM whose QEMU is gone fails: ${e4}`);
  await t.rejects(s.ns.shares.get('gone'), { code: 'NOT_FOUND' }, 'the share the failed first backup made is gone again');

  const e3 = await s.svc.backup('nobody', {}, progress()).catch((e) => e);
  t.ok(isVmvaultError(e3, 'NOT_FOUND'), String(e3));
});

t.test('several NBD connections per disk make the same points', async (t) => {
  const s = await setup(t, { vda: 32 * MiB }, 3);
  await s.write('vda', [[0x11, 0, 5 * MiB], [0x12, 17 * MiB, 3 * MiB]]);
  const p1 = progress();
  const r1 = await s.svc.backup('web01', {}, p1);
  t.ok(p1.lines.some((l) => /over 3 NBD connection/.test(l)), 'the copy used 3 connections');
  t.equal(r1.bytesRead, 8 * MiB);
  t.equal(await s.pointSha(r1.point, 'vda'), s.models.vda.sha());
  await s.write('vda', [[0x13, 2 * MiB, 64 * KiB], [0x14, 30 * MiB, 128 * KiB]]);
  const r2 = await s.svc.backup('web01', {}, progress());
  t.equal(r2.bytesRead, 192 * KiB);
  t.equal(await s.pointSha(r2.point, 'vda'), s.models.vda.sha());
});
