// Policies for VM groups (issue 14 with issue 13): `policy assign NAME --group G`.
//
// Real parts: the VM, group and policy registries and the run history in a data directory, the
// real store and namespace (locks judged on the same hand-moved clock), the policy service and
// scheduler as src/appliance-policies.ts wires them (openPolicies), the real job runner, and the
// API over the real server with the CLI through main().
//
// The test double: the group backup itself (GroupControl.backup). A real one needs a QEMU per
// member (test/groups-api.test.ts runs it); this test is about what the policy does with a group,
// so the double makes each member's point as the backup service does when a copy ends: a
// snapshot, a backup record, then the backup service's point hook (policy lock, then retention).
// Everything before it (the starter, its checks, the group-backup job in the job runner) is real.
//
// - assign/unassign/show a group through the CLI and the API; `policy show` lists the members;
// - bad input: an unknown group, a group in another policy, a member already in another policy
//   (by --vm or through another group: CONFLICT naming both), --vm and --group together, and
//   removing a group a policy names (409 naming the policy);
// - a fast schedule runs ONE group-backup job per time for the group, never one per VM; a run
//   still going is not doubled; after downtime the missed times give one run;
// - members' points carry the policy's lock, and retention runs per member after the run.
// - the clone scheduler copies the members as well as the --vm VMs.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { ApplianceGroups } from '../src/appliance-groups.js';
import { openPolicies, type PolicyParts } from '../src/appliance-policies.js';
import { ApplianceServices } from '../src/appliance-services.js';
import { ApplianceVms } from '../src/appliance-vms.js';
import { BackupRecords } from '../src/backup/backup-records.js';
import { BackupService } from '../src/backup/backup-service.js';
import type { GroupBackupResult } from '../src/backup/group-backup.js';
import { GroupRegistry } from '../src/backup/groups.js';
import { pointName } from '../src/backup/point-name.js';
import { VmRegistry } from '../src/backup/vm-registry.js';
import { loadWorkflows } from '../src/backup/workflow/workflows.js';
import type { GroupControl } from '../src/control/group-types.js';
import { JobHistoryFile } from '../src/control/job-history.js';
import { JobRunner } from '../src/control/jobs.js';
import { listen } from '../src/control/listen.js';
import { buildServer } from '../src/control/server.js';
import { Namespace } from '../src/namespace/namespace.js';
import { CloneScheduler } from '../src/policy/clone-scheduler.js';
import { type Policy, PolicyRegistry } from '../src/policy/policies.js';
import { RunHistory } from '../src/policy/run-history.js';
import { SegmentStore } from '../src/store/store.js';
import { runMain } from './helpers/cli-run.js';
import { TOKEN } from './helpers/control-server.js';
import { ManualClock } from './helpers/manual-clock.js';
import { tmpDir } from './helpers/tmpdir.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
// A round local time (cron fields are local, like the appliance's).
const T0 = new Date(2026, 11, 5, 12, 0, 0).getTime();

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
}

const dir = tmpDir(t, 'vmvault-polgrp-');
const data = path.join(dir, 'data');
fs.mkdirSync(data);
const clock = new ManualClock(T0);
const store = await SegmentStore.open(path.join(dir, 'store'));
const ns = await Namespace.open(store, { log: () => {}, now: clock.now });
const registry = await VmRegistry.open(data);
for (const name of ['web01', 'web02', 'db01', 'mail01']) await registry.add({ name, qmp: 'unix:/nonexistent/qmp.sock', workflow: 'crash-consistent' });
const backups = new BackupService(ns, registry, { dataDir: data, qmpTimeoutMs: 5000, now: () => new Date(clock.now()) });
const vms = new ApplianceVms({ registry, engine: backups, workflows: () => loadWorkflows(undefined) });
const svc = new ApplianceServices(ns, undefined, vms);
const jobs = new JobRunner({ persist: new JobHistoryFile(path.join(data, 'jobs.json'), () => {}) });
await jobs.restore();
const groupRegistry = await GroupRegistry.open(data);
let pol: PolicyParts | undefined;
const realGroups = new ApplianceGroups({
  groups: groupRegistry,
  vms: () => registry.list(),
  engine: backups,
  checkBackup: (vm, req) => vms.checkBackup(vm, req),
  usedBy: (g) => pol?.service.policyOfGroup(g),
});

