// Fleecing backup against a real QEMU (qemu-system-x86_64 -S, TCG, no guest; guest-like writes
// through the block layer with HMP qemu-io): a full point reads back over NBD identical to a
// qemu-img convert of the disk taken at that moment, writes after the point do not show; an
// incremental's dirty extents are exactly the written 64 KiB extents; abort() keeps the gap
// covered; raw disks and missing bitmaps fall back to full with a reason; release() leaves no
// node, job, export or scratch file behind, and is idempotent.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { NbdClient, type NbdExtent } from '../src/plugins/qemu/nbd-client.js';
import { Fleece, type FleeceExport } from '../src/plugins/qemu/fleece.js';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { describeVm, type VmDisk } from '../src/plugins/qemu/vm-info.js';
import { qemuIo, startQemu, type TestQemu } from './helpers/qemu.js';
import { runTool } from './helpers/run-tool.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Vm {
  q: TestQemu;
  qmp: QmpClient;
  disks: VmDisk[];
  dir: string;
  scratch: string;
}

async function startVm(t: TestT, disks: Array<{ device: string; sizeBytes: number; format?: 'qcow2' | 'raw' }>): Promise<Vm> {
  const dir = tmpDir(t, 'vmvault-fleece-');
  const q = await startQemu({ t, dir, disks: disks.map((d) => ({ ...d, file: path.join(dir, `${d.device}.${d.format ?? 'qcow2'}`) })) });
  const qmp = await QmpClient.connect(q.qmp);
  t.teardown(() => qmp.close());
  const vm = await describeVm(qmp);
  const scratch = path.join(dir, 'scratch');
  return { q, qmp, disks: vm.disks, dir, scratch };
}

async function write(vm: Vm, device: string, pattern: number, offset: number, length: number): Promise<void> {
  await qemuIo(vm.qmp, vm.q.qdevOf(device), `write -P 0x${pattern.toString(16)} ${offset} ${length}`);
}

/** The disk as it is now: flushed through QEMU, then qemu-img convert -U of its file to raw. */
async function convertNow(vm: Vm, device: string, out: string): Promise<Buffer> {
  await qemuIo(vm.qmp, vm.q.qdevOf(device), 'flush');
  const disk = vm.disks.find((d) => d.device === device)!;
  const r = await runTool('qemu-img', ['convert', '-U', '-f', disk.format, '-O', 'raw', disk.file, out]);
  if (r.code !== 0) throw new Error(`qemu-img convert: ${r.stderr}`);
  return fs.readFileSync(out);
}

async function readExport(sock: string, e: FleeceExport): Promise<Buffer> {
  const c = await NbdClient.connect({ socket: sock, exportName: e.exportName });
  try {
    const parts: Promise<Buffer>[] = [];
    for (let off = 0; off < c.size; off += 4 * MiB) parts.push(c.read(off, Math.min(4 * MiB, c.size - off)));
    return Buffer.concat(await Promise.all(parts));
  } finally {
    await c.close();
  }
}

async function dirtyExtents(sock: string, e: FleeceExport): Promise<Array<[number, number]>> {
  if (!e.dirtyBitmapContext) throw new Error(`export ${e.exportName} has no dirty bitmap`);
  const c = await NbdClient.connect({ socket: sock, exportName: e.exportName, metaContexts: [e.dirtyBitmapContext] });
  try {
    const ext: NbdExtent[] = await c.blockStatus(0, c.size, e.dirtyBitmapContext);
    return ext.filter((x) => x.flags & 1).map((x) => [x.offset, x.length]);
  } finally {
    await c.close();
  }
}

async function bitmaps(vm: Vm, node: string): Promise<Array<{ name: string; recording: boolean; persistent: boolean }>> {
  const nodes = await vm.qmp.execute<Array<{ 'node-name': string; 'dirty-bitmaps'?: any[] }>>('query-named-block-nodes', { flat: true });
  // Unnamed bitmaps are QEMU's own (a running backup job's copy bitmap).
  return (nodes.find((n) => n['node-name'] === node)?.['dirty-bitmaps'] ?? []).filter((b: any) => b.name).map((b: any) => ({ name: b.name, recording: b.recording, persistent: b.persistent }));
}

/** Nothing of the fleece is left in QEMU or on disk. */
async function assertReleased(t: TestT, vm: Vm, f: Fleece): Promise<void> {
  const nodes = (await vm.qmp.execute<Array<{ 'node-name': string }>>('query-named-block-nodes', { flat: true })).map((n) => n['node-name']);
  t.same(nodes.filter((n) => f.objects.nodes.includes(n) || n.startsWith('vmv-')), [], 'no scratch node left');
  t.same(await vm.qmp.execute('query-block-jobs'), [], 'no block job left');
  t.same(await vm.qmp.execute('query-block-exports'), [], 'no export left');
  t.same(f.objects.files.filter((p) => fs.existsSync(p)), [], 'no scratch file left');
}

