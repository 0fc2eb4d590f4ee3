// `vmvault policy ...` over a real socket, in-process through main(), against the real policy
// service, registry, namespace and store (no QEMU: no backup runs here; test/policy-backup.test.ts
// has those). Output, --json, exit codes, usage errors, and a locked point refusing `policy remove`.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { ApplianceServices } from '../src/appliance-services.js';
import { ApplianceVms } from '../src/appliance-vms.js';
import { VmRegistry } from '../src/backup/vm-registry.js';
import { listen } from '../src/control/listen.js';
import { buildServer } from '../src/control/server.js';
import { LockClock } from '../src/policy/lock-clock.js';
import { PolicyRegistry } from '../src/policy/policies.js';
import { PolicyService } from '../src/policy/policy-service.js';
import { RunHistory } from '../src/policy/run-history.js';
import { Scheduler } from '../src/policy/scheduler.js';
import { runMain } from './helpers/cli-run.js';
import { TOKEN } from './helpers/control-server.js';
import { ManualClock } from './helpers/manual-clock.js';
import { openNs } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const dir = tmpDir(t, 'vmvault-clipol-');
const data = path.join(dir, 'data');
fs.mkdirSync(data);
const { ns } = await openNs(t, path.join(dir, 'store'));
const vms = await VmRegistry.open(data);
await vms.add({ name: 'db01', qmp: 'unix:/nonexistent/qmp.sock' });
const clock = new ManualClock(new Date(2026, 11, 5, 12, 0, 0).getTime());
const registry = await PolicyRegistry.open(data, { maxLockMs: 365 * 86_400_000 });
const history = await RunHistory.open(data);
const policies = new PolicyService({
  dataDir: data,
  ns,
  registry,
  history,
  lockClock: await LockClock.open(data, { now: clock.now }),
  vms,
  listBackups: async () => [],
  now: clock.now,
});
// The scheduler only gives next runs here: its starter is never called (nothing is assigned when time moves).
policies.scheduler = new Scheduler({ registry, history, clock, start: async () => Promise.reject(new Error('no backups in this test')) });
const applianceVms = new ApplianceVms({ registry: vms });
applianceVms.onVmRemoved((vm) => policies.vmRemoved(vm)); // as src/appliance.ts wires it
const app = await buildServer(new ApplianceServices(ns, undefined, applianceVms), { token: TOKEN, policies });
t.teardown(() => app.close());
const url = await listen(app, { port: 0 });
const cli = (...args: string[]) => runMain(['--url', url, '--token', TOKEN, ...args]);

t.test('create, list, show, assign, prune --dry-run, unassign, remove', async (t) => {
  const c = await cli('policy', 'create', 'gold', '--backup', '0 */4 * * *', '--keep', 'hourly=24,daily=14', '--lock', '7d');
  t.equal(c.code, 0, c.stderr);
  t.match(c.stdout, /^created policy gold\nPolicy\s+gold\nBackup\s+0 \*\/4 \* \* \* \(local time\)\nKeep\s+hourly=24,daily=14\nLock\s+7d\n/);
  const list = await cli('policy', 'list');
  t.match(list.stdout, /^NAME\s+BACKUP\s+KEEP\s+LOCK\s+VMS\s+NEXT RUN\ngold\s+0 \*\/4 \* \* \*\s+hourly=24,daily=14\s+7d\s+-\s+\d{4}-/);
  const json = JSON.parse((await cli('policy', 'list', '--json')).stdout);
  t.match(json, [{ name: 'gold', lockMs: 7 * 86_400_000, vms: [] }]);
  t.equal((await cli('policy', 'assign', 'gold', '--vm', 'db01')).code, 0);

  // A point of db01, locked by hand as the backup hook would.
  await ns.shares.create('db01');
  await ns.snapshots.create('db01', '2026-12-05T10-00-00Z');
  await ns.snapshots.lock('db01', '2026-12-05T10-00-00Z', clock.now() + 86_400_000);
  const show = await cli('policy', 'show', 'gold');
  t.equal(show.code, 0, show.stderr);
  t.match(show.stdout, /db01 \(share db01\): 1 point\(s\)\nPOINT\s+LOCK\n2026-12-05T10-00-00Z\s+locked until 2026-12-06/);
  const snaps = await cli('snapshot', 'list', 'db01');
  t.equal(snaps.code, 0, snaps.stderr);
  t.match(snaps.stdout, /LOCKED UNTIL\n.*2026-12-05T10-00-00Z.*\s2026-12-06 \d\d:\d\d/, 'snapshot list shows when the lock ends');
  const dry = await cli('policy', 'prune', 'gold', '--dry-run');
  t.equal(dry.code, 0, dry.stderr);
  t.match(dry.stdout, /^dry run: nothing removed\ndb01:\nno points/, 'a snapshot without a backup record is not a restore point: retention leaves it alone');
  const rm = await cli('policy', 'remove', 'gold');
  t.equal(rm.code, 6, 'LOCKED exits as a conflict (6)');
  t.match(rm.stderr, /^vmvault: policy gold has 1 locked point\(s\): db01\/2026-12-05T10-00-00Z \(until 2026-12-06T\d\d:00:00.000Z\); it can be removed after/);
  t.equal((await cli('policy', 'unassign', 'gold', '--vm', 'db01')).code, 0);
  t.equal((await cli('policy', 'remove', 'gold')).code, 0, 'with no VMs (their points keep their locks) it goes');
  t.equal((await cli('policy', 'show', 'gold')).code, 5, 'gone: not found (5)');
});