/** The group backup double (see the head comment): runs held until the test finishes them. */
const runs: Array<{ group: string; finish(): Promise<void> }> = [];
const records = new BackupRecords(data);
const groups: GroupControl = {
  list: () => realGroups.list(),
  get: (n) => realGroups.get(n),
  create: (r) => realGroups.create(r),
  remove: (n) => realGroups.remove(n),
  checkBackup: (n, r) => realGroups.checkBackup(n, r),
  backup: (ctx, name) =>
    new Promise<GroupBackupResult>((resolve) => {
      runs.push({
        group: name,
        finish: async () => {
          const point = pointName(new Date(clock.now()));
          const members = (await realGroups.get(name)).members;
          for (const vm of members) {
            await ns.shares.create(vm).catch(() => {});
            await ns.snapshots.create(vm, point);
            const state = await records.read(vm);
            await records.write({ ...state, records: [...state.records, { vm, point, kind: 'full', startedAt: new Date(clock.now()).toISOString(), durationMs: 1, bytesRead: 0, bytesWritten: 0, freezeMs: null, disks: [], workflow: 'crash-consistent' }] });
            await pol!.service.onPointCreated({ vm, share: vm, point, kind: 'full' });
          }
          ctx.log(`double: points of ${members.join(', ')}`);
          resolve({ group: name, point, order: 'busiest', parallel: 2, release: 'early', succeeded: members.length, failed: 0, skewMs: null, sendSkewMs: null, skewMsByHost: {}, copyOrder: members, vms: members.map((vm) => ({ vm, host: 'local', ok: true, point, log: [] })), events: [] });
        },
      });
    }),
};
pol = await openPolicies({ data, ns, vms: registry, backups, jobs, svc, maxLockMs: 30 * 24 * HOUR, clock, groups: { members: (g) => realGroups.members(g), control: groups }, log: () => {} });
const app = await buildServer(svc, { token: TOKEN, jobs, policies: pol.service, groups });
await pol.scheduler.start();
const url = await listen(app, { port: 0 });
t.teardown(async () => {
  pol!.scheduler.stop();
  await app.close();
  await jobs.close();
  await ns.close();
  await store.close();
});
const cli = (...args: string[]) => runMain(['--url', url, '--token', TOKEN, ...args]);
const api = async (method: 'GET' | 'POST' | 'DELETE', p: string, body?: unknown) => {
  const r = await fetch(`${url}/api/v1${p}`, { method, headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : undefined };
};

t.test('assign, show, unassign a group; every refusal', async (t) => {
  t.equal((await cli('group', 'create', 'web', '--pattern', 'web*')).code, 0);
  t.equal((await cli('group', 'create', 'mixed', '--vms', 'db01,mail01')).code, 0);
  t.equal((await cli('group', 'create', 'mail', '--vms', 'mail01')).code, 0);
  t.equal((await cli('policy', 'create', 'gold', '--backup', '0 3 * * *')).code, 0);
  t.equal((await cli('policy', 'create', 'silver', '--backup', '0 4 * * *')).code, 0);

  const a = await cli('policy', 'assign', 'gold', '--group', 'web');
  t.equal(a.code, 0, a.stderr);
  t.match(a.stdout, /^group web is protected by policy gold \(VMs now: web01, web02\) \(next run /);
  const show = await cli('policy', 'show', 'gold');
  t.equal(show.code, 0, show.stderr);
  t.match(show.stdout, /\nGroup web\s+web01, web02\n/, 'show lists the group and its members now');
  t.match(show.stdout, /web01 \(share web01\): 0 point\(s\)\n\nweb02 \(share web02\): 0 point\(s\)/, 'and each member\'s points');
  t.match((await api('GET', '/policies/gold')).json, { vms: [], groups: [{ name: 'web', members: ['web01', 'web02'] }] });
  t.equal((await cli('policy', 'assign', 'gold', '--group', 'web')).code, 0, 'assigning again is no change');

  // Unknown group: 404, exit 5; nothing stored.
  const unknown = await api('POST', '/policies/gold/assign', { group: 'nosuch' });
  t.equal(unknown.status, 404);
  t.match(unknown.json.error.message, /no group "nosuch"/);
  t.equal((await cli('policy', 'assign', 'gold', '--group', 'nosuch')).code, 5);
  // The group is in another policy.
  const twice = await api('POST', '/policies/silver/assign', { group: 'web' });
  t.equal(twice.status, 409);
  t.match(twice.json.error.message, /group web is assigned to policy gold; unassign it there first/);
  // A member assigned with --vm to another policy: CONFLICT naming both.
  t.equal((await cli('policy', 'assign', 'silver', '--vm', 'db01')).code, 0);
  const member = await cli('policy', 'assign', 'gold', '--group', 'mixed');
  t.equal(member.code, 6, 'CONFLICT exits 6');
  t.match(member.stderr, /group mixed holds VM db01, which is assigned with --vm to policy silver; a VM is in at most one policy \(vmvault policy unassign silver --vm db01 first\)/);
  // A VM already a member of a group of another policy, assigned with --vm: CONFLICT naming both.
  const byVm = await api('POST', '/policies/silver/assign', { vm: 'web01' });
  t.equal(byVm.status, 409);
  t.match(byVm.json.error.message, /VM web01 is a member of group web, assigned to policy gold/);
  // A member of a group of another policy, through another group.
  t.equal((await api('POST', '/policies/silver/assign', { group: 'mail' })).status, 200);
  const viaGroup = await api('POST', '/policies/gold/assign', { vm: 'mail01' });
  t.equal(viaGroup.status, 409);
  t.match(viaGroup.json.error.message, /VM mail01 is a member of group mail, assigned to policy silver/);
  t.same((await api('GET', '/policies/gold')).json.groups.map((g: { name: string }) => g.name), ['web'], 'no refusal changed gold');
  t.same((await api('GET', '/policies/gold')).json.vms, []);
  // --vm and --group together, or neither.
  t.match((await cli('policy', 'assign', 'gold', '--vm', 'db01', '--group', 'web')).stderr, /give --vm <vm> or --group <group> \(one of them\)/);
  const both = await api('POST', '/policies/gold/assign', { vm: 'db01', group: 'web' });
  t.equal(both.status, 400);
  t.match(both.json.error.message, /takes --vm VM or --group GROUP, not both/);
  t.equal((await api('POST', '/policies/gold/assign', {})).status, 400);

  // A group a policy names is not removed: 409 naming the policy; the group stays.
  const rm = await api('DELETE', '/groups/web');
  t.equal(rm.status, 409);
  t.match(rm.json.error.message, /group web is assigned to policy gold; unassign it first \(vmvault policy unassign gold --group web\)/);
  t.equal((await cli('group', 'remove', 'web')).code, 6);
  t.equal((await api('GET', '/groups/web')).status, 200, 'still there');
  t.equal((await api('DELETE', '/groups/nosuch')).status, 404);

  // Unassign: the group leaves; not assigned: 404.
  const un = await cli('policy', 'unassign', 'silver', '--group', 'mail');
  t.equal(un.code, 0, un.stderr);
  t.match(un.stdout, /^group mail is no longer in policy silver/);
  t.notOk((await api('GET', '/policies/silver')).json.groups, 'no groups: the field is absent');
  const again = await api('POST', '/policies/silver/unassign', { group: 'mail' });
  t.equal(again.status, 404);
  t.match(again.json.error.message, /group mail is not assigned to policy silver/);
  t.equal((await api('DELETE', '/groups/mail')).status, 204, 'unassigned: it can go');
  t.equal((await cli('policy', 'unassign', 'silver', '--vm', 'db01')).code, 0);
  t.equal((await cli('policy', 'remove', 'silver')).code, 0);

  // The record on disk: groups beside vms, same format version.
  const file = JSON.parse(fs.readFileSync(path.join(data, 'policies.json'), 'utf8'));
  t.equal(file.version, 1);
  t.match(file.policies, [{ name: 'gold', vms: [], groups: ['web'] }]);
});

t.test('a fast schedule: one group-backup job per time, no overlap, one run after downtime; lock and retention on members', async (t) => {
  t.equal((await api('POST', '/policies', { name: 'fast', backup: '*/10 * * * *', keep: 'last=1', lock: '15min' })).status, 201);
  t.equal((await api('POST', '/policies/gold/unassign', { group: 'web' })).status, 200);
  t.equal((await api('POST', '/policies/fast/assign', { group: 'web' })).status, 200);
  await pol!.scheduler.ticked();
  const groupJobs = () => jobs.list().filter((j) => j.kind === 'group-backup');
  const backupJobs = () => jobs.list().filter((j) => j.kind === 'backup');

  clock.set(T0 + 10 * MIN);
  await pol!.scheduler.ticked();
  await until(() => runs.length >= 1);
  t.same(runs.map((r) => r.group), ['web'], 'one group backup for the group');
  t.equal(groupJobs().length, 1, 'one job of kind group-backup');
  t.match(groupJobs()[0].target, /^group web \(policy fast\)/);
  t.equal(backupJobs().length, 0, 'no per-VM backup job');

  // The next time comes while the run still goes: skipped, recorded, not doubled.
  clock.set(T0 + 20 * MIN);
  await pol!.scheduler.ticked();
  t.equal(runs.length, 1);
  const skipped = pol!.service.show('fast').then((d) => d.runs.filter((r) => r.event === 'skipped'));
  t.match(await skipped, [{ vm: 'group web', group: 'web', detail: /its previous run \(job .+\) is still running \(no two runs of one group overlap\)/ }]);

  await runs[0].finish();
  await pol!.scheduler.settled();
  const p1 = pointName(new Date(T0 + 20 * MIN));
  const detail = await pol!.service.show('fast');
  t.match(
    detail.runs.filter((r) => r.event === 'succeeded'),
    [{ vm: 'group web', group: 'web', point: p1 }],
  );
  const locked = detail.runs.filter((r) => r.event === 'locked');
  t.same(locked.map((r) => `${r.vm} ${r.point}`).sort(), [`web01 ${p1}`, `web02 ${p1}`], "each member's point got the policy's lock");
  for (const vm of ['web01', 'web02']) {
    const [s] = await ns.snapshots.list(vm);
    t.equal(s.lockedUntil, new Date(T0 + 35 * MIN).toISOString(), `${vm}'s point is locked for 15 minutes`);
    t.match((await ns.snapshots.remove(vm, p1).catch((e: Error) => e)) as Error, { code: 'LOCKED' }, 'and refuses a delete');
  }
  t.equal((await ns.snapshots.list('db01').catch(() => [])).length, 0, 'a VM outside the group got nothing');

  // Downtime: the scheduler stops; an hour later (six times missed) it starts again: one run.
  pol!.scheduler.stop();
  clock.set(T0 + 80 * MIN);
  await pol!.scheduler.start();
  await until(() => runs.length >= 2);
  t.equal(runs.length, 2, 'one run for all the missed times');
  t.match((await pol!.service.show('fast')).runs.filter((r) => r.event === 'started').at(-1), { vm: 'group web', detail: /earlier scheduled time\(s\) passed/ });
  await runs[1].finish();
  await pol!.scheduler.settled();
  // Retention (last=1) ran per member after the run: the old point's lock ended (T0+35m), so it went.
  const p2 = pointName(new Date(T0 + 80 * MIN));
  for (const vm of ['web01', 'web02']) {
    t.same((await ns.snapshots.list(vm)).map((s) => s.name), [p2], `${vm}: retention kept only the newest point`);
  }
  t.same(
    (await pol!.service.show('fast')).runs.filter((r) => r.event === 'pruned').map((r) => r.vm).sort(),
    ['web01', 'web02'],
    'pruned per member',
  );
  t.equal(groupJobs().length, 2);
  t.equal(backupJobs().length, 0, 'never a per-VM job');

  // A VM registered later that the pattern matches is in the next run (resolved at each run).
  await registry.add({ name: 'web03', qmp: 'unix:/nonexistent/qmp.sock', workflow: 'crash-consistent' });
  t.match((await api('GET', '/policies/fast')).json.groups, [{ name: 'web', members: ['web01', 'web02', 'web03'] }]);
  clock.set(T0 + 90 * MIN);
  await pol!.scheduler.ticked();
  await until(() => runs.length >= 3);
  await runs[2].finish();
  await pol!.scheduler.settled();
  t.equal((await ns.snapshots.list('web03')).length, 1, 'web03 got its point');
  t.ok((await ns.snapshots.list('web03'))[0].lockedUntil, 'locked too');
  // The policy cannot go while members' points are locked.
  const rm = await api('DELETE', '/policies/fast');
  t.equal(rm.status, 423);
  t.match(rm.json.error.message, /policy fast has 5 locked point\(s\)/);
});

t.test("a policy's clone copies cover its groups' members (the clone scheduler asks the policy service)", async (t) => {
  // The copies are a double here (a starter that records): test/clone-schedule.test.ts makes real ones.
  const cdir = tmpDir(t, 'vmvault-polgrp-clone-');
  const creg = await PolicyRegistry.open(cdir);
  await creg.create({ name: 'copied', backup: '0 3 * * *', clone: 'hourly -> tape' }, new Date(T0));
  await creg.assign('copied', 'db01');
  await creg.assignGroup('copied', 'web');
  const chist = await RunHistory.open(cdir);
  const cclock = new ManualClock(T0);
  const started: string[] = [];
  const vmsOf = (p: Policy) => [...p.vms, ...(p.groups ?? []).flatMap((g) => realGroups.members(g))];
  const cs = new CloneScheduler({
    registry: creg,
    history: chist,
    clock: cclock,
    vmsOf,
    start: async (vm, destination) => {
      started.push(`${vm} -> ${destination}`);
      return { job: `c${started.length}`, done: Promise.resolve({ ok: true, point: 'P' }) };
    },
  });
  t.teardown(() => cs.stop());
  await cs.start();
  cclock.set(T0 + 60 * MIN);
  await cs.ticked();
  await cs.settled();
  t.same(started.sort(), ['db01 -> tape', 'web01 -> tape', 'web02 -> tape', 'web03 -> tape'], 'the --vm VM and every member now');
  // And the appliance's own wiring resolves the same way.
  t.same(pol!.service.protectedVms(creg.get('copied')), ['db01', 'web01', 'web02', 'web03']);
});
