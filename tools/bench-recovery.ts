// npm run bench:recovery [-- --work DIR] [--reads N]   (node dist/tools/bench-recovery.js)
// Prints one JSON line per figure, {"figure","value","unit"}; notes go to stderr.
//
// Instant recovery with the real test guest (TCG) and a real appliance process:
//   recovery.extra_s        time from `POST /vms/{vm}/recoveries` to the recovered guest's agent
//                           answering guest-ping, minus the same guest's boot time from a local
//                           copy of its disk (QEMU start to guest-ping) measured in the same run.
//                           Goal <= 5 s.
//   recovery.read_vs_local  `qemu-img bench` reads (64 KiB, sequential over the image, cache=none
//                           where the file system takes O_DIRECT, else writeback with the page
//                           cache dropped for the file first) of the clone's vda.raw through the
//                           mount / the same reads of a local copy of it. Goal >= 0.7.
// Both guests run alone (the other is stopped) so they do not share the two cores.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startAppliance, type Appliance } from '../test/helpers/appliance.js';
import { bootGuest } from '../test/helpers/guest.js';
import { qga } from '../test/helpers/qemu-sockets.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const emit = (figure: string, value: number, unit: string, extra: object = {}): void => void process.stdout.write(JSON.stringify({ figure, value, unit, ...extra }) + '\n');
const note = (l: string): void => void process.stderr.write(`bench:recovery: ${l}\n`);

const teardowns: Array<() => unknown> = [];
const t = { teardown: (fn: () => unknown) => void teardowns.push(fn) };

async function job(app: Appliance, res: { status: number; body: any }): Promise<any> {
  if (res.status !== 202) throw new Error(`expected 202, got ${res.status}: ${JSON.stringify(res.body)}`);
  for (;;) {
    const j = await app.api('GET', `/jobs/${res.body.job}`);
    if (j.body.state === 'succeeded') return j.body;
    if (j.body.state === 'failed' || j.body.state === 'cancelled') throw new Error(`job ${j.body.kind} ${j.body.state}: ${j.body.error?.message}\n${j.body.log?.join('\n')}`);
    await sleep(50);
  }
}

async function agentUp(sock: string, ms = 600_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      await qga(sock, 'guest-ping', undefined, 2000);
      return;
    } catch (err) {
      if (Date.now() > until) throw err;
      await sleep(100);
    }
  }
}

/** MB/s of sequential 64 KiB reads of `file` by qemu-img bench. */
async function readSpeed(file: string, count: number): Promise<{ mbps: number; cache: string }> {
  for (const cache of ['none', 'writeback']) {
    if (cache === 'writeback') await run('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']).catch(() => {});
    const t0 = performance.now();
    try {
      await run('qemu-img', ['bench', '-f', 'raw', '-t', cache, '-c', String(count), '-s', '65536', '-S', '65536', '-d', '8', file], { maxBuffer: 1 << 20 });
    } catch (err) {
      note(`qemu-img bench -t ${cache} ${file}: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`);
      continue;
    }
    const s = (performance.now() - t0) / 1000;
    return { mbps: (count * 65536) / s / 1e6, cache };
  }
  throw new Error(`qemu-img bench could not read ${file}`);
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(arg('--work') ?? os.tmpdir(), 'vmvault-bench-recovery-'));
  teardowns.push(() => fs.rmSync(work, { recursive: true, force: true }));
  const app = await startAppliance(t, path.join(work, 'app'));

  // The baseline: the guest booted from a local copy of its disk, alone.
  let t0 = performance.now();
  const g = await bootGuest(t, { dir: path.join(work, 'guest') });
  const localBoot = (performance.now() - t0) / 1000;
  note(`local boot (QEMU start to guest-ping): ${localBoot.toFixed(1)} s`);
  const add = await app.api('POST', '/vms', { name: 'bench', qmp: g.qmp, qga: g.qga });
  if (add.status !== 201) throw new Error(`vm add: ${JSON.stringify(add.body)}`);
  const b = await job(app, await app.api('POST', '/vms/bench/backups', {}));
  note(`backup ${b.result.point}: ${(b.result.durationMs / 1000).toFixed(1)} s`);
  await g.stop();

  // Instant recovery, command to guest agent.
  t0 = performance.now();
  const r = await job(app, await app.api('POST', '/vms/bench/recoveries', {}));
  const started = (performance.now() - t0) / 1000;
  const sock = (r.result.qga as string).replace(/^unix:/, '');
  await agentUp(sock);
  const recovered = (performance.now() - t0) / 1000;
  note(`recover job ${started.toFixed(2)} s (clone + QEMU answering), guest agent after ${recovered.toFixed(1)} s`);
  emit('recovery.extra_s', Number((recovered - localBoot).toFixed(2)), 's', { recovered_s: Number(recovered.toFixed(2)), local_boot_s: Number(localBoot.toFixed(2)), job_s: Number(started.toFixed(2)) });

  // Reads: the clone through the mount vs a local copy, with the VM stopped (clone kept).
  const stop = await app.api('POST', `/recoveries/${r.result.name}/stop`, {});
  if (stop.status !== 200) throw new Error(`stop: ${JSON.stringify(stop.body)}`);
  const onMount = path.join(app.mount, r.result.name, 'vda.raw');
  const local = path.join(work, 'local-vda.raw');
  await run('cp', ['--sparse=always', onMount, local]);
  const size = fs.statSync(local).size;
  const count = Number(arg('--reads') ?? Math.floor(size / 65536));
  const a = await readSpeed(local, count);
  const m = await readSpeed(onMount, count);
  const a2 = await readSpeed(local, count);
  const localMbps = (a.mbps + a2.mbps) / 2;
  note(`reads of ${count} x 64 KiB: local ${a.mbps.toFixed(0)} / ${a2.mbps.toFixed(0)} MB/s (cache=${a.cache}), mount ${m.mbps.toFixed(0)} MB/s (cache=${m.cache})`);
  emit('recovery.read_vs_local', Number((m.mbps / localMbps).toFixed(3)), 'ratio', { mount_mbps: Number(m.mbps.toFixed(1)), local_mbps: Number(localMbps.toFixed(1)), cache: m.cache });
}

try {
  await main();
} finally {
  for (const fn of teardowns.reverse()) {
    try {
      await fn();
    } catch (err) {
      note(`teardown: ${(err as Error).message}`);
    }
  }
}
