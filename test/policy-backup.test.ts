// Policies end to end, without waiting on real time: the scheduler's clock, the namespace's lock
// clock and the backup service's point names all read one hand-moved clock. The backups are
// REAL: BackupService against a real QEMU (qemu-system-x86_64 -S, TCG, no guest), a real NBD
// export, real store and namespace, jobs in the real job runner, the API over the real server.
//
// - An hourly policy with keep hourly=2,daily=2 and lock 3h produces a point every hour; after
//   each, GFS removes exactly the points the rule says, except those still locked, which go at
//   the first prune after their lock ends.
// - A locked point survives an admin token's snapshot delete, share delete with force and
//   deleteSnapshots, policy remove and GC (and reads back identical after it); each refusal is
//   423 LOCKED naming when the lock ends; once it ended, the delete succeeds.
// - Bad input through the API: invalid cron, keep and lock strings, a lock over --max-lock, an
//   unknown VM, --group on an appliance without groups.
// - Restart after downtime: policies, locks and the run history are still there, and the
//   missed hourly times give one backup, not one per hour.

import t from 'tap';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ApplianceServices } from '../src/appliance-services.js';
import { ApplianceVms } from '../src/appliance-vms.js';
import { openPolicies } from '../src/appliance-policies.js';
import { BackupService } from '../src/backup/backup-service.js';
import { VmRegistry } from '../src/backup/vm-registry.js';
import { loadWorkflows } from '../src/backup/workflow/workflows.js';
import { JobHistoryFile } from '../src/control/job-history.js';
import { JobRunner } from '../src/control/jobs.js';
import { buildServer } from '../src/control/server.js';
import { runGc } from '../src/namespace/maintenance.js';
import { Namespace } from '../src/namespace/namespace.js';
import { pointName } from '../src/backup/point-name.js';
import { SegmentStore } from '../src/store/store.js';
import { ManualClock } from './helpers/manual-clock.js';
import { readFile } from './helpers/ns.js';
import { qemuIo, startQemu } from './helpers/qemu.js';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { tmpDir } from './helpers/tmpdir.js';

const TOKEN = 'cafe'.repeat(16);
const AUTH = { authorization: `Bearer ${TOKEN}` };
const MiB = 1024 * 1024;
const HOUR = 3_600_000;
// Local time (cron and GFS periods are local): 2026-12-05 22:00.
const T0 = new Date(2026, 11, 5, 22, 0, 0).getTime();
const at = (hoursAfterT0: number, minutes = 0) => T0 + hoursAfterT0 * HOUR + minutes * 60_000;
const P = (hoursAfterT0: number) => pointName(new Date(at(hoursAfterT0)));
const iso = (ms: number) => new Date(ms).toISOString();

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

