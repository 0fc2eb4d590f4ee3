// The rig of the agent tests: a hypervisor host in a network namespace (QEMU -S with a disk, and
// the agents) and a real appliance in the root namespace serving HTTPS on its end of the veth,
// with a certificate made by openssl and pinned by the agents. Everything started here is
// stopped by PID at teardown, even on failure; the namespace goes with the test.

import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomFillSync, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { QmpClient } from '../../src/plugins/qemu/qmp.js';
import { type Appliance, startAppliance } from './appliance.js';
import { DiskModel } from './backup.js';
import { makeNetNs, type NetNs } from './netns.js';
import { qemuIo, startQemu, type TestQemu } from './qemu.js';
import { runTool } from './run-tool.js';
import type { TestT } from './tap-types.js';
import { tmpDir } from './tmpdir.js';

const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'vmvault.js');

export interface RunningAgent {
  name: string;
  proc: ChildProcess;
  log(): string;
  exited: Promise<number | null>;
  kill(sig?: NodeJS.Signals): Promise<number | null>;
}

export interface Rig {
  dir: string;
  ns: NetNs;
  app: Appliance;
  q: TestQemu;
  model: DiskModel;
  pin: string;
  /** Admin call over HTTPS (the test trusts the appliance's own certificate). */
  api(method: string, route: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** An agent in the namespace. */
  agent(name: string, token: string, extra?: string[]): RunningAgent;
  /** Guest-like writes through QEMU's block layer (pattern, offset, length), also into the model. */
  write(writes: Array<[number, number, number]>): Promise<void>;
  /** Starts a backup job and waits for its end; returns the job. */
  backup(body?: object, timeoutMs?: number): Promise<any>;
  startBackup(body?: object): Promise<string>;
  waitJob(id: string, timeoutMs?: number): Promise<any>;
  /** sha256 of a point's disk, read through the appliance's mount (this process is not the appliance). */
  pointSha(point: string): Promise<string>;
}

export interface RigOptions {
  sizeBytes: number;
  /** Random (incompressible) bytes in the first this many bytes of the disk before QEMU starts. */
  randomBytes?: number;
  agentLostSeconds?: number;
  vmAgent?: string;
}

export async function makeRig(t: TestT, o: RigOptions): Promise<Rig> {
  const dir = tmpDir(t, 'vmvault-agent-');
  const ns = await makeNetNs(t);
  const key = path.join(dir, 'tls.key');
  const cert = path.join(dir, 'tls.crt');
  const r = await runTool('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=vmvault-test', '-addext', `subjectAltName=IP:${ns.hostIp}`]);
  if (r.code !== 0) throw new Error(`openssl: ${r.stderr}`);
  const pin = new X509Certificate(fs.readFileSync(cert)).fingerprint256;
  const app = await startAppliance(t, dir, ['--listen', `${ns.hostIp}:0`, '--tls-cert', cert, '--tls-key', key, '--agent-lost', String(o.agentLostSeconds ?? 30)]);