t.test('vm remove takes the VM out of its policy: no scheduled run is left for a VM that is gone', async (t) => {
  await vms.add({ name: 'web09', qmp: 'unix:/nonexistent/qmp.sock' });
  t.equal((await cli('policy', 'create', 'silver', '--backup', '0 3 * * *')).code, 0);
  t.equal((await cli('policy', 'assign', 'silver', '--vm', 'web09')).code, 0);
  const vmsOf = async () => (JSON.parse((await cli('policy', 'show', 'silver', '--json')).stdout) as { vms: string[] }).vms;
  t.same(await vmsOf(), ['web09']);
  const rm = await cli('vm', 'remove', 'web09');
  t.equal(rm.code, 0, rm.stderr);
  t.same(await vmsOf(), [], 'unassigned with the VM');
  t.equal((await cli('policy', 'remove', 'silver')).code, 0);
});

t.test('usage and bad input', async (t) => {
  const noCron = await cli('policy', 'create', 'x');
  t.equal(noCron.code, 2);
  t.match(noCron.stderr, /--backup <cron> is required/);
  const badCron = await cli('policy', 'create', 'x', '--backup', 'daily');
  t.equal(badCron.code, 2, 'INVALID_ARGUMENT: 2');
  t.match(badCron.stderr, /--backup "daily" is not a cron expression/);
  const badLock = await cli('policy', 'create', 'x', '--backup', '0 0 * * *', '--lock', '20y');
  t.match(badLock.stderr, /--lock 20y is longer than this appliance allows \(1y/);
  const unknownVm = await cli('policy', 'create', 'y', '--backup', '0 0 * * *');
  t.equal(unknownVm.code, 0);
  const assign = await cli('policy', 'assign', 'y', '--vm', 'nosuch');
  t.equal(assign.code, 5);
  t.match(assign.stderr, /nosuch/);
  // This appliance was built without VM groups (test/policy-groups.test.ts has them).
  const group = await cli('policy', 'assign', 'y', '--group', 'web');
  t.equal(group.code, 1, 'NOT_SUPPORTED');
  t.match(group.stderr, /this appliance has no VM groups/);
  t.match((await cli('policy', 'assign', 'y')).stderr, /give --vm <vm> or --group <group> \(one of them\)/);
  t.match((await cli('policy', 'list', '--keep', 'daily=1')).stderr, /policy list takes no --keep/);
  t.match((await cli('share', 'list', '--dry-run')).stderr, /share takes no --dry-run/);
  t.match((await cli('policy', 'frobnicate')).stderr, /policy: expected create, list, show, assign, unassign, remove or prune/);
});
