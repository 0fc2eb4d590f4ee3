// npm run bench:discovery [-- --hosts N] [--vms N] [--rounds N]   (node dist/tools/bench-discovery.js)
// Discovery time of the cluster map (issue 13; goal <= 2 s for 3 hosts x 20 VMs): hosts as
// network namespaces, an agent on each with --qmp-dir, paused QEMUs (-S) in each host's folder,
// a real appliance; GET /api/v1/cluster asks every host's agent at once and each agent reads all
// its sockets in parallel (query-name, -status, -uuid, -block, -blockstats).
// Prints one JSON line per figure, {"figure","value","unit"}; notes go to stderr:
//   discovery.seconds        the median of --rounds refreshes of the whole map (after one warm-up)
//   discovery.vs_direct      that time over a baseline measured in the same run: the same
//                            queries of every socket made directly from this process (no agent,
//                            no HTTP, no network namespace), all at once
// Needs root (network namespaces).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { makeClusterRig } from '../test/helpers/cluster-rig.js';
import { netnsAvailable } from '../test/helpers/netns.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const note = (l: string): void => void process.stderr.write(`bench:discovery: ${l}\n`);
const emit = (figure: string, value: number, unit: string): void => void process.stdout.write(JSON.stringify({ figure, value, unit }) + '\n');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const why = netnsAvailable();
if (why) {
  note(`skipped: ${why}`);
  process.exit(0);
}
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
const hosts = arg('--hosts', 3);
const vms = arg('--vms', 20);
const rounds = arg('--rounds', 5);
const teardowns: Array<() => unknown> = [];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-bench-discovery-'));
try {
  const t0 = performance.now();
  const rig = await makeClusterRig({ teardown: (fn) => teardowns.push(fn) }, dir, { hosts, vmsPerHost: vms, diskBytes: 16 * 1024 * 1024 });
  await rig.agentsLive(120_000);
  note(`${hosts} hosts x ${vms} paused QEMUs and their agents up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const times: number[] = [];
  for (let i = 0; i <= rounds; i++) {
    const s = performance.now();
    const res = await rig.api('GET', '/cluster');
    const secs = (performance.now() - s) / 1000;
    const found = res.body.hosts.reduce((n: number, h: any) => n + h.vms.length, 0);
    const bad = res.body.hosts.filter((h: any) => h.state !== 'ok' || h.failed.length > 0);
    if (found !== hosts * vms || bad.length > 0) throw new Error(`the map has ${found} VMs of ${hosts * vms}: ${JSON.stringify(bad).slice(0, 2000)}`);
    if (i > 0) times.push(secs); // the first is the warm-up
    note(`round ${i}${i === 0 ? ' (warm-up)' : ''}: ${secs.toFixed(3)} s (appliance: ${res.body.ms} ms)`);
  }

  const direct: number[] = [];
  for (let i = 0; i <= rounds; i++) {
    const s = performance.now();
    await Promise.all(
      rig.vms.map(async (v) => {
        const c = await QmpClient.connect(v.q.qmp, { timeoutMs: 5000 });
        try {
          await Promise.all(['query-name', 'query-status', 'query-uuid', 'query-block', 'query-blockstats'].map((cmd) => c.execute(cmd)));
        } finally {
          await c.close();
        }
      }),
    );
    if (i > 0) direct.push((performance.now() - s) / 1000);
  }
  const m = median(times);
  const d = median(direct);
  note(`direct queries of all ${rig.vms.length} sockets from one process: median ${d.toFixed(3)} s`);
  emit('discovery.seconds', Number(m.toFixed(3)), 's');
  emit('discovery.vs_direct', Number((m / d).toFixed(2)), 'ratio');
} finally {
  for (const fn of teardowns.reverse()) await Promise.resolve(fn()).catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
}
