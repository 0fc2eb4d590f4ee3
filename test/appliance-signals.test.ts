// README's command, `npx vmvault appliance`, run for real and stopped the way a supervisor or a
// person stops it (issue 10): SIGTERM to the npx process, Ctrl-C (SIGINT to the terminal's
// process group). Each must end with the appliance's own clean shutdown (commit, unmount, exit)
// and no node process left holding the mount and the port. Also the fallback when npm runs the
// command through a shell that does not pass signals on (script-shell=/bin/sh).

import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { clearFuseMount, fuseMountsAt } from '../src/fuse/mount-util.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** PIDs of node processes (not npm) running the appliance on `data`. */
function appliancePids(data: string): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const i = argv.indexOf('--data');
    if (i > 0 && argv[i + 1] === data && argv.includes('appliance') && /(^|\/)node$/.test(argv[0] ?? '') && !argv.includes('exec')) out.push(Number(name));
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Started {
  npx: ChildProcess;
  node: number;
  data: string;
  mount: string;
  out: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startNpx(t: TestT, env: Record<string, string> = {}): Promise<Started> {
  const dir = tmpDir(t);
  const data = path.join(dir, 'data');
  const mount = path.join(dir, 'mnt');
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.NODE_OPTIONS;
  // Its own process group, like a shell's foreground job: Ctrl-C is SIGINT to the group.
  const npx = spawn('npx', ['vmvault', 'appliance', '--data', data, '--mount', mount, '--listen', '127.0.0.1:0'], {
    cwd: root,
    env: childEnv,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  npx.stdout!.on('data', (d) => (out += d));
  npx.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => npx.on('exit', (code, signal) => resolve({ code, signal })));
  t.teardown(async () => {
    for (const pid of appliancePids(data)) process.kill(pid, 'SIGKILL');
    if (npx.exitCode === null && npx.signalCode === null) npx.kill('SIGKILL');
    await clearFuseMount(mount).catch(() => {});
  });
  // The first npx in a fresh cache installs the checkout into it (and builds): give it time.
  const end = Date.now() + 240_000;
  while (!/control plane at http/.test(out)) {
    if (npx.exitCode !== null || npx.signalCode !== null) throw new Error(`npx exited before the appliance was ready:\n${out}`);
    if (Date.now() > end) throw new Error(`the appliance did not start within 240 s:\n${out}`);
    await sleep(100);
  }
  const pids = appliancePids(data);
  if (pids.length !== 1) throw new Error(`expected one appliance process, found ${pids.length}`);
  return { npx, node: pids[0]!, data, mount, out: () => out, exited };
}

async function gone(pid: number, timeoutMs = 60_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > end) return false;
    await sleep(100);
  }
  return true;
}

t.test('kill -TERM of npx stops the appliance cleanly and npx waits for it', async (t) => {
  const a = await startNpx(t);
  t.ok((await fuseMountsAt(a.mount)).length === 1, 'mounted');
  process.kill(a.npx.pid!, 'SIGTERM');
  const r = await a.exited;
  t.notOk(alive(a.node), 'the appliance process has already ended when npx exits');
  t.ok(await gone(a.node), 'no node process is left');
  t.equal((await fuseMountsAt(a.mount)).length, 0, 'the mount is gone');
  t.match(a.out(), /SIGTERM: stopping/);
  t.match(a.out(), /stopped cleanly/);
  t.notMatch(a.out(), /without a clean shutdown/);
  t.same(r, { code: 0, signal: null }, 'npx exits 0, like the appliance');
});

t.test('Ctrl-C (SIGINT to the process group) stops the appliance cleanly, once', async (t) => {
  const a = await startNpx(t);
  process.kill(-a.npx.pid!, 'SIGINT');
  await a.exited;
  t.ok(await gone(a.node), 'no node process is left');
  t.equal((await fuseMountsAt(a.mount)).length, 0, 'the mount is gone');
  t.match(a.out(), /SIGINT: stopping/);
  t.match(a.out(), /stopped cleanly/);
  // npm forwards the SIGINT the appliance already got from the terminal: one request, not two.
  t.notMatch(a.out(), /without a clean shutdown/);
});

t.test('through a shell that does not pass SIGTERM on, the appliance still stops cleanly', async (t) => {
  const a = await startNpx(t, { npm_config_script_shell: '/bin/sh' });
  process.kill(a.npx.pid!, 'SIGTERM');
  await a.exited;
  t.ok(await gone(a.node), 'no node process is left');
  t.equal((await fuseMountsAt(a.mount)).length, 0, 'the mount is gone');
  t.match(a.out(), /the npm process that started the appliance went away: stopping|SIGTERM: stopping/);
  t.match(a.out(), /stopped cleanly/);
});
