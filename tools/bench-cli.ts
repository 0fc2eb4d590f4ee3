// npm run bench:cli [-- --runs=N] [-- --npx-runs=N] [-- --compare=DIR]   (node dist/tools/bench-cli.js)
// How long `vmvault stats` takes from a shell, against a real appliance (store, FUSE mount,
// control plane) started here on an ephemeral port in a temporary directory.
//
// Prints one JSON line per figure: cli.stats_ms (median wall time of `node bin/vmvault.js
// stats`), node.start_ms (median of `node -e 0`, the floor no command can beat, measured in the
// same run, interleaved with the CLI runs so machine load hits both alike), cli.stats.vs_node
// (the ratio) and cli.stats_npx_ms (`npx vmvault stats` from the repository: npx's own start
// on top). --compare=DIR also times DIR/bin/vmvault.js (another built checkout, e.g. an older
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

  const time = (cmd: string, argv: string[], opts: { cwd?: string } = {}): number => {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(cmd, argv, { encoding: 'utf8', cwd: opts.cwd ?? dir, env: { ...process.env, NODE_OPTIONS: '' } });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
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
    base.push(time(process.execPath, ['-e', '0']));
    stats.push(time(process.execPath, cli('stats')));
    if (compareBin !== undefined) compared.push(time(process.execPath, other('stats')));
  }
  const npx: number[] = [];
  for (let i = 0; i < npxRuns; i++) npx.push(time('npx', ['--no-install', 'vmvault', 'stats', '--url', url, '--token', token], { cwd: repo }));

  const cliMs = median(stats);
  const nodeMs = median(base);
  emit('cli.stats_ms', cliMs, 'ms', { runs, p90: round(pct(stats, 0.9)), target: 300 });
  emit('node.start_ms', nodeMs, 'ms', { runs, p90: round(pct(base, 0.9)) });
  emit('cli.stats.vs_node', cliMs / nodeMs, 'ratio');
  emit('cli.stats_npx_ms', median(npx), 'ms', { runs: npxRuns });
  if (compareBin !== undefined) emit('cli.stats_ms.compare', median(compared), 'ms', { runs, p90: round(pct(compared, 0.9)), bin: compareBin });
  note(`load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} on ${os.cpus().length} CPUs`);
  note(`vmvault stats: median ${cliMs.toFixed(0)} ms (target 300 ms: ${cliMs <= 300 ? 'met' : 'not met'}); node -e 0: ${nodeMs.toFixed(0)} ms; npx vmvault stats: ${median(npx).toFixed(0)} ms`);
} finally {
  if (app.exitCode === null) app.kill('SIGTERM');
  const timer = setTimeout(() => app.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
  await clearFuseMount(mount).catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
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
