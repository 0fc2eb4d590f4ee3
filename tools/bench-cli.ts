// npm run bench:cli [-- --runs=N] [-- --npx-runs=N] [-- --compare=DIR]   (node dist/tools/bench-cli.js)
// How long `vmvault stats` takes from a shell, against a real appliance (store, FUSE mount,
// control plane) started here on an ephemeral port in a temporary directory.
//
// Prints one JSON line per figure: cli.stats_ms (median wall time of `node bin/vmvault.js
// stats`), node.start_ms (median of `node -e 0`, the floor no command can beat, measured in the
// same run, interleaved with the CLI runs so machine load hits both alike), cli.stats.vs_node
// (the ratio) and cli.stats_npx_ms (`npx vmvault stats` from the repository: npx's own start
// on top). On a loaded machine wall times grow with the load; the *_cpu_ms figures (user + system
// CPU of the child, from this process's children totals in /proc/self/stat) hardly do, and
// are what an idle machine's wall time comes close to. --compare=DIR also times DIR/bin/vmvault.js (another built checkout, e.g. an older
// commit) in the same loop, as cli.stats_ms.compare. Notes go to stderr.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { clearFuseMount } from '../src/fuse/mount-util.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(repo, 'bin', 'vmvault.js');
const args = process.argv.slice(2);
const opt = (name: string, dflt: number) => Number(args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt);
const runs = opt('runs', 30);
const npxRuns = opt('npx-runs', 5);
const compareDir = args.find((a) => a.startsWith('--compare='))?.slice('--compare='.length);
const compareBin = compareDir === undefined ? undefined : path.join(path.resolve(compareDir), 'bin', 'vmvault.js');

const note = (line: string) => void process.stderr.write(`bench: ${line}\n`);
const emit = (figure: string, value: number, unit: string, extra: Record<string, unknown> = {}) =>
  void process.stdout.write(JSON.stringify({ figure, value: Math.round(value * 10) / 10, unit, ...extra }) + '\n');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-bench-cli-'));
const data = path.join(dir, 'data');
const mount = path.join(dir, 'mnt');
const app = spawn(process.execPath, [bin, 'appliance', '--data', data, '--mount', mount, '--listen', '127.0.0.1:0'], {
  stdio: ['ignore', 'ignore', 'pipe'],
});
let log = '';
const exited = new Promise<number | null>((resolve) => app.on('exit', (code) => resolve(code)));

try {
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the appliance did not start within 60 s:\n${log}`)), 60_000);
    app.stderr!.setEncoding('utf8').on('data', (d: string) => {
      log += d;
      const m = /control plane at (http:\/\/\S+)\/api\/v1/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    void exited.then((code) => reject(new Error(`the appliance exited (${code}) before it was ready:\n${log}`)));
  });
  const token = fs.readFileSync(path.join(data, 'api-token'), 'utf8').trim();
  // A share and a snapshot, so stats has something to count.
  const cli = (...a: string[]) => [bin, ...a, '--url', url, '--token', token];
  for (const a of [cli('share', 'create', 'vms'), cli('snapshot', 'create', 'vms', 'first')]) {
    const r = spawnSync(process.execPath, a, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`vmvault ${a.slice(1, 4).join(' ')}: ${r.stderr}`);
  }

  const cpu = new Map<string, number[]>();
  const time = (cmd: string, argv: string[], opts: { cwd?: string; label?: string } = {}): number => {
    const c0 = childrenCpuMs();
    const t0 = process.hrtime.bigint();
    const r = spawnSync(cmd, argv, { encoding: 'utf8', cwd: opts.cwd ?? dir, env: { ...process.env, NODE_OPTIONS: '' } });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
    if (opts.label !== undefined) cpu.set(opts.label, [...(cpu.get(opts.label) ?? []), childrenCpuMs() - c0]);
    return ms;
  };
  // One warm-up each: the first run reads files from disk, later ones from the page cache.
  time(process.execPath, ['-e', '0']);
  time(process.execPath, cli('stats'));
  const other = (...a: string[]) => [compareBin!, ...a, '--url', url, '--token', token];
  if (compareBin !== undefined) time(process.execPath, other('stats'));
  const base: number[] = [];
  const stats: number[] = [];
  const compared: number[] = [];
  for (let i = 0; i < runs; i++) {
    base.push(time(process.execPath, ['-e', '0'], { label: 'node' }));
    stats.push(time(process.execPath, cli('stats'), { label: 'cli' }));
    if (compareBin !== undefined) compared.push(time(process.execPath, other('stats'), { label: 'compare' }));
  }
  const npx: number[] = [];
  for (let i = 0; i < npxRuns; i++) npx.push(time('npx', ['--no-install', 'vmvault', 'stats', '--url', url, '--token', token], { cwd: repo }));

  const cliMs = median(stats);
  const nodeMs = median(base);
  emit('cli.stats_ms', cliMs, 'ms', { runs, p90: round(pct(stats, 0.9)), target: 300 });
  emit('node.start_ms', nodeMs, 'ms', { runs, p90: round(pct(base, 0.9)) });
  emit('cli.stats.vs_node', cliMs / nodeMs, 'ratio');
  emit('cli.stats_npx_ms', median(npx), 'ms', { runs: npxRuns });
  const meanCpu = (label: string) => (cpu.get(label) ?? []).reduce((a, b) => a + b, 0) / Math.max(1, cpu.get(label)?.length ?? 0);
  emit('cli.stats_cpu_ms', meanCpu('cli'), 'ms', { runs, target: 300 });
  emit('node.start_cpu_ms', meanCpu('node'), 'ms', { runs });
  if (compareBin !== undefined) emit('cli.stats_cpu_ms.compare', meanCpu('compare'), 'ms', { runs });
  if (compareBin !== undefined) emit('cli.stats_ms.compare', median(compared), 'ms', { runs, p90: round(pct(compared, 0.9)), bin: compareBin });
  note(`load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} on ${os.cpus().length} CPUs`);
  note(`vmvault stats: median ${cliMs.toFixed(0)} ms wall, ${meanCpu('cli').toFixed(0)} ms CPU (target 300 ms); node -e 0: ${nodeMs.toFixed(0)} ms wall, ${meanCpu('node').toFixed(0)} ms CPU; npx vmvault stats: ${median(npx).toFixed(0)} ms wall`);
} finally {
  if (app.exitCode === null) app.kill('SIGTERM');
  const timer = setTimeout(() => app.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
  await clearFuseMount(mount).catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
}

/** User + system CPU of this process's waited-for children so far (clock ticks of 10 ms). */
function childrenCpuMs(): number {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  // Fields after the command name (which may hold spaces) start at field 3; cutime and cstime are 16 and 17.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[16 - 3]) + Number(f[17 - 3])) * 10;
}

function median(xs: number[]): number {
  return pct(xs, 0.5);
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
