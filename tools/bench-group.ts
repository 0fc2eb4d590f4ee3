// npm run bench:group [-- --quick] [--parallel N] [--work DIR]   (node dist/tools/bench-group.js)
// Prints one JSON line per figure, {"figure","value","unit"}; notes go to stderr.
//
// Six real QEMUs (qemu-system-x86_64 -S, TCG, no guest), one qcow2 disk each, of different sizes
// and filled whole (so a full copy reads the whole disk). Each VM but one has a write load that
// runs through the whole bench: a loop of HMP `qemu-io` writes of 64 KiB, each to the block after
// the last, at its own rate, through a second QMP monitor (the backup holds the first). Every
// group run is a full backup (copies of equal size in every run) of all six, N copies at a time
// (default 2), with:
//   busiest-first, release early      the feature
//   largest-first, release early      baseline order 1
//   alphabetical, release early       baseline order 2
//   busiest-first, release at the end baseline for the scratch figure (every VM's fleecing held
//                                     until the last copy ended)
// Figures:
//   group.busiest.lifetime_rank       rank of the busiest VM's snapshot lifetime (transaction to
//                                     release) among the six in the busiest-first runs (the worse
//                                     of two); 1 = shortest (goal: 1). Also .largest_first and
//                                     .alphabetical.
//   group.scratch.vs_release_at_end   sum over VMs of scratch-image growth (bytes at release less
//                                     bytes when made), busiest-first early release /
//                                     busiest-first release at the end (goal <= 0.7)
//   group.skew_ms                     latest minus earliest transaction completion, the median of
//                                     the six measured runs (goal <= 100 on one machine); the
//                                     largest as group.skew_ms.max
// A warm-up run comes first (the first full copy stores new segments, the later ones mostly
// dedup); busiest-first runs with early release and with release at the end alternate, twice.
// The loads (ms between writes; 0 = idle) are chosen so that busiest, largest and alphabetical
// orders all differ: the busiest VM is neither the largest nor first by name.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { BackupService } from '../src/backup/backup-service.js';
import { type CopyOrder, type GroupBackupResult, runGroupBackup } from '../src/backup/group-backup.js';
import { Namespace } from '../src/namespace/namespace.js';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { SegmentStore } from '../src/store/store.js';
import { progress, vmLookup } from '../test/helpers/backup.js';
import { qemuIo, startQemu, type TestQemu } from '../test/helpers/qemu.js';

/** Bytes per load write. */
const WRITE_BYTES = 64 * 1024;

interface LoadSpec {
  name: string;
  qmp2: string;
  qdev: string;
  size: number;
  everyMs: number;
}

