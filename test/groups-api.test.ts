// VM groups through the control plane and the CLI, over the appliance's own services
// (ApplianceVms, ApplianceGroups), the real VM and group registries, the real backup service,
// namespace and store, and real paused QEMUs:
// - group create (list, pattern), list with the VMs each resolves to now (a pattern takes a VM
//   registered later), show, remove; groups.json is versioned and survives a reopen;
// - vm remove takes the VM out of every group that lists it;
// - `vmvault backup --group` runs a job of kind group-backup whose result lists each VM's point
//   (all the same name), the copy order and the skew; a VM listed but not registered fails alone
//   and makes the command exit 1;
// - bad input: unknown group (404, exit 5), two ways of naming members, an empty group, --parallel 0.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { ApplianceGroups } from '../src/appliance-groups.js';
import { ApplianceServices } from '../src/appliance-services.js';
import { ApplianceVms } from '../src/appliance-vms.js';
import { BackupService } from '../src/backup/backup-service.js';
import { GROUPS_FILE, GroupRegistry } from '../src/backup/groups.js';
import { VmRegistry } from '../src/backup/vm-registry.js';
import { loadWorkflows } from '../src/backup/workflow/workflows.js';
import { listen } from '../src/control/listen.js';
import { buildServer } from '../src/control/server.js';
import { runMain } from './helpers/cli-run.js';
import { openNs } from './helpers/ns.js';
import { startQemu } from './helpers/qemu.js';
import { tmpDir } from './helpers/tmpdir.js';

const TOKEN = 'beef'.repeat(16);
const MiB = 1024 * 1024;

