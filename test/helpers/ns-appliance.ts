// A second appliance (its own process and data directory) in a network namespace, serving
// HTTPS with its self-signed certificate on the namespace's address: a clone destination across
// the network (issue 14). Stopped when the test ends (SIGTERM, SIGKILL after 30 s).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const runner = path.join(path.dirname(fileURLToPath(import.meta.url)), 'run-appliance.js');

export interface Remote {
  url: string;
  pin: string;
  data: string;
  admin: string;
  stop(): Promise<void>;
}

/** A second appliance in the network namespace, on HTTPS at ns.nsIp:7443. */
export async function nsAppliance(t: { teardown(fn: () => unknown): void }, ns: { name: string; nsIp: string }, dir: string): Promise<Remote> {
  const data = path.join(dir, 'data');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  // `ip netns exec` execs the command: the PID is the appliance's. Its mount lives in the
  // private mount namespace ip netns exec makes, and goes with the process.
  const proc = spawn('ip', ['netns', 'exec', ns.name, process.execPath, runner, '--data', data, '--mount', path.join(dir, 'mnt'), '--listen', `${ns.nsIp}:7443`], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  let alive = true;
  void exited.then(() => (alive = false));
  const stop = async () => {
    if (!alive) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  };
  t.teardown(stop);
  for (let i = 0; i < 1200 && !/control plane at /.test(out); i++) {
    if (!alive) throw new Error(`the second appliance exited:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const m = /control plane at (https:\/\/[^\s]+)\/api\/v1/.exec(out);
  const pin = /TLS certificate SHA-256 ([0-9A-Fa-f:]+)/.exec(out);
  if (!m || !pin) throw new Error(`the second appliance did not come up on HTTPS:\n${out}`);
  return { url: m[1], pin: pin[1], data, admin: fs.readFileSync(path.join(data, 'api-token'), 'utf8').trim(), stop };
}

