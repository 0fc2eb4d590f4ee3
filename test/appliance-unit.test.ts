// The systemd unit shipped in appliance/ (issue 10). systemd does not run here, so: the unit is
// checked by `systemd-analyze verify` (which parses it and checks ExecStart's binary without a
// running systemd), and its ExecStart line, expanded with the shipped environment file pointed at
// temporary directories, is run as systemd would run it (no shell) and stopped with its
// KillSignal: it must exit 0 after a clean shutdown, within TimeoutStopSec.

import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { clearFuseMount, fuseMountsAt } from '../src/fuse/mount-util.js';
import { tmpDir } from './helpers/tmpdir.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const unitFile = path.join(root, 'appliance', 'vmvault.service');
const envFile = path.join(root, 'appliance', 'vmvault.env');

function parseUnit(text: string): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith('[')) continue;
    const eq = line.indexOf('=');
    const k = line.slice(0, eq);
    keys.set(k, [...(keys.get(k) ?? []), line.slice(eq + 1)]);
  }
  return keys;
}

function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

// systemd's rules for ExecStart: ${VAR} is one word, $VAR splits on whitespace (none if empty).
function expandExec(line: string, env: Record<string, string>): string[] {
  const out: string[] = [];
  for (const word of line.split(/\s+/).filter(Boolean)) {
    const whole = /^\$([A-Z_]+)$/.exec(word);
    if (whole) out.push(...(env[whole[1]!] ?? '').split(/\s+/).filter(Boolean));
    else out.push(word.replace(/\$\{([A-Z_]+)\}/g, (_, k: string) => env[k] ?? ''));
  }
  return out;
}

const unit = parseUnit(fs.readFileSync(unitFile, 'utf8'));

t.test('systemd-analyze verify accepts the unit', async (t) => {
  const dir = tmpDir(t);
  // verify wants the unit's own name; a copy keeps the checkout's file out of its way.
  const copy = path.join(dir, 'vmvault.service');
  fs.copyFileSync(unitFile, copy);
  let r: { stdout: string; stderr: string };
  try {
    r = await promisify(execFile)('systemd-analyze', ['verify', copy]);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') return t.comment('systemd-analyze is not installed: skipped');
    return t.fail(`systemd-analyze verify failed: ${e.stderr ?? e.message}`);
  }
  t.equal(r.stderr, '', 'no warnings');
});

t.test('the unit runs node directly and stops with SIGTERM, waiting long enough', async (t) => {
  t.same(unit.get('KillSignal'), ['SIGTERM']);
  t.same(unit.get('Restart'), ['on-failure']);
  t.same(unit.get('EnvironmentFile'), ['/etc/vmvault/vmvault.env']);
  const exec = unit.get('ExecStart')![0]!;
  t.match(exec, /^\/usr\/bin\/node \/opt\/vmvault\/bin\/vmvault\.js appliance /, 'no npm or shell in between');
  const stop = /^(\d+)min$/.exec(unit.get('TimeoutStopSec')![0]!);
  t.ok(stop && Number(stop[1]) >= 5, 'TimeoutStopSec of minutes, for committing buffered writes');
});

t.test("the unit's ExecStart, run as systemd would, stops cleanly on its KillSignal", async (t) => {
  const dir = tmpDir(t);
  const env: Record<string, string> = { ...parseEnv(fs.readFileSync(envFile, 'utf8')), VMVAULT_DATA: path.join(dir, 'data'), VMVAULT_MOUNT: path.join(dir, 'mnt'), VMVAULT_LISTEN: '127.0.0.1:0' };
  t.equal(env.VMVAULT_OPTS, '', 'the shipped environment file sets no extra options');
  const argv = expandExec(unit.get('ExecStart')![0]!, env).map((a) => a.replace(/^\/opt\/vmvault\//, root + '/').replace(/^\/usr\/bin\/node$/, process.execPath));
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.NODE_OPTIONS;
  // npm's variables would not be there under systemd.
  for (const k of Object.keys(childEnv)) if (k.startsWith('npm_')) delete childEnv[k];
  const proc = spawn(argv[0]!, argv.slice(1), { cwd: root, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (c) => resolve(c)));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await clearFuseMount(env.VMVAULT_MOUNT).catch(() => {});
  });
  const end = Date.now() + 60_000;
  while (!/control plane at http/.test(out)) {
    if (proc.exitCode !== null) break;
    if (Date.now() > end) break;
    await sleep(100);
  }
  t.match(out, /control plane at http/, 'started');
  t.equal((await fuseMountsAt(env.VMVAULT_MOUNT)).length, 1, 'mounted');
  proc.kill(unit.get('KillSignal')![0] as NodeJS.Signals);
  t.equal(await exited, 0, 'exit 0: systemd records a clean stop');
  t.match(out, /stopped cleanly/);
  t.equal((await fuseMountsAt(env.VMVAULT_MOUNT)).length, 0, 'unmounted');
});