t.test('an hourly policy: real backups, GFS with locks, every refusal, restart after downtime', async (t) => {
  const dir = tmpDir(t, 'vmvault-policy-');
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  const q = await startQemu({ t, dir, name: 'web01', disks: [{ device: 'vda', sizeBytes: 8 * MiB, file: path.join(dir, 'vda.qcow2') }] });
  const clock = new ManualClock(T0);

  async function open() {
    const store = await SegmentStore.open(path.join(dir, 'store'));
    const ns = await Namespace.open(store, { log: () => {}, now: clock.now });
    const registry = await VmRegistry.open(data);
    const backups = new BackupService(ns, registry, { dataDir: data, qmpTimeoutMs: 5000, now: () => new Date(clock.now()) });
    const vms = new ApplianceVms({ registry, engine: backups, workflows: () => loadWorkflows(undefined) });
    const svc = new ApplianceServices(ns, undefined, vms);
    const jobs = new JobRunner({ persist: new JobHistoryFile(path.join(data, 'jobs.json'), () => {}) });
    await jobs.restore();
    const pol = await openPolicies({ data, ns, vms: registry, backups, jobs, svc, maxLockMs: 30 * 24 * HOUR, maxParallel: 2, clock, log: () => {} });
    const app = await buildServer(svc, { token: TOKEN, jobs, policies: pol.service });
    await pol.scheduler.start();
    const call = (method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown) =>
      app.inject({ method, url: `/api/v1${url}`, headers: body === undefined ? AUTH : { ...AUTH, 'content-type': 'application/json' }, payload: body === undefined ? undefined : JSON.stringify(body) });
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      pol.scheduler.stop();
      await app.close();
      await jobs.close();
      await pol.scheduler.settled();
      await ns.close();
      await store.close();
    };
    return { ns, registry, backups, jobs, pol, call, close };
  }

  let a = await open();
  t.teardown(() => a.close());
  t.equal((await a.call('POST', '/vms', { name: 'web01', qmp: q.qmp, workflow: 'crash-consistent' })).statusCode, 201);

  // Bad input: each a 4xx with a message that says what is wrong, and nothing made.
  const bad = async (body: unknown, status: number, says: RegExp) => {
    const r = await a.call('POST', '/policies', body);
    t.equal(r.statusCode, status, r.body);
    t.match(r.json().error.message, says);
  };
  await bad({ name: 'x', backup: '61 * * * *' }, 400, /--backup "61 \* \* \* \*" is not a cron expression/);
  await bad({ name: 'x', backup: '0 * * * *', keep: 'daily=2,dayly=3' }, 400, /unknown rule "dayly"/);
  await bad({ name: 'x', backup: '0 * * * *', lock: '7 days' }, 400, /--lock "7 days" is not a duration/);
  await bad({ name: 'x', backup: '0 * * * *', lock: '1y' }, 400, /--lock 1y is longer than this appliance allows \(30d, the appliance's --max-lock\)/);
  await bad({ name: '../x', backup: '0 * * * *' }, 400, /policy name/);
  t.same((await a.call('GET', '/policies')).json().policies, [], 'nothing was made by the bad requests');

  const made = await a.call('POST', '/policies', { name: 'gold', backup: '0 * * * *', keep: 'hourly=2,daily=2', lock: '3h' });
  t.equal(made.statusCode, 201, made.body);
  t.match(made.json(), { name: 'gold', keep: 'hourly=2,daily=2', lock: '3h', nextRuns: [iso(at(1)), iso(at(2)), iso(at(3))] });
  t.equal((await a.call('POST', '/policies', { name: 'gold', backup: '0 * * * *' })).statusCode, 409);
  const unknownVm = await a.call('POST', '/policies/gold/assign', { vm: 'nosuch' });
  t.equal(unknownVm.statusCode, 404);
  t.match(unknownVm.json().error.message, /nosuch/);
  const group = await a.call('POST', '/policies/gold/assign', { group: 'web' });
  // Opened without VM groups here (test/policy-groups.test.ts has them): said so.
  t.equal(group.json().error.code, 'NOT_SUPPORTED');
  t.match(group.json().error.message, /this appliance has no VM groups/);
  t.equal((await a.call('POST', '/policies/gold/assign', { vm: 'web01' })).statusCode, 200);
  // The assignment made the scheduler look again; let that finish before time moves.
  await a.pol.scheduler.ticked();

  const diskWrite = async (pattern: number) => {
    const c = await QmpClient.connect(q.qmp);
    try {
      await qemuIo(c, q.qdevOf('vda'), `write -P ${pattern} ${pattern * 64 * 1024} 65536`);
    } finally {
      await c.close();
    }
  };
  const points = async () => (await a.ns.snapshots.list('web01')).map((s) => s.name);
  const runHour = async (h: number) => {
    await diskWrite(h);
    clock.set(at(h));
    await a.pol.scheduler.ticked();
    await a.pol.scheduler.settled();
  };

  // A second point listener that fails (as a catalog job might): logged in the job, the backup stands.
  let failOnce = true;
  a.backups.onPointCreated((ev) => {
    if (failOnce) {
      failOnce = false;
      throw new Error(`listener fails on purpose at ${ev.point}`);
    }
  });

  // 23:00, 00:00, 01:00, 02:00: nothing expires before there are more than the rules keep.
  for (const h of [1, 2, 3, 4]) await runHour(h);
  const firstJob = (await a.call('GET', `/jobs/${(await a.call('GET', '/policies/gold')).json().runs.find((r: { event: string }) => r.event === 'started').job}`)).json();
  t.equal(firstJob.state, 'succeeded', 'a failing point listener does not fail the backup');
  t.match(firstJob.log.join('\n'), `after the point ${P(1)}: listener fails on purpose at ${P(1)}`);
  const runs = a.pol.service.list()[0];
  t.equal(runs.name, 'gold');
  let hist = (await a.call('GET', '/policies/gold')).json();
  t.same(hist.runs.filter((r: { event: string }) => r.event === 'succeeded').map((r: { point: string }) => r.point), [P(1), P(2), P(3), P(4)], 'four scheduled backups made four points', { runs: hist.runs });
  const jobsList = (await a.call('GET', '/jobs')).json().jobs as Array<{ kind: string; target: string; state: string }>;
  t.equal(jobsList.filter((j) => j.kind === 'backup' && j.target === 'vm web01 (policy gold)' && j.state === 'succeeded').length, 4, 'scheduled runs are ordinary backup jobs');
  // At 02:00 (h=4): hourly keeps 02:00 and 01:00; daily: Dec 6 is covered, Dec 5 keeps 23:00.
  // 00:00 is removed by the rule; its lock (until 03:00) has not ended, so it stays, locked.
  t.same(await points(), [P(1), P(2), P(3), P(4)]);
  const dry = (await a.call('POST', '/policies/gold/prune', { dryRun: true })).json();
  const mark00 = dry.vms[0].marks.find((m: { point: string }) => m.point === P(2));
  t.match(mark00, { keep: true, reason: new RegExp(`^locked until ${iso(at(5))} \\(the rules would remove it: `) });

  // 03:00 (h=5): the lock of 00:00 ends now, so retention removes it.
  await runHour(5);
  t.same(await points(), [P(1), P(3), P(4), P(5)], '00:00 expired at the end of its lock; 01:00 is kept while locked');
  hist = (await a.call('GET', '/policies/gold')).json();
  t.match(hist.runs.filter((r: { event: string }) => r.event === 'pruned').at(-1), { vm: 'web01', detail: new RegExp(`removed ${P(2)}`) });
  const records = JSON.parse(fs.readFileSync(path.join(data, 'backups', 'web01.json'), 'utf8')).records.map((r: { point: string }) => r.point);
  t.same(records, [P(1), P(3), P(4), P(5)], 'the backup record is updated with the snapshot');
  // 04:00 (h=6): 01:00's lock ends: it goes.
  await runHour(6);
  t.same(await points(), [P(1), P(4), P(5), P(6)]);

  // The locked point 04:00 (until 07:00): every door refuses, naming the lock's end.
  const newest = P(6);
  const until = iso(at(9));
  const snapDel = await a.call('DELETE', `/shares/web01/snapshots/${newest}`);
  t.equal(snapDel.statusCode, 423);
  t.equal(snapDel.json().error.code, 'LOCKED');
  t.match(snapDel.json().error.message, `snapshot web01/${newest} is under a retention lock until ${until}`);
  const shareDel = await a.call('DELETE', '/shares/web01?force=true&deleteSnapshots=true');
  t.equal(shareDel.statusCode, 423, 'share delete with force and deleteSnapshots is refused');
  t.match(shareDel.json().error.message, until);
  const polDel = await a.call('DELETE', '/policies/gold');
  t.equal(polDel.statusCode, 423);
  t.match(polDel.json().error.message, /policy gold has 3 locked point\(s\): .* it can be removed after/);
  t.match(polDel.json().error.message, until);
  // GC: the locked points keep their segments.
  const before = sha(await readFile(a.ns, `/web01/.snapshots/${P(4)}/vda.raw`));
  await runGc(a.ns, { copyForwardBelow: 1 });
  t.equal(sha(await readFile(a.ns, `/web01/.snapshots/${P(4)}/vda.raw`)), before, 'a locked point reads back identical after GC');

  // The show: each point with its lock.
  const show = (await a.call('GET', '/policies/gold')).json();
  t.match(show.points[0].points.find((p: { point: string }) => p.point === newest), { locked: true, lockedUntil: until });

  // Unassign (no more runs), then let the clock pass the lock of 02:00 (until 05:00): deletable.
  t.equal((await a.call('POST', '/policies/gold/unassign', { vm: 'web01' })).statusCode, 200);
  await a.pol.scheduler.ticked();
  clock.set(at(7, 30));
  await a.pol.scheduler.settled();
  t.same(await points(), [P(1), P(4), P(5), P(6)], 'no run for an unassigned VM');
  t.equal((await a.call('DELETE', `/shares/web01/snapshots/${P(4)}`)).statusCode, 204, 'after its lock ended the point can be deleted');
  t.equal((await a.call('DELETE', `/shares/web01/snapshots/${P(6)}`)).statusCode, 423, 'a point still locked cannot');
  t.equal((await a.call('POST', '/policies/gold/assign', { vm: 'web01' })).statusCode, 200);
  const historyBefore = (await a.call('GET', '/policies/gold')).json().runs.length;

  // A restart (at 05:30, no time lost): policy, locks and history are all still there.
  await a.close();
  a = await open();
  const after = (await a.call('GET', '/policies/gold')).json();
  t.match(after, { name: 'gold', vms: ['web01'], keep: 'hourly=2,daily=2', lock: '3h' }, 'the policy survived the restart');
  t.equal(after.runs.length, historyBefore, 'the run history survived the restart');
  t.equal((await a.ns.snapshots.get('web01', P(6))).lockedUntil, until, 'the lock survived the restart');
  t.equal((await a.call('DELETE', `/shares/web01/snapshots/${P(6)}`)).statusCode, 423, 'and still holds');
  await a.pol.scheduler.settled();
  t.equal((await a.call('GET', '/policies/gold')).json().runs.length, historyBefore, 'nothing was due: no run at start');

  // Downtime: stop at 05:30, start again at 09:20 (06:00, 07:00, 08:00, 09:00 missed).
  await a.close();
  clock.set(at(11, 20));
  a = await open();
  await a.pol.scheduler.settled();
  const now = (await a.call('GET', '/policies/gold')).json();
  t.ok(now.runs.length > historyBefore, 'the run history survived and goes on');
  const started = now.runs.filter((r: { event: string }) => r.event === 'started');
  t.match(started.at(-1), { due: iso(at(11)), detail: /3 earlier scheduled time\(s\) passed while the appliance was down or busy: run once, not for each/ });
  t.equal(now.runs.filter((r: { event: string; due?: string }) => r.event === 'started' && r.due !== undefined && r.due > iso(at(6))).length, 1, 'one backup for four missed hours');
  t.ok((await points()).includes(pointName(new Date(at(11, 20)))), 'and it made its point, named by when it ran');
});