// The loads run in a worker thread: the copies keep the main event loop busy, and a load that
// waits for it would slow down exactly while it should be writing.
if (!isMainThread) {
  const specs = workerData as LoadSpec[];
  let stop = false;
  const counts: Record<string, number> = {};
  parentPort!.on('message', () => (stop = true));
  const clients = await Promise.all(specs.map((v) => QmpClient.connect(v.qmp2)));
  parentPort!.postMessage('ready');
  await Promise.all(
    specs.map(async (v, i) => {
      const c = clients[i];
      // Park-Miller: exact in doubles, every offset reached.
      let seed = 1 + v.name.charCodeAt(3) * 7919;
      const blocks = v.size / WRITE_BYTES;
      // Each write goes to the block after the last (from a start of its own): a guest writing new
      // data, as logs and a database's fresh pages are, not the same few blocks again and again.
      let block = seed % blocks;
      counts[v.name] = 0;
      try {
        while (!stop) {
          seed = (seed * 48271) % 2147483647;
          block = (block + 1) % blocks;
          await qemuIo(c, v.qdev, `write -P ${seed % 251} ${block * WRITE_BYTES} ${WRITE_BYTES / 1024}k`).catch(() => {});
          counts[v.name]++;
          await new Promise((r) => setTimeout(r, v.everyMs));
        }
      } finally {
        await c.close().catch(() => {});
      }
    }),
  );
  parentPort!.postMessage(counts);
  process.exit(0);
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const MiB = 1024 * 1024;
const quick = process.argv.includes('--quick');
const parallel = Number(arg('--parallel') ?? 2);
const scale = quick ? 0.5 : 1;
const emit = (figure: string, value: number, unit: string, extra: Record<string, unknown> = {}): void =>
  void process.stdout.write(JSON.stringify({ figure, value, unit, ...extra }) + '\n');
const note = (l: string): void => void process.stderr.write(`bench:group: ${l}\n`);

// name, disk MiB, ms between 64 KiB writes (0: idle). The rates (vm-c ~2 MiB/s, vm-d ~0.5, the
// rest less) keep every VM's writes within its disk over a whole run, even a slow one: a held
// point's scratch then grows with its hold time, as on a real disk of hundreds of GiB; at the
// earlier 256 KiB every 4 ms vm-c rewrote all of its 24 MiB within two seconds, so holding it
// longer cost nothing more and the figure measured the disk's size, not the release.
const VMS: Array<[string, number, number]> = [
  ['vm-a', 64, 0],
  ['vm-b', 48, 600],
  ['vm-c', 24, 30],
  ['vm-d', 32, 120],
  ['vm-e', 16, 300],
  ['vm-f', 40, 1200],
];
const BUSIEST = 'vm-c';

interface BenchVm {
  name: string;
  q: TestQemu;
  c2: QmpClient;
  size: number;
  everyMs: number;
}

const work = fs.mkdtempSync(path.join(arg('--work') ?? os.tmpdir(), 'vmvault-bench-group-'));
const store = await SegmentStore.open(path.join(work, 'store'));
const ns = await Namespace.open(store, { log: () => {} });
const data = path.join(work, 'data');
fs.mkdirSync(data);
fs.writeFileSync(path.join(data, 'workflows.yaml'), 'workflows:\n  crash:\n    - snapshot\n    - copy\n');
const vms: BenchVm[] = [];
let loadWorker: Worker | undefined;
// Interrupted: the QEMUs this bench started go with it (by their PIDs), and its work folder.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const v of vms) {
      try {
        process.kill(v.q.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    fs.rmSync(work, { recursive: true, force: true });
    process.exit(130);
  });
}
try {
  for (const [name, mib, everyMs] of VMS) {
    const size = Math.round(mib * scale) * MiB;
    const q = await startQemu({ dir: work, name, secondQmp: true, disks: [{ device: 'vda', sizeBytes: size, file: path.join(work, `${name}.qcow2`) }] });
    const c2 = await QmpClient.connect(q.qmp2!);
    vms.push({ name, q, c2, size, everyMs });
    // Filled whole: a full copy reads every byte, so copy time follows size.
    for (let off = 0; off < size; off += 8 * MiB) await qemuIo(c2, q.qdevOf('vda'), `write -P ${0x10 + vms.length} ${off} ${Math.min(8 * MiB, size - off)}`);
  }
  const svc = new BackupService(ns, vmLookup(vms.map((v) => ({ name: v.name, share: v.name, qmp: v.q.qmp, workflow: 'crash' }))), { dataDir: data });

  // The loads: from now to the end of the bench, each VM through its second monitor.
  for (const v of vms) await v.c2.close();
  const specs: LoadSpec[] = vms.filter((v) => v.everyMs > 0).map((v) => ({ name: v.name, qmp2: v.q.qmp2!, qdev: v.q.qdevOf('vda'), size: v.size, everyMs: v.everyMs }));
  loadWorker = new Worker(new URL(import.meta.url), { workerData: specs });
  // The worker loads this module's imports first (seconds on a busy machine): wait until it writes.
  await new Promise<void>((resolve, reject) => {
    loadWorker!.once('message', () => resolve());
    loadWorker!.once('error', reject);
  });
  await new Promise((r) => setTimeout(r, 1000));

  const runOnce = async (order: CopyOrder, release: 'early' | 'end'): Promise<GroupBackupResult> => {
    const p = progress();
    const t0 = performance.now();
    const r = await runGroupBackup(svc, 'bench', vms.map((v) => ({ name: v.name })), { full: true, parallel, order, release }, p);
    const lifetimes = r.vms.map((v) => `${v.vm} ${Math.round(v.lifetimeMs ?? -1)} ms/+${((v.scratchGrowthBytes ?? 0) / MiB).toFixed(1)} MiB`).join(', ');
    note(`${order}/${release}: ${((performance.now() - t0) / 1000).toFixed(1)} s, order ${r.copyOrder.join(' ')}, skew ${r.skewMs} ms (sent within ${r.sendSkewMs} ms); held/scratch: ${lifetimes}`);
    if (r.failed > 0) throw new Error(`${r.failed} VM(s) failed: ${r.vms.filter((v) => !v.ok).map((v) => `${v.vm}: ${v.error?.message}`).join('; ')}`);
    return r;
  };
  const rankOfBusiest = (r: GroupBackupResult): number => {
    const sorted = [...r.vms].sort((a, b) => a.lifetimeMs! - b.lifetimeMs!);
    return sorted.findIndex((v) => v.vm === BUSIEST) + 1;
  };
  // Growth: what each scratch image took in while its point was held, less its allocation when
  // made (a fresh qcow2's header and tables, ~0.2 MiB each, the same however long it is held).
  const scratch = (r: GroupBackupResult): number => r.vms.reduce((n, v) => n + (v.scratchGrowthBytes ?? v.scratchBytes ?? 0), 0);

  // A warm-up run first: the first full copy writes new segments, later ones mostly dedup, so
  // the measured runs copy at the same pace. Then early and at-end release alternate, twice.
  await runOnce('busiest', 'early');
  const busiest = [await runOnce('busiest', 'early')];
  const atEnd = [await runOnce('busiest', 'end')];
  busiest.push(await runOnce('busiest', 'early'));
  atEnd.push(await runOnce('busiest', 'end'));
  const largest = await runOnce('largest', 'early');
  const alpha = await runOnce('alphabetical', 'early');
  for (const r of busiest) note(`loads measured: ${r.vms.map((v) => `${v.vm} ${((Math.max(v.load?.dirtyBytesPerSec ?? 0, v.load?.writeBytesPerSec ?? 0)) / MiB).toFixed(1)} MiB/s`).join(', ')}`);
  const sum = (rs: GroupBackupResult[]) => rs.reduce((n, r) => n + scratch(r), 0);
  const all = [...busiest, ...atEnd, largest, alpha];
  const skews = all.map((r) => r.skewMs ?? 0).sort((a, b) => a - b);

  emit('group.busiest.lifetime_rank', Math.max(...busiest.map(rankOfBusiest)), 'rank', { of: vms.length, order: 'busiest', runs: busiest.map(rankOfBusiest), goal: 1 });
  emit('group.busiest.lifetime_rank.largest_first', rankOfBusiest(largest), 'rank', { of: vms.length, order: 'largest' });
  emit('group.busiest.lifetime_rank.alphabetical', rankOfBusiest(alpha), 'rank', { of: vms.length, order: 'alphabetical' });
  emit('group.scratch.vs_release_at_end', Math.round((sum(busiest) / sum(atEnd)) * 1000) / 1000, 'ratio', {
    earlyBytes: busiest.map(scratch),
    atEndBytes: atEnd.map(scratch),
    goal: '<= 0.7',
  });
  emit('group.scratch.largest_first.vs_release_at_end', Math.round(((scratch(largest) * 2) / sum(atEnd)) * 1000) / 1000, 'ratio');
  emit('group.skew_ms', skews[Math.floor(skews.length / 2)], 'ms', { runs: all.map((r) => r.skewMs), statistic: 'median of 6 runs', goal: '<= 100' });
  emit('group.skew_ms.max', skews.at(-1)!, 'ms');
  emit('group.skew_ms.sent', Math.max(...all.map((r) => r.sendSkewMs ?? 0)), 'ms', { note: 'the appliance\'s own share: the transactions\' send times, largest spread over the runs' });
} finally {
  if (loadWorker !== undefined) {
    const w = loadWorker;
    const counts = await new Promise<unknown>((resolve) => {
      w.once('message', resolve);
      w.once('exit', () => resolve(null));
      w.postMessage('stop');
    });
    note(`writes per VM during the bench: ${JSON.stringify(counts)}`);
  }
  for (const v of vms) {
    await v.c2.close().catch(() => {});
    await v.q.stop();
  }
  await ns.close();
  await store.close();
  fs.rmSync(work, { recursive: true, force: true });
}