t.test('full: the export is the disk at the point, later writes do not show, nothing left behind', async (t) => {
  const vm = await startVm(t, [
    { device: 'vda', sizeBytes: 64 * MiB },
    { device: 'vdb', sizeBytes: 16 * MiB },
  ]);
  await write(vm, 'vda', 0x11, 0, 64 * KiB);
  await write(vm, 'vda', 0x12, 5 * MiB, 300 * KiB);
  await write(vm, 'vda', 0x13, 63 * MiB, 1 * MiB);
  await write(vm, 'vdb', 0x21, 1 * MiB, 128 * KiB);
  const expectA = await convertNow(vm, 'vda', path.join(vm.dir, 'a.raw'));
  const expectB = await convertNow(vm, 'vdb', path.join(vm.dir, 'b.raw'));

  const lines: string[] = [];
  const f = await Fleece.prepare(vm.qmp, vm.disks, { scratchDir: vm.scratch, checkpoint: 'ck1', log: (l) => lines.push(l) });
  t.teardown(() => f.release());
  t.equal(fs.readdirSync(vm.scratch).length, 2, 'one scratch image per disk');
  for (const file of f.objects.files) {
    const info = JSON.parse((await runTool('qemu-img', ['info', '-U', '--output=json', file])).stdout);
    const disk = vm.disks.find((d) => file.includes(d.device))!;
    t.equal(info['virtual-size'], disk.sizeBytes, `scratch of ${disk.device} has the disk's exact virtual size`);
  }
  await f.pointInTime();
  // The guest writes on after the point: over data the point holds, and where it had nothing.
  await write(vm, 'vda', 0xee, 0, 128 * KiB);
  await write(vm, 'vda', 0xef, 5 * MiB + 100 * KiB, 64 * KiB);
  await write(vm, 'vda', 0xf0, 30 * MiB, 1 * MiB);
  await write(vm, 'vdb', 0xf1, 1 * MiB, 64 * KiB);
  await qemuIo(vm.qmp, vm.q.qdevOf('vda'), 'read -P 0xee 0 128k'); // the disk has them

  const sock = path.join(vm.dir, 'nbd.sock');
  const exps = await f.exportAll(sock);
  t.same(
    exps.map((e) => [e.device, e.exportName, e.sizeBytes, e.dirtyBitmapContext, e.fullReason]),
    [
      ['vda', 'vda', 64 * MiB, undefined, undefined],
      ['vdb', 'vdb', 16 * MiB, undefined, undefined],
    ],
  );
  t.ok((await readExport(sock, exps[0])).equals(expectA), 'vda over NBD is the disk at the point');
  t.ok((await readExport(sock, exps[1])).equals(expectB), 'vdb over NBD is the disk at the point (same moment)');

  await f.commit();
  await f.release();
  await assertReleased(t, vm, f);
  await f.release(); // idempotent
  t.same(await bitmaps(vm, 'disk-vda'), [{ name: 'ck1', recording: true, persistent: true }], 'the checkpoint stays, persistent and recording');
  t.ok(lines.some((l) => /point in time for 2 disk/.test(l)), 'the log names the one transaction');
});

