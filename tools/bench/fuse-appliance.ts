// A real appliance in a child process for the FUSE bench (the bench process drives the mount
// with dd and qemu-img and must not serve it), optionally under `node --cpu-prof`; and the
// tools the bench times, run asynchronously.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { clearFuseMount } from '../../src/fuse/mount-util.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const vmvaultBin = path.join(repo, 'bin', 'vmvault.js');

export interface BenchAppliance {
  mount: string;
  url: string;
  proc: ChildProcess;
  api(method: string, route: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** SIGTERM and wait: a clean stop, which also writes the CPU profile. */
  stop(): Promise<void>;
}

/** `bin`: another checkout's bin/vmvault.js (a before-and-after comparison in one run). */
export async function startBenchAppliance(dir: string, nodeFlags: string[] = [], bin = vmvaultBin): Promise<BenchAppliance> {
  const data = path.join(dir, 'data');
  const mount = path.join(dir, 'mnt');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const proc = spawn(process.execPath, [...nodeFlags, bin, 'appliance', '--data', data, '--mount', mount, '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env,
  });
  let log = '';
  proc.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the appliance did not start within 60 s:\n${log}`)), 60_000);
    proc.stderr!.on('data', () => {
      const m = /control plane at (http:\/\/\S+)\/api\/v1/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`the appliance exited before it was ready:\n${log}`));
    });
  });
  const token = (await fs.readFile(path.join(data, 'api-token'), 'utf8')).trim();
  return {
    mount,
    url,
    proc,
    api: async (method, route, body) => {
      const res = await fetch(`${url}/api/v1${route}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 120_000);
      await exited;
      clearTimeout(timer);
      await clearFuseMount(mount).catch(() => undefined);
    },
  };
}

export interface Ran {
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs a tool to completion; rejects with its stderr when it fails. */
export function run(cmd: string, args: string[], timeoutMs = 1_800_000): Promise<Ran> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`));
      else resolve({ stdout: String(stdout), stderr: String(stderr), seconds });
    });
  });
}

/** dd, returning MB/s (10^6 bytes) as dd measured it, and the bytes copied. */
export async function dd(args: string[], timeoutMs?: number): Promise<{ mbps: number; bytes: number; seconds: number }> {
  const r = await run('dd', args, timeoutMs);
  // "2147483648 bytes (2.1 GB, 2.0 GiB) copied, 7.81 s, 275 MB/s"
  const m = /^(\d+) bytes .* copied, ([\d.]+) s/m.exec(r.stderr);
  if (!m) throw new Error(`cannot parse dd output: ${r.stderr}`);
  const bytes = Number(m[1]);
  const seconds = Number(m[2]);
  return { mbps: bytes / seconds / 1e6, bytes, seconds };
}

/** Writes dirty pages out and empties the page cache, so the next read comes through FUSE. */
export async function dropCaches(): Promise<boolean> {
  await run('sync', []);
  try {
    await fs.writeFile('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

/** CPU time and minor page faults of a process, its main thread apart (from /proc). */
export interface ProcUsage {
  /** User + system CPU seconds of all threads. */
  cpu: number;
  /** Of which the main thread (the JS thread, which serves FUSE and runs the store's ingest). */
  main: number;
  minflt: number;
  /** Peak resident set so far (VmHWM), MiB. */
  peakRssMiB: number;
}

function statFields(file: string): string[] {
  const s = fsSync.readFileSync(file, 'utf8');
  // After "pid (comm) ": state is field 0 here, minflt 7, utime 11, stime 12.
  return s.slice(s.lastIndexOf(')') + 2).split(' ');
}

export function procUsage(pid: number): ProcUsage {
  const tick = 100; // USER_HZ on Linux
  const f = statFields(`/proc/${pid}/stat`);
  const m = statFields(`/proc/${pid}/task/${pid}/stat`);
  const hwm = /VmHWM:\s+(\d+) kB/.exec(fsSync.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return {
    cpu: (Number(f[11]) + Number(f[12])) / tick,
    main: (Number(m[11]) + Number(m[12])) / tick,
    minflt: Number(f[7]),
    peakRssMiB: hwm ? Math.round(Number(hwm[1]) / 1024) : 0,
  };
}

/** What a process spent between two samples, per MiB of `bytes` moved in `seconds`. */
export function usagePerMiB(a: ProcUsage, b: ProcUsage, bytes: number, seconds: number): { cpuMsPerMiB: number; mainMsPerMiB: number; faultsPerMiB: number; cores: number; peakRssMiB: number } {
  const mib = bytes / (1024 * 1024);
  const r = (v: number) => Math.round(v * 100) / 100;
  return {
    cpuMsPerMiB: r(((b.cpu - a.cpu) * 1000) / mib),
    mainMsPerMiB: r(((b.main - a.main) * 1000) / mib),
    faultsPerMiB: r((b.minflt - a.minflt) / mib),
    cores: r((b.cpu - a.cpu) / seconds),
    peakRssMiB: b.peakRssMiB,
  };
}
