// The rig of the cluster tests and bench (issue 13): N hypervisor hosts, each a network namespace
// with its own agent (`vmvault agent --qmp-dir`), and paused QEMUs (-S) whose QMP sockets sit in
// that host's folder in the Proxmox layout (<dir>/<vmid>.qmp); a real appliance in the root
// namespace serves HTTPS on every veth with a certificate the agents pin. Each host is added
// with `POST /hosts`. Everything started here is stopped by PID at teardown, even on failure.
// (UNIX sockets are filesystem objects: the test process reaches them too, for guest-like
// writes; the appliance never does: it goes through the agents.)

import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Appliance, startAppliance } from './appliance.js';
import { makeNetNs, type NetNs } from './netns.js';
import { startQemu, type TestQemu } from './qemu.js';
import { runTool } from './run-tool.js';

const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'vmvault.js');

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface RigAgent {
  name: string;
  proc: ChildProcess;
  log(): string;
  kill(sig?: NodeJS.Signals): Promise<number | null>;
}

export interface RigHost {
  name: string;
  ns: NetNs;
  qmpDir: string;
  /** The agent's --scratch-dir (the fleecing scratch of this host's VMs). */
  scratchDir: string;
  agent: RigAgent;
  /** More arguments of this host's agent (e.g. --qmp, --qga), taken at its next start. */
  agentArgs: string[];
  /** Starts (again) this host's agent. */
  startAgent(): RigAgent;
}

export interface RigVm {
  name: string;
  uuid: string;
  vmid: number;
  host: RigHost;
  disk: string;
  q: TestQemu;
}

export interface ClusterRig {
  dir: string;
  app: Appliance;
  hosts: RigHost[];
  vms: RigVm[];
  api(method: string, route: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** A paused QEMU on `host` for VM `name` (disk made when missing). */
  startVm(host: RigHost, name: string, uuid: string, vmid: number, disk: string, sizeBytes: number): Promise<RigVm>;
  waitJob(id: string, timeoutMs?: number): Promise<any>;
  /** Waits until every host's agent is live in the pool. */
  agentsLive(timeoutMs?: number): Promise<void>;
}

export interface ClusterRigOptions {
  hosts: number;
  vmsPerHost: number;
  diskBytes?: number;
  agentLostSeconds?: number;
  /** Extra arguments of every host's agent. */
  agentArgs?: string[];
}

export function uuidOf(h: number, v: number): string {
  return `0000${h.toString(16).padStart(4, '0')}-0000-4000-8000-${v.toString(16).padStart(12, '0')}`;
}

export async function makeClusterRig(t: Teardown, dir: string, o: ClusterRigOptions): Promise<ClusterRig> {
  const nss: NetNs[] = [];
  for (let i = 0; i < o.hosts; i++) nss.push(await makeNetNs(t));
  const key = path.join(dir, 'tls.key');
  const cert = path.join(dir, 'tls.crt');
  const san = nss.map((n) => `IP:${n.hostIp}`).join(',');
  const r = await runTool('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=vmvault-test', '-addext', `subjectAltName=${san}`]);
  if (r.code !== 0) throw new Error(`openssl: ${r.stderr}`);
  const pin = new X509Certificate(fs.readFileSync(cert)).fingerprint256;
  const app = await startAppliance(t, dir, ['--listen', '0.0.0.0:0', '--tls-cert', cert, '--tls-key', key, '--agent-lost', String(o.agentLostSeconds ?? 30)]);
  const port = new URL(app.url).port;

  const api = async (method: string, route: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const res = await fetch(`https://127.0.0.1:${port}/api/v1${route}`, {
      method,
      headers: { authorization: `Bearer ${app.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };

  const hosts: RigHost[] = [];
  for (const [i, ns] of nss.entries()) {
    const name = `node${i + 1}`;
    const agentName = `agent${i + 1}`;
    const qmpDir = path.join(dir, name, 'qemu-server');
    fs.mkdirSync(qmpDir, { recursive: true });
    const scratchDir = path.join(dir, name, 'scratch');
    const tok = await api('POST', '/agents/tokens', { name: `tok-${agentName}` });
    if (tok.status !== 201) throw new Error(`agent token: ${JSON.stringify(tok.body)}`);
    const token = tok.body.token as string;
    const host: RigHost = {
      name,
      ns,
      qmpDir,
      scratchDir,
      agentArgs: [...(o.agentArgs ?? [])],
      agent: undefined as unknown as RigAgent,
      startAgent() {
        const env = { ...process.env };
        delete env.NODE_OPTIONS;
        delete env.NODE_TLS_REJECT_UNAUTHORIZED;
        const argv = [...ns.exec, process.execPath, bin, 'agent', '--appliance', `https://${ns.hostIp}:${port}`, '--token', token, '--name', agentName, '--pin', pin, '--qmp-dir', qmpDir, '--scratch-dir', scratchDir, ...host.agentArgs];
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
        host.agent = { name: agentName, proc, log: () => out, kill };
        return host.agent;
      },
    };
    host.startAgent();
    const add = await api('POST', '/hosts', { name, agent: agentName });
    if (add.status !== 201) throw new Error(`host add: ${JSON.stringify(add.body)}`);
    hosts.push(host);
  }

  const rig: ClusterRig = {
    dir,
    app,
    hosts,
    vms: [],
    api,
    async startVm(host, name, uuid, vmid, disk, sizeBytes) {
      const q = await startQemu({ t, dir: path.dirname(disk), name, uuid, qmpPath: path.join(host.qmpDir, `${vmid}.qmp`), wrap: host.ns.exec, disks: [{ device: 'vda', file: disk, sizeBytes }] });
      const vm = { name, uuid, vmid, host, disk, q };
      rig.vms.push(vm);
      return vm;
    },
    async waitJob(id, timeoutMs = 180_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const job = (await api('GET', `/jobs/${id}`)).body;
        if (job.state !== 'queued' && job.state !== 'running') return job;
        if (Date.now() > until) throw new Error(`job ${id} still ${job.state} after ${timeoutMs} ms`);
        await new Promise((res) => setTimeout(res, 100));
      }
    },
    async agentsLive(timeoutMs = 60_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const { hosts: hs } = (await api('GET', '/hosts')).body;
        if (hs.every((h: any) => h.agentState === 'live')) return;
        if (Date.now() > until) throw new Error(`agents not live: ${JSON.stringify(hs)}\n${hosts.map((h) => h.agent.log()).join('\n')}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    },
  };
  const vmDir = path.join(dir, 'disks');
  fs.mkdirSync(vmDir, { recursive: true });
  const starts: Array<Promise<RigVm>> = [];
  for (const [i, h] of hosts.entries()) {
    for (let v = 0; v < o.vmsPerHost; v++) {
      const vmid = (i + 1) * 100 + v + 1;
      starts.push(rig.startVm(h, `vm${vmid}`, uuidOf(i + 1, v + 1), vmid, path.join(vmDir, `vm${vmid}.qcow2`), o.diskBytes ?? 16 * 1024 * 1024));
    }
  }
  await Promise.all(starts);
  return rig;
}