t.test('incremental: dirty extents are exactly the written 64 KiB extents; abort keeps the gap covered', async (t) => {
  const vm = await startVm(t, [{ device: 'vda', sizeBytes: 32 * MiB }]);
  const sock = path.join(vm.dir, 'nbd.sock');
  await write(vm, 'vda', 0x01, 0, 32 * MiB);
  // Backup 1: full, checkpoint ck1.
  const f1 = await Fleece.prepare(vm.qmp, vm.disks, { scratchDir: vm.scratch, checkpoint: 'ck1' });
  t.teardown(() => f1.release());
  await f1.pointInTime();
  await f1.exportAll(sock);
  await f1.commit();
  await f1.release();

  // Writes of known extents after ck1: aligned, unaligned (one byte marks its whole 64 KiB).
  await write(vm, 'vda', 0x31, 1 * MiB, 64 * KiB);
  await write(vm, 'vda', 0x32, 4 * MiB + 64 * KiB, 128 * KiB);
  await write(vm, 'vda', 0x33, 10 * MiB + 100, 1);
  const expect2 = await convertNow(vm, 'vda', path.join(vm.dir, 'p2.raw'));
  const f2 = await Fleece.prepare(vm.qmp, vm.disks, { scratchDir: vm.scratch, checkpoint: 'ck2', previousCheckpoint: 'ck1' });
  t.teardown(() => f2.release());
  t.same(f2.plan, [{ device: 'vda', incremental: true }]);
  await f2.pointInTime();
  await write(vm, 'vda', 0x34, 20 * MiB, 64 * KiB); // after the point: not in this incremental
  const [e2] = await f2.exportAll(sock);
  t.equal(e2.dirtyBitmapContext, 'qemu:dirty-bitmap:vmvault-dirty');
  t.same(await dirtyExtents(sock, e2), [
    [1 * MiB, 64 * KiB],
    [4 * MiB + 64 * KiB, 128 * KiB],
    [10 * MiB, 64 * KiB],
  ], 'exactly the written extents are dirty');
  t.ok((await readExport(sock, e2)).equals(expect2), 'the incremental export reads as the disk at its point');
  await f2.commit();
  await f2.release();
  await assertReleased(t, vm, f2);
  t.same(await bitmaps(vm, 'disk-vda'), [{ name: 'ck2', recording: true, persistent: true }], 'ck1 dropped at commit, ck2 recording');

  // Backup 3 fails after its point: W1 before the point, W2 after, then abort.
  await write(vm, 'vda', 0x41, 2 * MiB, 64 * KiB); // W1 (plus 20 MiB from before)
  const f3 = await Fleece.prepare(vm.qmp, vm.disks, { scratchDir: vm.scratch, checkpoint: 'ck3', previousCheckpoint: 'ck2' });
  t.teardown(() => f3.release());
  await f3.pointInTime();
  t.same(
    (await bitmaps(vm, 'disk-vda')).sort((a, b) => a.name.localeCompare(b.name)),
    [
      { name: 'ck2', recording: false, persistent: true },
      { name: 'ck3', recording: true, persistent: true },
    ],
    'during the backup ck2 is frozen and ck3 records',
  );
  await write(vm, 'vda', 0x42, 6 * MiB, 64 * KiB); // W2, between the point and the abort
  await f3.exportAll(sock);
  await f3.abort();
  await f3.release();
  await assertReleased(t, vm, f3);
  t.same(await bitmaps(vm, 'disk-vda'), [{ name: 'ck2', recording: true, persistent: true }], 'ck3 gone, ck2 recording again');

  // Backup 4 from ck2 covers everything since backup 2's point: 20 MiB, W1 and W2.
  const f4 = await Fleece.prepare(vm.qmp, vm.disks, { scratchDir: vm.scratch, checkpoint: 'ck4', previousCheckpoint: 'ck2' });
  t.teardown(() => f4.release());
  await f4.pointInTime();
  const [e4] = await f4.exportAll(sock);
  t.same(await dirtyExtents(sock, e4), [
    [2 * MiB, 64 * KiB],
    [6 * MiB, 64 * KiB],
    [20 * MiB, 64 * KiB],
  ], 'the writes of the failed backup are still in the next incremental');
  await f4.abort();
  await f4.release();
  await assertReleased(t, vm, f4);
});

t.test('full with a reason: raw disk, missing bitmap; a bad plan is refused before anything is made', async (t) => {
  const vm = await startVm(t, [
    { device: 'vda', sizeBytes: 8 * MiB },
    { device: 'vdb', sizeBytes: 8 * MiB, format: 'raw' },
  ]);
  const sock = path.join(vm.dir, 'nbd.sock');
  const lines: string[] = [];
  const f = await Fleece.prepare(vm.qmp, vm.disks, { scratchDir: vm.scratch, checkpoint: 'ck2', previousCheckpoint: 'ck1', log: (l) => lines.push(l) });
  t.teardown(() => f.release());
  await f.pointInTime();
  const exps = await f.exportAll(sock);
  t.equal(exps[0].dirtyBitmapContext, undefined);
  t.match(exps[0].fullReason, /checkpoint bitmap ck1 is missing on disk vda/);
  t.equal(exps[1].dirtyBitmapContext, undefined);
  t.match(exps[1].fullReason, /vdb is a raw image: QEMU can keep a persistent dirty bitmap only in a qcow2 image/);
  t.ok(lines.some((l) => /vda: full backup: checkpoint bitmap ck1 is missing/.test(l)), 'the log says why');
  await f.commit();
  await f.release();
  await assertReleased(t, vm, f);
  t.same(await bitmaps(vm, 'disk-vdb'), [], 'no bitmap on the raw disk');
  t.same(await bitmaps(vm, 'disk-vda'), [{ name: 'ck2', recording: true, persistent: true }]);

  await t.rejects(Fleece.prepare(vm.qmp, vm.disks, { scratchDir: vm.scratch, checkpoint: 'ck2' }), { code: 'ALREADY_EXISTS' });
  await t.rejects(
    Fleece.prepare(vm.qmp, [{ ...vm.disks[0], node: 'no-such-node' }], { scratchDir: vm.scratch, checkpoint: 'ck3' }),
    { code: 'NOT_FOUND', message: /no-such-node does not exist/ },
  );
  await t.rejects(
    Fleece.prepare(vm.qmp, [{ ...vm.disks[0], sizeBytes: 4 * MiB }], { scratchDir: vm.scratch, checkpoint: 'ck3' }),
    { code: 'CONFLICT', message: /8388608 bytes now/ },
  );
  t.same(fs.readdirSync(vm.scratch), [], 'a refused plan made no scratch file');
});

