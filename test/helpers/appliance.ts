// Starts a real appliance (store, FUSE mount, control plane on an ephemeral loopback port) in
// a child process, and always takes it down again: SIGTERM, and if the mount is still there
// (the child was killed), abort the FUSE connection and unmount.

import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { clearFuseMount } from '../../src/fuse/mount-util.js';

const runner = path.join(path.dirname(fileURLToPath(import.meta.url)), 'run-appliance.js');

export interface Appliance {
  data: string;
  mount: string;
  url: string;
  token: string;
  proc: ChildProcess;
  log(): string;
  /** Graceful stop (SIGTERM); resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL; leaves the mount stale until cleared (the next start clears it). */
  kill9(): Promise<void>;
  api(method: string, route: string, body?: unknown): Promise<{ status: number; body: any }>;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

export async function startAppliance(t: Teardown, dir: string, extraArgs: string[] = [], opts: { data?: string } = {}): Promise<Appliance> {
  const data = opts.data ?? path.join(dir, 'data');
  const mount = path.join(dir, 'mnt');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  // Profiling an appliance under a bench: node flags for it only (`--cpu-prof --cpu-prof-dir=DIR`, which NODE_OPTIONS refuses).
  const nodeArgs = (process.env.VMVAULT_APPLIANCE_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
  const proc = spawn(process.execPath, [...nodeArgs, runner, '--data', data, '--mount', mount, '--listen', '127.0.0.1:0', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  let alive = true;
  void exited.then(() => (alive = false));
  t.teardown(async () => {
    if (alive) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
    await clearFuseMount(mount).catch(() => {});
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`appliance did not start within 60 s:\n${out}`)), 60_000);
    const check = (): void => {
      const m = /control plane at (https?:\/\/[^\s]+)\/api\/v1/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    proc.stderr!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`appliance exited (${code}) before it was ready:\n${out}`));
    });
  });
  const token = fs.readFileSync(path.join(data, 'api-token'), 'utf8').trim();
  return {
    data,
    mount,
    url,
    token,
    proc,
    log: () => out,
    stop: async () => {
      if (alive) proc.kill('SIGTERM');
      return exited;
    },
    kill9: async () => {
      if (alive) proc.kill('SIGKILL');
      await exited;
    },
    api: async (method, route, body) => {
      const res = await fetch(url + '/api/v1' + route, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
  };
}
