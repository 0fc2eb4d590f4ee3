// A group backup against real QEMUs (qemu-system-x86_64 -S, TCG, no guest; guest-like writes with
// HMP qemu-io through each QEMU's second QMP monitor, since a backup holds the first), a real NBD
// export per VM, a real store and namespace:
// - every VM's point carries the same name, and each disk holds what it held at the transaction
//   (writes made after the moment are not in the point);
// - the copies run busiest-first: the VM written fastest before the moment is copied first,
//   whatever the names or sizes say; largest and alphabetical orders are honoured too;
// - each VM's fleecing is released when its own copy ends, before its point is made (the events:
//   the first VM's release comes before the last VM's copy ends; with release 'end' none does),
//   and nothing is left in any QEMU;
// - with two copies at once the busiest VM's copy still runs alone on its reader until its
//   release, then the others run side by side;
// - a VM whose QEMU is killed after the moment fails alone; a VM the group names but nobody
//   registered fails alone;
// - bad input: an empty group, --parallel 0, an unknown order.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { BackupService, type VmConfigLike } from '../src/backup/backup-service.js';
import { runGroupBackup, type GroupBackupResult } from '../src/backup/group-backup.js';
import { isVmvaultError } from '../src/errors.js';
import type { Namespace } from '../src/namespace/namespace.js';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { DiskModel, progress, sha, vmLookup } from './helpers/backup.js';
import { openNs, readFile } from './helpers/ns.js';
import { qemuIo, startQemu, type TestQemu } from './helpers/qemu.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;
const WORKFLOWS = `
workflows:
  crash:
    - snapshot
    - copy
`;

interface Vm {
  name: string;
  q: TestQemu;
  model: DiskModel;
  /** The second monitor: writes while a backup holds the first. */
  c2: QmpClient;
}

interface Setup {
  ns: Namespace;
  svc: BackupService;
  vms: Vm[];
  write(vm: Vm, pattern: number, offset: number, length: number): Promise<void>;
  pointSha(vm: Vm, point: string): Promise<string>;
}

async function setup(t: TestT, names: string[], sizeMiB: Record<string, number> = {}): Promise<Setup> {
  const dir = tmpDir(t, 'vmvault-grp-');
  const { ns } = await openNs(t, path.join(dir, 'store'));
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  fs.writeFileSync(path.join(data, 'workflows.yaml'), WORKFLOWS);
  const vms: Vm[] = [];
  const configs: VmConfigLike[] = [];
  for (const name of names) {
    const size = (sizeMiB[name] ?? 16) * MiB;
    const q = await startQemu({ t, dir, name, secondQmp: true, disks: [{ device: 'vda', sizeBytes: size, file: path.join(dir, `${name}.qcow2`) }] });
    const c2 = await QmpClient.connect(q.qmp2!);
    t.teardown(() => c2.close().catch(() => {}));
    vms.push({ name, q, model: new DiskModel(size), c2 });
    configs.push({ name, share: name, qmp: q.qmp, workflow: 'crash' });
  }
  const svc = new BackupService(ns, vmLookup(configs), { dataDir: data });
  return {
    ns,
    svc,
    vms,
    write: async (vm, pattern, offset, length) => {
      await qemuIo(vm.c2, vm.q.qdevOf('vda'), vm.model.write(pattern, offset, length));
    },
    pointSha: async (vm, point) => sha(await readFile(ns, `/${vm.name}/.snapshots/${point}/vda.raw`)),
  };
}