  // The disk: random bytes (so a send takes time and dedups nothing at first), then qcow2 (persistent bitmaps).
  const model = new DiskModel(o.sizeBytes);
  const rawFile = path.join(dir, 'vda.raw');
  const qcow = path.join(dir, 'vda.qcow2');
  if (o.randomBytes) randomFillSync(model.bytes, 0, o.randomBytes);
  fs.writeFileSync(rawFile, model.bytes);
  const conv = await runTool('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', rawFile, qcow]);
  if (conv.code !== 0) throw new Error(`qemu-img convert: ${conv.stderr}`);
  fs.rmSync(rawFile);
  const q = await startQemu({ t, dir, name: 'web01', wrap: ns.exec, disks: [{ device: 'vda', file: qcow }] });

  const api = async (method: string, route: string, body?: unknown): Promise<{ status: number; body: any }> => {
    for (let attempt = 1; method === 'GET' && attempt < 3; attempt++) {
      // A kept-alive connection the appliance closed as we reused it: GETs are safe to repeat.
      try {
        return await once(method, route, body);
      } catch {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    return once(method, route, body);
  };
  const once = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(`${app.url}/api/v1${route}`, {
      method,
      headers: { authorization: `Bearer ${app.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    }).catch((err) => {
      throw new Error(`${method} ${route}: ${(err as Error).message} (${String((err as { cause?: unknown }).cause)}); the appliance's log ends:\n${app.log().slice(-6000)}`);
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const add = await api('POST', '/vms', { name: 'web01', qmp: q.qmp, workflow: 'crash-consistent', ...(o.vmAgent ? { agent: o.vmAgent } : {}) });
  if (add.status !== 201) throw new Error(`vm add: ${JSON.stringify(add.body)}`);

  const waitJob = async (id: string, timeoutMs = 180_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const job = (await api('GET', `/jobs/${id}`)).body;
      if (job.state !== 'queued' && job.state !== 'running') return job;
      if (Date.now() > until) throw new Error(`job ${id} still ${job.state} after ${timeoutMs} ms: ${JSON.stringify(job)}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  };
  const startBackup = async (body: object = {}) => {
    const res = await api('POST', '/vms/web01/backups', body);
    if (res.status !== 202) throw new Error(`backup: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.job as string;
  };

  return {
    dir,
    ns,
    app,
    q,
    model,
    pin,
    api,
    agent(name, token, extra = []) {
      const env = { ...process.env };
      delete env.NODE_OPTIONS;
      delete env.NODE_TLS_REJECT_UNAUTHORIZED;
      const argv = [...ns.exec, process.execPath, bin, 'agent', '--appliance', app.url, '--token', token, '--name', name, '--pin', pin, ...extra];
      const proc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env });
      let out = '';
      proc.stdout!.on('data', (d) => (out += d));
      proc.stderr!.on('data', (d) => (out += d));
      const exited = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
      let alive = true;
      void exited.then(() => (alive = false));
      const kill = async (sig: NodeJS.Signals = 'SIGTERM') => {
        if (alive && proc.pid !== undefined) process.kill(proc.pid, sig);
        const timer = setTimeout(() => alive && proc.pid !== undefined && process.kill(proc.pid, 'SIGKILL'), 20_000);
        const code = await exited;
        clearTimeout(timer);
        return code;
      };
      t.teardown(() => kill('SIGKILL'));
      return { name, proc, log: () => out, exited, kill };
    },
    write: async (writes) => {
      const c = await QmpClient.connect(q.qmp);
      try {
        for (const [p, off, len] of writes) await qemuIo(c, q.qdevOf('vda'), model.write(p, off, len));
      } finally {
        await c.close();
      }
    },
    startBackup,
    waitJob,
    backup: async (body, timeoutMs) => waitJob(await startBackup(body), timeoutMs),
    pointSha: async (point) => {
      const file = path.join(app.mount, 'web01', '.snapshots', point, 'vda.raw');
      const h = createHash('sha256');
      for await (const c of fs.createReadStream(file)) h.update(c as Buffer);
      return h.digest('hex');
    },
  };
}

/** The numbers an agent's copy logged in the job ("... N on the wire (S of T segments sent, F fingerprint bytes)"). */
export function agentCopyFigures(job: { log?: Array<{ message?: string } | string> }): { read: number; wire: number; sent: number; segments: number; agents: string[] } | undefined {
  for (const entry of job.log ?? []) {
    const line = typeof entry === 'string' ? entry : (entry.message ?? '');
    const m = /by agent (\S+(?: then \S+)*): read (\d+) bytes, (\d+) on the wire \((\d+) of (\d+) segments sent/.exec(line);
    if (m) return { agents: m[1].split(' then '), read: Number(m[2]), wire: Number(m[3]), sent: Number(m[4]), segments: Number(m[5]) };
  }
  return undefined;
}
