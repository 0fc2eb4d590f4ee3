// The instant-recovery service's life cycle and refusals with a real namespace, real clones and a
// real QEMU (TCG, no guest: SeaBIOS finds nothing to boot and waits), in-process. The one stand-in:
// QEMU opens the clone's disk from a plain directory standing in for the FUSE mount (a copy of the
// same bytes), because this process would otherwise serve the mount its own QEMU reads; the mount
// itself is exercised end to end in recover-guest.test.ts.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { RecoveryService } from '../src/backup/recovery/recovery-service.js';
import { isVmvaultError } from '../src/errors.js';
import { progress, vmLookup } from './helpers/backup.js';
import { openNs, writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const qemu = fs.existsSync('/usr/bin/qemu-system-x86_64') ? false : 'qemu-system-x86_64 is missing';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

const vmJson = (machine: string) =>
  Buffer.from(JSON.stringify({ version: 1, point: 'x', name: 'vm1', uuid: '', status: 'running', machine, cpus: 1, memoryBytes: 64 << 20, disks: [{ device: 'vda', node: 'disk0', file: '/x', format: 'raw', sizeBytes: 1 << 20 }], nics: [{ id: 'nic0', model: 'virtio-net-pci', mac: '52:54:00:12:34:56' }] }));

t.test('recover, refuse, stop (keep or drop the clone), adopt after a restart, close', { skip: qemu, timeout: 180_000 }, async (t) => {
  const dir = tmpDir(t, 'vmvault-recsvc-');
  const { ns } = await openNs(t, path.join(dir, 'store'));
  const data = path.join(dir, 'data');
  const mount = path.join(dir, 'fake-mount');
  fs.mkdirSync(data);
  fs.mkdirSync(mount);
  const disk = Buffer.alloc(1 << 20, 0);
  disk.write('vmvault recovery test disk', 4096);
  await ns.shares.create('vm1');
  await writeFile(ns, '/vm1/vda.raw', disk);
  await ns.snapshots.create('vm1', 'p-none');
  await writeFile(ns, '/vm1/vm.json', Buffer.from('{ not json'));
  await ns.snapshots.create('vm1', 'p-garbage');
  await ns.fs.unlink('/vm1/vm.json');
  await writeFile(ns, '/vm1/vm.json', vmJson('no-such-machine'));
  await ns.snapshots.create('vm1', 'p-badqemu');
  await ns.fs.unlink('/vm1/vm.json');
  await writeFile(ns, '/vm1/vm.json', vmJson('pc'));
  await ns.snapshots.create('vm1', 'p1');
  const points = ['p-none', 'p-garbage', 'p-badqemu', 'p1'].map((point) => ({ point }));
  const vms = vmLookup([{ name: 'vm1', share: 'vm1', qmp: 'unix:/nonexistent' }]);
  const opts = { dataDir: data, mountPath: mount, points: async () => points, forbiddenRoots: [{ path: mount, what: 'mount' }, { path: data, what: 'data directory' }] };
  const svc = new RecoveryService(ns, vms, opts);
  await svc.start();
  const pids: number[] = [];
  t.teardown(() => {
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
  // The stand-in for the mount: the clone's file as QEMU would find it there.
  const stage = (name: string) => {
    fs.mkdirSync(path.join(mount, name), { recursive: true });
    fs.writeFileSync(path.join(mount, name, 'vda.raw'), disk);
  };
  const refused = async (what: string, p: Promise<unknown>, code: string, re: RegExp) => {
    try {
      await p;
      t.fail(`${what}: not refused`);
    } catch (err) {
      t.ok(isVmvaultError(err), `${what}: a typed error`);
      t.equal((err as { code?: string }).code, code, `${what}: ${code}`);
      t.match((err as Error).message, re, `${what}: ${(err as Error).message}`);
    }
  };
  const noShare = async (name: string, what: string) => t.equal(await ns.shares.get(name).then(() => true, () => false), false, `${what}: no clone ${name} left behind`);

  await refused('a point without vm.json', svc.recover('vm1', { point: 'p-none', name: 'r0' }, progress()), 'NOT_FOUND', /has no vm\.json/);
  await noShare('r0', 'no vm.json');
  await refused('a vm.json that is not JSON', svc.recover('vm1', { point: 'p-garbage', name: 'r0' }, progress()), 'INVALID_ARGUMENT', /not JSON/);
  await noShare('r0', 'bad vm.json');
  stage('r0');
  await refused('QEMU refuses the machine', svc.recover('vm1', { point: 'p-badqemu', name: 'r0' }, progress()), 'IO', /QEMU exited at start.*machine/is);
  await noShare('r0', 'QEMU failed');
  t.notOk(fs.existsSync(path.join(data, 'recover', 'r0')), 'no recovery directory left behind');
  await refused('an unknown point', svc.recover('vm1', { point: 'p9' }, progress()), 'NOT_FOUND', /no restore point "p9"/);
  await refused('an unknown VM', svc.recover('vm2', {}, progress()), 'NOT_FOUND', /vm2/);
  await refused('a bad name', svc.recover('vm1', { name: '../x' }, progress()), 'INVALID_ARGUMENT', /./);

  stage('r1');
  const p = progress();
  const r1 = await svc.recover('vm1', { name: 'r1' }, p);
  pids.push(r1.pid!);
  t.equal(r1.point, 'p1', 'the newest point by default');
  t.equal(r1.state, 'running');
  t.ok(alive(r1.pid!), `QEMU runs (pid ${r1.pid})`);
  t.same(r1.disks, [{ device: 'vda', file: path.join(mount, 'r1', 'vda.raw') }], 'the disk is the clone file under the mount');
  t.ok(r1.notes.some((n) => /user networking/.test(n)), 'the note says NICs are on user networking');
  t.ok(p.lines.some((l) => /clone r1 of vm1\/p1/.test(l)), 'the job log names the clone');
  t.equal((await ns.shares.get('r1')).origin?.snapshot, 'p1', 'the clone share was made from the point');
  const argv = fs.readFileSync(`/proc/${r1.pid}/cmdline`, 'utf8').split('\0');
  t.ok(argv.includes('-machine') && argv[argv.indexOf('-machine') + 1] === 'pc', 'QEMU got the machine from vm.json');
  t.ok(argv.some((a) => a.includes('mac=52:54:00:12:34:56')), 'and the NIC with its MAC');
  await refused('the same name again', svc.recover('vm1', { name: 'r1' }, progress()), 'ALREADY_EXISTS', /r1 exists already/);
  await refused('a name a share has', svc.recover('vm1', { name: 'vm1' }, progress()), 'ALREADY_EXISTS', /share named vm1/);
  await refused('migrate into the mount', svc.checkMigrate('r1', { to: path.join(mount, 'x') }), 'INVALID_ARGUMENT', /inside the appliance's mount/);
  await refused('migrate, relative target', svc.checkMigrate('r1', { to: 'prod' }), 'INVALID_ARGUMENT', /absolute/);
  await refused('migrate, bad format', svc.checkMigrate('r1', { to: path.join(dir, 'prod'), format: 'vmdk' as 'raw' }), 'INVALID_ARGUMENT', /raw or qcow2/);
  await refused('release of a VM still on the mount', svc.release('r1'), 'INVALID_ARGUMENT', /still runs from the mount/);

  // A restarted appliance adopts the running VM by pid.
  const again = new RecoveryService(ns, vms, opts);
  await again.start();
  t.same(again.list().map((r) => [r.name, r.state, r.pid]), [['r1', 'running', r1.pid]], 'a new service adopts the running recovery');

  const stopped = await again.stop('r1');
  t.same(stopped, { name: 'r1', clone: 'kept' });
  t.notOk(alive(r1.pid!), 'QEMU stopped');
  t.ok(await ns.shares.get('r1').then(() => true, () => false), 'the clone is kept');
  t.same(again.list(), [], 'the recovery is forgotten');
  await refused('migrate of a VM not recovered', again.checkMigrate('r1', { to: path.join(dir, 'prod') }), 'NOT_FOUND', /no instant recovery named "r1"/);

  stage('r2');
  const r2 = await again.recover('vm1', { name: 'r2', point: 'p1' }, progress());
  pids.push(r2.pid!);
  t.same(await again.stop('r2', { dropClone: true }), { name: 'r2', clone: 'dropped' });
  t.notOk(alive(r2.pid!), 'QEMU stopped');
  await noShare('r2', 'stop --drop-clone');

  // At appliance stop, a VM on the mount is stopped; the next start lists it as stopped.
  stage('r3');
  const r3 = await again.recover('vm1', { name: 'r3' }, progress());
  pids.push(r3.pid!);
  await again.close();
  t.notOk(alive(r3.pid!), 'close() stopped the VM on the mount');
  const third = new RecoveryService(ns, vms, opts);
  await third.start();
  t.same(third.list().map((r) => [r.name, r.state, r.pid]), [['r3', 'stopped', null]], 'listed as stopped after the restart');
  await refused('migrate of a stopped recovery', third.checkMigrate('r3', { to: path.join(dir, 'prod') }), 'INVALID_ARGUMENT', /not running/);
  await third.stop('r3', { dropClone: true });
  await noShare('r3', 'stop of a stopped recovery');

  // Migrate to raw files in a directory that does not exist yet; the migrated VM outlives close().
  stage('r4');
  const r4 = await third.recover('vm1', { name: 'r4' }, progress());
  pids.push(r4.pid!);
  const prod = path.join(dir, 'prod4');
  const mp = progress();
  const m = await third.migrate('r4', { to: prod, format: 'raw' }, mp);
  t.equal(m.state, 'migrated');
  t.same(m.disks, [{ device: 'vda', file: path.join(prod, 'vda.raw') }], 'the disk is now the target');
  t.equal(mp.advanced, 1 << 20, 'progress counted the mirrored bytes');
  t.ok(fs.readFileSync(path.join(prod, 'vda.raw')).equals(disk), 'the target holds the disk');
  await refused('a second migration', third.checkMigrate('r4', { to: path.join(dir, 'prod5') }), 'INVALID_ARGUMENT', /migrated already/);
  await third.close();
  t.ok(alive(r4.pid!), 'close() leaves a migrated VM running');
  const fourth = new RecoveryService(ns, vms, opts);
  await fourth.start();
  t.same(fourth.list().map((r) => [r.name, r.state, r.pid]), [['r4', 'migrated', r4.pid]], 'adopted as migrated after a restart');
  t.same(await fourth.release('r4', { dropClone: true }), { name: 'r4', clone: 'dropped', pid: r4.pid }, 'released, the VM running on');
  await noShare('r4', 'release --drop-clone');
  t.ok(alive(r4.pid!), 'the VM still runs');
  t.same(fourth.list(), [], 'forgotten');
});