t.test('groups over HTTP and the CLI, and a group-backup job', async (t) => {
  const dir = tmpDir(t, 'vmvault-grpapi-');
  const { ns } = await openNs(t, path.join(dir, 'store'));
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  fs.writeFileSync(path.join(data, 'workflows.yaml'), 'workflows:\n  crash:\n    - snapshot\n    - copy\n');
  const registry = await VmRegistry.open(data);
  const backups = new BackupService(ns, registry, { dataDir: data, qmpTimeoutMs: 5000 });
  const vms = new ApplianceVms({ registry, engine: backups, workflows: () => loadWorkflows(path.join(data, 'workflows.yaml')) });
  const groupRegistry = await GroupRegistry.open(data);
  vms.onVmRemoved(async (vm) => void (await groupRegistry.forgetVm(vm)));
  const groups = new ApplianceGroups({ groups: groupRegistry, vms: () => registry.list(), engine: backups, checkBackup: (vm, req) => vms.checkBackup(vm, req) });
  const app = await buildServer(new ApplianceServices(ns, undefined, vms), { token: TOKEN, groups });
  t.teardown(() => app.close());
  const url = await listen(app, { port: 0 });
  const cli = (...args: string[]) => runMain(['--url', url, '--token', TOKEN, ...args]);

  const qs = [];
  for (const name of ['web01', 'web02']) {
    const q = await startQemu({ t, dir, name, disks: [{ device: 'vda', sizeBytes: 8 * MiB, file: path.join(dir, `${name}.qcow2`) }] });
    qs.push(q);
    const r = await cli('vm', 'add', name, '--qmp', q.qmp, '--workflow', 'crash');
    t.equal(r.code, 0, r.stderr);
  }

  let r = await cli('group', 'create', 'web', '--vms', 'web01,web02,db01');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /created group web/);
  t.match(r.stdout, /VMs now\s+web01, web02/);
  t.match(r.stdout, /Not registered\s+db01/);
  r = await cli('group', 'create', 'pat', '--pattern', 'web*', '--json');
  t.equal(r.code, 0, r.stderr);
  t.same(JSON.parse(r.stdout).members, ['web01', 'web02'], 'a pattern resolves to the VMs registered now');
  r = await cli('group', 'create', 'onhost', '--host', 'node1');
  t.equal(r.code, 0, r.stderr);
  r = await cli('group', 'list');
  t.match(r.stdout, /^NAME\s+BY\s+VMS NOW\n/);
  t.match(r.stdout, /onhost\s+host node1\s+-\n/);
  t.match(r.stdout, /pat\s+pattern web\*\s+web01, web02\n/);
  t.match(r.stdout, /web\s+list of 3\s+web01, web02\n/);

  // groups.json: versioned, and read back the same.
  const file = JSON.parse(fs.readFileSync(path.join(data, GROUPS_FILE), 'utf8'));
  t.match(file, { format: 'vmvault-groups', version: 1 });
  t.same(file.groups.map((g: { name: string }) => g.name), ['onhost', 'pat', 'web']);
  t.same((await GroupRegistry.open(data)).list(), groupRegistry.list(), 'a reopened registry reads the same groups');

  // Bad input.
  const bad: Array<[string[], number, RegExp]> = [
    [['group', 'show', 'nosuch'], 5, /no group "nosuch"/],
    [['group', 'create', 'x', '--vms', 'a', '--pattern', 'b*'], 2, /exactly one of/],
    [['group', 'create', 'x'], 2, /exactly one of/],
    [['group', 'create', 'web', '--vms', 'web01'], 6, /a group named "web" exists/],
    [['group', 'create', 'x', '--pattern', 'a/b'], 2, /pattern|must match/],
    [['backup', '--group', 'nosuch'], 5, /no group "nosuch"/],
    [['backup', '--group', 'onhost'], 2, /group onhost has no registered VM/],
    [['backup', '--group', 'web', '--parallel', '0'], 2, /--parallel must be a whole number of at least 1/],
    [['backup', '--group', 'web', '--order', 'random'], 2, /--order must be busiest, largest or alphabetical/],
    [['backup', '--group', 'web', 'web01'], 2, /takes no arguments|expected no arguments|no arguments/],
  ];
  for (const [args, code, re] of bad) {
    const b = await cli(...args);
    t.equal(b.code, code, `${args.join(' ')}: exit ${code} (${b.stderr.trim()})`);
    t.match(b.stderr, re);
  }
  const viaHttp = await app.inject({ method: 'POST', url: '/api/v1/groups/web/backups', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, payload: JSON.stringify({ parallel: 0 }) });
  t.equal(viaHttp.statusCode, 400, 'parallel 0 over HTTP: 400');
  t.same(fs.readdirSync(data).filter((f) => f === 'scratch'), [], 'no refused request started a backup');

  // The run: web01 and web02 make one point each, with one name; db01 fails alone.
  r = await cli('backup', '--group', 'web', '--parallel', '1', '--json');
  t.equal(r.code, 1, 'a VM of the group failed: exit 1');
  const job = JSON.parse(r.stdout);
  t.equal(job.kind, 'group-backup');
  t.equal(job.state, 'succeeded', 'the job succeeds when at least one VM made its point');
  const res = job.result;
  t.equal(res.succeeded, 2);
  t.equal(res.failed, 1);
  t.match(res.vms.find((v: { vm: string }) => v.vm === 'db01').error, { code: 'NOT_FOUND' });
  const points = res.vms.filter((v: { ok: boolean }) => v.ok).map((v: { point: string }) => v.point);
  t.same(points, [res.point, res.point], 'one name for all points');
  t.equal(res.copyOrder.length, 2);
  t.type(res.skewMs, 'number');
  t.ok(res.events.some((e: { event: string }) => e.event === 'released'), 'the releases are events');
  for (const name of ['web01', 'web02']) {
    const list = await cli('backup', 'list', name, '--json');
    t.same(JSON.parse(list.stdout).map((b: { point: string }) => b.point), [res.point], `${name}: the point is listed`);
  }
  const human = await cli('jobs', job.id);
  t.match(human.stdout, /Point\s+\S+ \(group web\): 2 of 3 VM\(s\)/);
  t.match(human.stdout, /db01\s+FAILED: no VM "db01"/);

  // vm remove takes the VM out of the list; the pattern simply stops matching it.
  t.equal((await cli('vm', 'remove', 'web02')).code, 0);
  t.same(JSON.parse((await cli('group', 'show', 'web', '--json')).stdout).vms, ['web01', 'db01']);
  t.same(JSON.parse((await cli('group', 'show', 'pat', '--json')).stdout).members, ['web01']);
  t.equal((await cli('group', 'remove', 'pat')).code, 0);
  t.equal((await cli('group', 'show', 'pat')).code, 5);
  for (const q of qs) await q.stop();
});