t.test('a failure halfway through prepare and a second NBD server leave nothing behind', async (t) => {
  const vm = await startVm(t, [{ device: 'vda', sizeBytes: 8 * MiB }]);
  const sock = path.join(vm.dir, 'nbd.sock');
  // A scratch directory that cannot be written: qemu-img create fails after the decision.
  const blocked = path.join(vm.dir, 'file-not-dir');
  fs.writeFileSync(blocked, '');
  await t.rejects(Fleece.prepare(vm.qmp, vm.disks, { scratchDir: path.join(blocked, 'scratch'), checkpoint: 'ck1' }));
  t.same(await vm.qmp.execute('query-block-jobs'), []);
  t.same((await bitmaps(vm, 'disk-vda')).length, 0, 'no checkpoint added');

  // Someone else runs the VM's NBD server: exportAll is refused with CONFLICT, release cleans up.
  await vm.qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: path.join(vm.dir, 'other.sock') } } });
  const f = await Fleece.prepare(vm.qmp, vm.disks, { scratchDir: vm.scratch, checkpoint: 'ck1' });
  t.teardown(() => f.release());
  await f.pointInTime();
  await t.rejects(f.exportAll(sock), { code: 'CONFLICT', message: /NBD server is already running/ });
  await f.abort();
  await f.release();
  await assertReleased(t, vm, f);
  t.same(await bitmaps(vm, 'disk-vda'), [], 'abort of a full backup drops its checkpoint');
  await vm.qmp.execute('nbd-server-stop');
});

t.test('an appliance killed mid-backup: the next prepare removes what it left; its checkpoint can be dropped', async (t) => {
  const vm = await startVm(t, [{ device: 'vda', sizeBytes: 8 * MiB }]);
  const sock = path.join(vm.dir, 'nbd.sock');
  const f1 = await Fleece.prepare(vm.qmp, vm.disks, { scratchDir: vm.scratch, checkpoint: 'ck1' });
  await f1.pointInTime();
  await f1.commit();
  await f1.release();
  await write(vm, 'vda', 0x51, 0, 64 * KiB);
  // The dead appliance's backup: point taken, exported, never released; its QMP connection gone.
  const f2 = await Fleece.prepare(vm.qmp, vm.disks, { scratchDir: vm.scratch, checkpoint: 'ck2', previousCheckpoint: 'ck1' });
  await f2.pointInTime();
  await f2.exportAll(sock);
  await vm.qmp.close();
  t.ok(fs.existsSync(f2.objects.files[0]), 'its scratch file is still there');

  const qmp = await QmpClient.connect(vm.q.qmp);
  t.teardown(() => qmp.close());
  const vm2 = { ...vm, qmp };
  t.same(
    (await Fleece.checkpoints(qmp, vm.disks)).vda.map((b) => [b.name, b.recording]).sort(),
    [['ck1', false], ['ck2', true]],
    'ck1 frozen by the dead backup, ck2 recording',
  );
  const lines: string[] = [];
  const f3 = await Fleece.prepare(qmp, vm.disks, { scratchDir: vm.scratch, checkpoint: 'ck3', previousCheckpoint: 'ck1', log: (l) => lines.push(l) });
  t.teardown(() => f3.release());
  t.ok(lines.some((l) => /removed export vmv-e-/.test(l)), 'stale export removed');
  t.ok(lines.some((l) => /stopped the NBD server/.test(l)), 'stale NBD server stopped');
  t.ok(lines.some((l) => /cancelled job vmv-j-/.test(l)), 'stale job cancelled');
  t.ok(lines.some((l) => /removed scratch node vmv-s-/.test(l)), 'stale scratch node removed');
  t.notOk(fs.existsSync(f2.objects.files[0]), 'and its scratch file');
  t.match(f3.plan, [{ device: 'vda', incremental: false, fullReason: /ck1 on disk vda is not recording \(an interrupted backup left it disabled\)/ }]);
  await f3.pointInTime();
  const [e3] = await f3.exportAll(sock);
  t.match(e3.fullReason, /not recording/);
  await f3.commit();
  await f3.release();
  await assertReleased(t, vm2, f3);
  t.same(await Fleece.removeCheckpoints(qmp, vm.disks, ['ck2']), ['fleece: removed checkpoint ck2 from vda']);
  t.same((await Fleece.checkpoints(qmp, vm.disks)).vda.map((b) => [b.name, b.recording, b.persistent]), [['ck3', true, true]]);
  t.same(await Fleece.removeStale(qmp), [], 'nothing stale any more');
});
