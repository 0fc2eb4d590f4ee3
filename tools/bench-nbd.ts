// npm run bench:nbd [-- --quick] [-- --dir DIR]
// Reading a whole disk over NBD with vmvault's NbdClient against nbdcopy (libnbd, C, its default
// multi-request mode) reading the same qemu-nbd export to /dev/null, in the same run: the
// client's share of the backup's read path. The disk is a qcow2 of 1 GiB (quick: 256 MiB), 7/8
// written with data, served by qemu-nbd -r. Also QEMU's own NBD server (the fleecing export of a
// -S QEMU) read by both. One JSON line per figure on stdout, a summary on stderr.

import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Fleece } from '../src/plugins/qemu/fleece.js';
import { NbdClient } from '../src/plugins/qemu/nbd-client.js';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { describeVm } from '../src/plugins/qemu/vm-info.js';
import { startQemu } from '../test/helpers/qemu.js';

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const dirArg = args.includes('--dir') ? args[args.indexOf('--dir') + 1] : undefined;
const SIZE = (quick ? 256 : 1024) * MiB;
const REPS = 3;

function emit(figure: string, value: number, unit: string): void {
  process.stdout.write(JSON.stringify({ figure, value: Math.round(value * 1000) / 1000, unit }) + '\n');
}

function log(s: string): void {
  process.stderr.write(s + '\n');
}

function run(cmd: string, argv: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile(cmd, argv, { maxBuffer: 16 * MiB }, (err, _o, e) => (err ? reject(new Error(`${cmd}: ${e || err.message}`)) : resolve())),
  );
}

/** Reads the whole export with NbdClient, 4 MiB per read() and 8 in flight (as the backup copy). */
async function readAll(socket: string, exportName: string): Promise<number> {
  const c = await NbdClient.connect({ socket, exportName });
  const t0 = performance.now();
  let inflight: Promise<unknown>[] = [];
  for (let off = 0; off < c.size; off += 4 * MiB) {
    inflight.push(c.read(off, Math.min(4 * MiB, c.size - off)));
    if (inflight.length >= 8) await inflight.shift();
  }
  await Promise.all(inflight);
  const ms = performance.now() - t0;
  await c.close();
  return ms;
}

async function nbdcopy(socket: string, exportName: string): Promise<number> {
  const t0 = performance.now();
  await run('nbdcopy', [`nbd+unix:///${exportName}?socket=${socket}`, 'null:']);
  return performance.now() - t0;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function compare(label: string, socket: string, exportName: string): Promise<void> {
  const ours: number[] = [];
  const theirs: number[] = [];
  for (let i = 0; i < REPS; i++) {
    theirs.push(await nbdcopy(socket, exportName));
    ours.push(await readAll(socket, exportName));
  }
  const mo = median(ours);
  const mt = median(theirs);
  log(`${label}: NbdClient ${mo.toFixed(0)} ms (${(SIZE / MiB / (mo / 1000)).toFixed(0)} MiB/s), nbdcopy ${mt.toFixed(0)} ms (${(SIZE / MiB / (mt / 1000)).toFixed(0)} MiB/s)`);
  emit(`nbd.${label}.read_mib_s`, SIZE / MiB / (mo / 1000), 'MiB/s');
  emit(`nbd.${label}.vs_nbdcopy`, mt / mo, 'ratio');
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(dirArg ?? os.tmpdir(), 'vmvault-bench-nbd-'));
  const children: number[] = [];
  try {
    const img = path.join(dir, 'disk.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', img, String(SIZE)]);
    // 7/8 data of varied bytes, one hole per 8 MiB (as a used disk has).
    const cmds: string[] = [];
    for (let off = 0; off < SIZE; off += 8 * MiB) cmds.push('-c', `write -P 0x${((off / (8 * MiB)) % 255 + 1).toString(16)} ${off} 7M`);
    await run('qemu-io', ['-f', 'qcow2', ...cmds, img]);

    const sock = path.join(dir, 'nbd.sock');
    const nbd = spawn('qemu-nbd', ['-t', '-r', '-e', '8', '-f', 'qcow2', '-k', sock, '-x', 'vda', img], { stdio: 'ignore' });
    children.push(nbd.pid!);
    for (let i = 0; i < 400 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25));
    await compare('qemu_nbd', sock, 'vda');
    process.kill(nbd.pid!, 'SIGTERM');

    // QEMU's own server, exporting a fleecing node as the backup reads it.
    const q = await startQemu({ dir, disks: [{ device: 'vda', file: img }] });
    children.push(q.pid);
    const qmp = await QmpClient.connect(q.qmp);
    const vm = await describeVm(qmp);
    const f = await Fleece.prepare(qmp, vm.disks, { scratchDir: path.join(dir, 'scratch'), checkpoint: 'bench' });
    await f.pointInTime();
    await f.exportAll(path.join(dir, 'fleece.sock'));
    await compare('qemu_fleece', path.join(dir, 'fleece.sock'), 'vda');
    await f.abort();
    await f.release();
    await qmp.close();
    await q.stop();
  } finally {
    for (const pid of children) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