/** Writes 1 MiB at a time into [8 MiB, 32 MiB) every `everyMs` until stopped (the VM's load). */
function loadLoop(s: Setup, vm: Vm, everyMs: number): () => Promise<void> {
  let stop = false;
  const done = (async () => {
    for (let i = 0; !stop; i++) {
      await s.write(vm, 0x50 + (i % 16), 8 * MiB + (i % 24) * MiB, MiB);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return async () => {
    stop = true;
    await done;
  };
}

function eventAt(r: GroupBackupResult, vm: string, event: string): number {
  const e = r.events.find((x) => x.vm === vm && x.event === event);
  if (!e) throw new Error(`no ${event} event for ${vm}`);
  return e.t;
}

async function leftInQemu(vm: Vm): Promise<string[]> {
  const nodes = await vm.c2.execute<Array<{ 'node-name': string }>>('query-named-block-nodes', { flat: true });
  const jobs = await vm.c2.execute<Array<{ device: string }>>('query-block-jobs');
  const exps = await vm.c2.execute<Array<{ id: string }>>('query-block-exports');
  return [...nodes.map((n) => n['node-name']).filter((n) => n.startsWith('vmv-')), ...jobs.map((j) => j.device), ...exps.map((e) => e.id)];
}

t.test('one moment for all, busiest first, each fleecing released when its copy ends', async (t) => {
  // Names and sizes point the other way from the load: the alphabetically first and largest VM is idle.
  const s = await setup(t, ['g-alpha', 'g-bravo', 'g-charlie'], { 'g-alpha': 48, 'g-bravo': 32, 'g-charlie': 32 });
  const [alpha, bravo, charlie] = s.vms;
  for (const vm of s.vms) await s.write(vm, 0x11, 0, 8 * MiB);
  const stops = [loadLoop(s, charlie, 10), loadLoop(s, bravo, 400)];
  const before: Record<string, string> = {};
  const p = progress();
  const r = await runGroupBackup(
    s.svc,
    'web',
    s.vms.map((v) => ({ name: v.name })),
    {
      parallel: 2,
      loadWindowMs: 1500,
      afterMoment: async () => {
        for (const stop of stops) await stop();
        // The point holds the disks as they were at the transaction, whatever comes after.
        for (const vm of s.vms) before[vm.name] = vm.model.sha();
        for (const vm of s.vms) await s.write(vm, 0x99, 0, 4 * MiB);
      },
    },
    p,
  );
  t.equal(r.succeeded, 3, 'every VM made a point');
  t.equal(r.failed, 0);
  t.ok(r.vms.every((v) => v.point === r.point), 'all points carry the run\'s one name');
  for (const vm of s.vms) {
    const snaps = (await s.ns.snapshots.list(vm.name)).map((x) => x.name);
    t.same(snaps, [r.point], `${vm.name}: its share has the point`);
  }
  // The disk contents: the model as it was at the moment (writes from the load loops stopped
  // before it was taken; the 0x99 writes came after the moment).
  for (const vm of s.vms) {
    t.not(vm.model.sha(), before[vm.name], 'the disk changed after the moment');
    const stored = await readFile(s.ns, `/${vm.name}/.snapshots/${r.point}/vda.raw`);
    t.equal(stored.subarray(0, 8 * MiB).every((b) => b === 0x11), true, `${vm.name}: the point has the bytes before the moment, not the 0x99 written after`);
  }
  // Idle VMs: their whole disk is known.
  t.equal(await s.pointSha(alpha, r.point), before['g-alpha'], 'g-alpha: the whole disk is the one at the moment');

  // qemu-io writes go through the block layer but not a guest device, so the dirty-bytes probe
  // sees them and query-blockstats does not (a booted guest's writes show in both).
  const load = Object.fromEntries(r.vms.map((v) => [v.vm, v.load!.dirtyBytesPerSec]));
  t.ok(load['g-charlie'] > load['g-bravo'] && load['g-bravo'] > load['g-alpha'], `the write rates were measured: ${JSON.stringify(load)}`);
  t.same(r.copyOrder, ['g-charlie', 'g-bravo', 'g-alpha'], 'busiest first');
  t.same(r.vms.map((v) => [v.vm, v.copyRank]), [['g-alpha', 3], ['g-bravo', 2], ['g-charlie', 1]]);

  // The moment: every transaction completed before the first copy started, close together.
  const firstCopy = Math.min(...r.vms.map((v) => v.copyStartAt!));
  t.ok(r.vms.every((v) => v.transactionAt! <= firstCopy), 'every transaction before any copy');
  t.type(r.skewMs, 'number');
  t.ok(r.skewMs! >= 0 && r.skewMs! < 2000, `skew measured: ${r.skewMs} ms`);
  t.match(p.lines.join('\n'), /moment: 3 transaction\(s\), skew [\d.]+ ms/, 'the skew is in the job log');

  // Early release: each VM released after its own copy ended, the first before the last copy ended.
  for (const v of r.vms) t.ok(v.releasedAt! >= v.copyEndAt!, `${v.vm}: released after its own copy`);
  t.ok(eventAt(r, 'g-charlie', 'released') < eventAt(r, 'g-alpha', 'copy-end'), 'the busiest VM was released before the last copy ended');
  t.ok(r.vms.find((v) => v.vm === 'g-charlie')!.lifetimeMs! < r.vms.find((v) => v.vm === 'g-alpha')!.lifetimeMs!, 'the busiest VM held its point for the shortest time');
  t.match(p.lines.join('\n'), /g-charlie: fleecing released \(point held \d+ ms/, 'each release is a job log line');
  // Released as its copy has read everything, before its point is made (vm.json, snapshot, record).
  for (const v of r.vms) {
    const released = v.log.findIndex((l) => /fleece: released/.test(l));
    const snapshot = v.log.findIndex((l) => /vm\.json and snapshot/.test(l));
    t.ok(released >= 0 && released < snapshot, `${v.vm}: fleecing released before the point was made (job log lines ${released}, ${snapshot})`);
  }
  // Two copies at once, but the busiest (under write load) has its reader to itself until its
  // fleecing is released: no other copy starts or ends before that, so its lifetime is the shortest.
  // (Event times are rounded to 0.1 ms: the next copy may start in the same tenth as the release.)
  const charlieReleased = eventAt(r, 'g-charlie', 'released');
  const beside = r.events.filter((e) => e.vm !== 'g-charlie' && (e.event === 'copy-start' || e.event === 'copy-end') && e.t < charlieReleased);
  t.same(beside, [], `no other copy ran beside the busiest VM's (released at ${charlieReleased} ms)`);
  t.match(p.lines.join('\n'), /g-charlie: copy 1 starts .*alone on its reader \(local\)/, 'the job log says so');
  const bravoStart = eventAt(r, 'g-bravo', 'copy-start');
  t.ok(eventAt(r, 'g-alpha', 'copy-start') < eventAt(r, 'g-bravo', 'copy-end') && bravoStart < eventAt(r, 'g-alpha', 'copy-end'), 'then the other two ran side by side');
  for (const vm of s.vms) t.same(await leftInQemu(vm), [], `${vm.name}: no fleecing node, job or export left`);

  // A second run: incremental, same moment again; order by the dirty bytes when nothing writes.
  await s.write(bravo, 0x22, 40 * MiB - 32 * MiB, 2 * MiB);
  await s.write(alpha, 0x23, 40 * MiB, 8 * MiB);
  const r2 = await runGroupBackup(s.svc, 'web', s.vms.map((v) => ({ name: v.name })), { parallel: 2, loadWindowMs: 200 }, progress());
  t.equal(r2.succeeded, 3);
  t.not(r2.point, r.point);
  t.ok(r2.vms.every((v) => v.kind === 'incremental'), 'the second run is incremental');
  t.ok(r2.vms.every((v) => v.load!.dirtyBytesPerSec === 0), 'nothing writes during the second run');
  const toRead = r2.vms.map((v) => [v.vm, v.load!.bytesToRead] as const).sort((a, b) => b[1] - a[1]);
  t.ok(r2.vms.find((v) => v.vm === 'g-alpha')!.load!.bytesToRead >= 12 * MiB, 'an incremental\'s bytes to read: the checkpoint\'s dirty count');
  t.same(r2.copyOrder, toRead.map(([vm]) => vm), `no writes now: the most dirty bytes first (${JSON.stringify(toRead)})`);
  for (const vm of s.vms) t.equal(await s.pointSha(vm, r2.point), vm.model.sha(), `${vm.name}: the incremental point is the disk now`);
});

t.test('largest-first and alphabetical orders; release at the end holds every point until the last copy', async (t) => {
  const s = await setup(t, ['o-a', 'o-b', 'o-c'], { 'o-a': 8, 'o-b': 24, 'o-c': 16 });
  for (const vm of s.vms) await s.write(vm, 0x31, 0, vm.model.bytes.length);
  const largest = await runGroupBackup(s.svc, 'g', s.vms.map((v) => ({ name: v.name })), { parallel: 1, order: 'largest', loadWindowMs: 100, release: 'end' }, progress());
  t.same(largest.copyOrder, ['o-b', 'o-c', 'o-a'], 'largest first');
  const lastCopyEnd = Math.max(...largest.vms.map((v) => v.copyEndAt!));
  t.ok(largest.vms.every((v) => v.releasedAt! >= lastCopyEnd), 'release at the end: no VM released before the last copy ended');
  t.ok(largest.vms.every((v) => v.scratchBytes! > 0), 'scratch sizes are measured');
  const alpha = await runGroupBackup(s.svc, 'g', s.vms.map((v) => ({ name: v.name })).reverse(), { parallel: 1, order: 'alphabetical', loadWindowMs: 100, full: true }, progress());
  t.same(alpha.copyOrder, ['o-a', 'o-b', 'o-c'], 'alphabetical');
  t.equal(alpha.succeeded, 3);
});

t.test('a VM whose QEMU dies mid-run fails alone; an unregistered VM fails alone', async (t) => {
  const s = await setup(t, ['d-one', 'd-two', 'd-three']);
  for (const vm of s.vms) await s.write(vm, 0x41, 0, 4 * MiB);
  const victim = s.vms[1];
  const p = progress();
  const r = await runGroupBackup(
    s.svc,
    'g',
    [...s.vms.map((v) => ({ name: v.name })), { name: 'd-ghost' }],
    {
      parallel: 1,
      loadWindowMs: 100,
      afterMoment: async () => {
        process.kill(victim.q.pid, 'SIGKILL');
        await victim.q.stop();
      },
    },
    p,
  );
  t.equal(r.succeeded, 2, 'the others made their points');
  t.equal(r.failed, 2);
  const byVm = Object.fromEntries(r.vms.map((v) => [v.vm, v]));
  t.equal(byVm['d-two'].ok, false);
  t.ok(byVm['d-two'].error!.message.length > 0, `the dead VM says why: ${byVm['d-two'].error!.message}`);
  t.equal(byVm['d-ghost'].error!.code, 'NOT_FOUND', 'the unregistered VM: NOT_FOUND');
  for (const name of ['d-one', 'd-three']) {
    t.equal(byVm[name].ok, true);
    t.equal(await s.pointSha(s.vms.find((v) => v.name === name)!, r.point), s.vms.find((v) => v.name === name)!.model.sha(), `${name}: its point is whole`);
  }
  t.same((await s.ns.snapshots.list('d-two').catch(() => [])).map((x) => x.name), [], 'no point for the dead VM');
  t.match(p.lines.join('\n'), /d-two: failed/);
});

t.test('bad input: an empty group, parallel 0, an unknown order; every VM failing fails the job', async (t) => {
  const s = await setup(t, ['b-one']);
  const e = async (fn: () => Promise<unknown>, code: string, re: RegExp) => {
    try {
      await fn();
      t.fail('expected an error');
    } catch (err) {
      t.ok(isVmvaultError(err, code as never), `${code}: ${(err as Error).message}`);
      t.match((err as Error).message, re);
    }
  };
  await e(() => runGroupBackup(s.svc, 'empty', [], {}, progress()), 'INVALID_ARGUMENT', /group empty has no VM/);
  await e(() => runGroupBackup(s.svc, 'g', [{ name: 'b-one' }], { parallel: 0 }, progress()), 'INVALID_ARGUMENT', /parallel must be a whole number from 1/);
  await e(() => runGroupBackup(s.svc, 'g', [{ name: 'b-one' }], { order: 'random' as never }, progress()), 'INVALID_ARGUMENT', /order must be one of busiest, largest, alphabetical/);
  await e(() => runGroupBackup(s.svc, 'g', [{ name: 'nobody' }], { loadWindowMs: 10 }, progress()), 'IO', /no VM made a point \(nobody: no VM named nobody/);
  t.same(await s.ns.snapshots.list('b-one').catch(() => []), [], 'nothing was made');
});
