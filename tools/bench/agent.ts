// The agent bench (`npm run bench:agent [-- --quick]`): issue 12's figures, each against a
// baseline measured in the same run.
//
// The rig: a hypervisor host in a network namespace (a veth pair to the root namespace), QEMU -S
// there with the sample images of ../shared/testdata as qcow2 disks (--quick: their first
// 512 MiB), the agents there too; a real appliance (child process, HTTPS with a pinned
// certificate) on the root side. Each contender starts from a fresh data directory, so none
// finds the others' segments.
//
//   agent.local.vs_internal        unlimited link: full backup of vm1 day 1 by the appliance's
//                                  own copy (time) / the same by one agent (time); goal >= 0.9.
//                                  Cold against cold, in the same state: each side a fresh
//                                  appliance (the agent side also a fresh agent), a fresh QEMU of
//                                  its own on its own qcow2 of the same bytes, that qcow2 pre-read
//                                  into the page cache and nothing left to write back (sync), the
//                                  internal copy first. (Until benchfair the internal copy ran
//                                  right after its qcow2 was written, its dirty pages left to the
//                                  kernel's flusher (30 s after writing, maybe during either
//                                  timed backup), and the agent read the same QEMU the internal
//                                  copy had served: that number is still printed as a note, "old
//                                  definition", from an extra internal copy in the old state.)
//   agent.day2.wire_vs_new         day-2 backup (incremental, through the agent) after day 1:
//                                  bytes on the wire / (the store's new stored bytes + the
//                                  fingerprint traffic); goal <= 1.1
//   agent.fingerprint_bytes_per_gib  fingerprint traffic per GiB the agent read (day 1 full)
//   agent.wan.speedup_vs_raw       link limited to 100 Mbit/s (tc tbf on both veth ends): the
//                                  time to copy the disk's data bytes raw over it (TCP, measured
//                                  on a 48 MiB sample and scaled) / the day-2 backup's time
//   agent.two.vs_one               unlimited link: aggregate throughput of 2 agents backing up 2
//                                  VMs at once / 1 agent backing up 1 VM; goal >= 1.6
//   agent.rss_mib                  peak RSS (VmHWM) of the agent process over its full backup
//
// Extra figure (not one of the issue's; --no-warm leaves it out):
//   agent.local.vs_internal.warm   as agent.local.vs_internal, but each side's processes warm:
//                                  a fresh appliance (and, on the agent side, a fresh agent)
//                                  first backs up a warm-up disk of other content, then the same
//                                  processes back up vm1 day 1 (a fresh QEMU for each side,
//                                  pre-read and synced as above) into the same store. The goal's
//                                  figure compares a fresh appliance with a fresh appliance plus
//                                  a fresh agent: two processes' JIT warm-up against one. An
//                                  agent is a daemon and an appliance runs for months; both are
//                                  warm in steady state, which this figure measures. The warm-up
//                                  disk is vm1 day 1's first bytes with every non-zero byte
//                                  mapped through a fixed permutation of 1..255: the same zero
//                                  runs, the same LZ4 ratio (equal bytes stay equal), no segment
//                                  in common with vm1 (so nothing of vm1 is deduplicated by it).
//
// Each full backup's note also gives the CPU seconds (utime + stime, from /proc) the appliance,
// each agent and each QEMU spent on it, with the node processes' main threads apart (JavaScript;
// the rest is the libuv pool's hashing and LZ4 and V8's compiler and GC threads): on 2 cores the
// time figures follow their sum. The first two backups' notes also list their jobs' timed steps
// (the copy against fleecing, commit and snapshot).
//
// Needs root (namespaces, tc), qemu-system-x86_64, qemu-img, openssl.

import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { QmpClient } from '../../src/plugins/qemu/qmp.js';
import { type Appliance, startAppliance } from '../../test/helpers/appliance.js';
import { makeNetNs, type NetNs } from '../../test/helpers/netns.js';
import { startQemu, type TestQemu } from '../../test/helpers/qemu.js';
import { applyRuns, changedRuns } from './backup-day2.js';
import { run } from './fuse-appliance.js';
import { settle } from './page-cache.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'vmvault.js');

export interface AgentFigure {
  figure: string;
  value: number;
  unit: string;
}

export interface BenchAgentOptions {
  quick: boolean;
  images: string;
  work?: string;
  /** Also measure warm processes (agent.local.vs_internal.warm); default true. */
  warm?: boolean;
  emit(f: AgentFigure): void;
  note(line: string): void;
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;

interface Cleanups {
  teardown(fn: () => unknown): void;
  run(): Promise<void>;
}

function cleanups(): Cleanups {
  const fns: Array<() => unknown> = [];
  return {
    teardown: (fn) => void fns.push(fn),
    run: async () => {
      for (const fn of fns.reverse()) await Promise.resolve(fn()).catch(() => {});
    },
  };
}

type Api = (method: string, route: string, body?: unknown) => Promise<{ status: number; body: any }>;

function apiOf(app: Appliance): Api {
  return async (method, route, body) => {
    const res = await fetch(`${app.url}/api/v1${route}`, {
      method,
      headers: { authorization: `Bearer ${app.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
}

async function backup(api: Api, vm: string, body: object = {}): Promise<{ seconds: number; job: any }> {
  const t0 = performance.now();
  const res = await api('POST', `/vms/${vm}/backups`, body);
  if (res.status !== 202) throw new Error(`backup ${vm}: ${res.status} ${JSON.stringify(res.body)}`);
  for (;;) {
    const job = (await api('GET', `/jobs/${res.body.job}`)).body;
    if (job.state !== 'queued' && job.state !== 'running') {
      if (job.state !== 'succeeded') throw new Error(`backup ${vm} ${job.state}: ${JSON.stringify(job.error)}\n${job.log.join('\n')}`);
      return { seconds: (performance.now() - t0) / 1000, job };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** CPU seconds (user + system) in a /proc stat file; 0 once it is gone. */
function statSeconds(file: string): number {
  try {
    const f = fs.readFileSync(file, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 1/100 s
  } catch {
    return 0;
  }
}

/**
 * CPU seconds a process used so far: all threads, and its main thread alone (a node process's
 * JavaScript; the rest is the libuv pool's hashing, LZ4 and file I/O, and V8's compiler and
 * GC threads). 0 once it is gone.
 */
function cpuSeconds(pid: number | undefined): { all: number; main: number } {
  if (pid === undefined) return { all: 0, main: 0 };
  return { all: statSeconds(`/proc/${pid}/stat`), main: statSeconds(`/proc/${pid}/task/${pid}/stat`) };
}

/**
 * CPU seconds each named process spent while `fn` ran (the figures are bound by them
 * on 2 cores), with its main thread's share in brackets for the node processes.
 */
async function cpuOf<T>(pids: Record<string, number | undefined>, fn: () => Promise<T>): Promise<{ r: T; cpu: string }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]));
  const r = await fn();
  const cpu = Object.entries(pids)
    .map(([k, pid]) => {
      const now = cpuSeconds(pid);
      const all = `${k} ${(now.all - before[k].all).toFixed(2)}`;
      return k.startsWith('qemu') ? all : `${all} (main thread ${(now.main - before[k].main).toFixed(2)})`;
    })
    .join(', ');
  return { r, cpu: `CPU s: ${cpu}` };
}

/** The agent copy figures its job logged. */
function figures(job: { log: string[] }): { read: number; wire: number; sent: number; segments: number; fp: number } {
  for (const line of job.log) {
    const m = /read (\d+) bytes, (\d+) on the wire \((\d+) of (\d+) segments sent, (\d+) fingerprint bytes\)/.exec(line);
    if (m) return { read: Number(m[1]), wire: Number(m[2]), sent: Number(m[3]), segments: Number(m[4]), fp: Number(m[5]) };
  }
  throw new Error(`no agent copy line in the job log:\n${job.log.join('\n')}`);
}

/**
 * The job log's timed steps (file ready, the copy, commit, snapshot), without their timestamps:
 * how much of a backup's time the copy itself took, and what the steps around it cost.
 */
function timedSteps(job: { log: string[] }): string {
  return job.log
    .filter((l) => / \d+ ms\b/.test(l))
    .map((l) => l.replace(/^\S+ /, '').replace(/read \d+ bytes.*?\), /, ''))
    .join('; ');
}

interface Rig {
  ns: NetNs;
  cert: string;
  key: string;
  pin: string;
}

async function appliance(c: Cleanups, work: string, rig: Rig, name: string): Promise<{ app: Appliance; api: Api }> {
  const dir = path.join(work, name);
  fs.mkdirSync(dir, { recursive: true });
  const app = await startAppliance(c, dir, ['--listen', `${rig.ns.hostIp}:0`, '--tls-cert', rig.cert, '--tls-key', rig.key, '--agent-lost', '10']);
  return { app, api: apiOf(app) };
}

/** An agent token of its own (not the admin token: agents get their scope's answers, as deployed). */
async function agentToken(api: Api, name: string): Promise<string> {
  const res = await api('POST', '/agents/tokens', { name });
  if (res.status !== 201) throw new Error(`agent token ${name}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.token as string;
}

async function startAgent(c: Cleanups, rig: Rig, app: Appliance, name: string): Promise<{ pid: number; log: () => string; peakRssMiB: () => number }> {
  const token = await agentToken(apiOf(app), `t-${name}`);
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  delete env.NODE_TLS_REJECT_UNAUTHORIZED;
  const argv = [...rig.ns.exec, process.execPath, bin, 'agent', '--appliance', app.url, '--token', token, '--name', name, '--pin', rig.pin, '--streams', '2'];
  const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env });
  let out = '';
  p.stderr!.on('data', (d) => (out += d));
  let alive = true;
  const exited = new Promise<void>((r) => p.on('exit', () => ((alive = false), r())));
  let peak = 0;
  const sample = () => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${p.pid}/status`, 'utf8'));
      if (m) peak = Math.max(peak, Number(m[1]) / 1024);
    } catch {
      // exited
    }
  };
  const timer = setInterval(sample, 200);
  c.teardown(async () => {
    clearInterval(timer);
    if (alive) p.kill('SIGKILL');
    await exited;
  });
  return { pid: p.pid!, log: () => out, peakRssMiB: () => (sample(), Math.round(peak)) };
}

async function waitAgents(api: Api, names: string[]): Promise<void> {
  const end = Date.now() + 60_000;
  for (;;) {
    const live = new Set(((await api('GET', '/agents')).body.agents as Array<{ name: string; state: string }>).filter((a) => a.state === 'live').map((a) => a.name));
    if (names.every((n) => live.has(n))) return;
    if (Date.now() > end) throw new Error(`agents ${names.join(', ')} did not register`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Writes the first `bytes` of `src` to `dst` with every non-zero byte b mapped to
 * ((b - 1 + 101) mod 255) + 1: a permutation of 1..255 that keeps zeros zero and equal bytes
 * equal (so zero runs and LZ4's matches are the same), while no segment's bytes stay the same.
 */
function permutedCopy(src: string, dst: string, bytes: number): void {
  const map = new Uint8Array(256);
  for (let b = 1; b < 256; b++) map[b] = ((b - 1 + 101) % 255) + 1;
  const buf = Buffer.allocUnsafe(4 * MiB);
  const fi = fs.openSync(src, 'r');
  const fo = fs.openSync(dst, 'w');
  try {
    for (let off = 0; off < bytes; ) {
      const n = fs.readSync(fi, buf, 0, Math.min(buf.length, bytes - off), off);
      if (n === 0) break;
      let zero = true;
      for (let i = 0; i < n; i++) {
        const b = buf[i];
        if (b !== 0) {
          buf[i] = map[b];
          zero = false;
        }
      }
      if (!zero) fs.writeSync(fo, buf, 0, n, off); // all-zero chunks stay holes
      off += n;
    }
    fs.ftruncateSync(fo, bytes);
  } finally {
    fs.closeSync(fi);
    fs.closeSync(fo);
  }
}

/** The machine's dirty and under-writeback page cache (/proc/meminfo), for the notes: what a timed backup's writes queue behind. */
function dirty(): string {
  const m = fs.readFileSync('/proc/meminfo', 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(m)?.[1] ?? NaN);
  return `page cache at the start: ${(kb('Dirty') / 1024).toFixed(0)} MiB dirty, ${(kb('Writeback') / 1024).toFixed(0)} MiB under writeback`;
}

/** Seconds to send `bytes` raw over TCP from the namespace to the root side (a plain copy over the link). */
async function rawCopySeconds(rig: Rig, file: string, bytes: number): Promise<number> {
  const server = net.createServer();
  let got = 0;
  let t0 = 0;
  const done = new Promise<number>((resolve) => {
    server.on('connection', (s) => {
      s.on('data', (d: Buffer) => {
        if (got === 0) t0 = performance.now();
        got += d.length;
      });
      s.on('end', () => resolve((performance.now() - t0) / 1000));
    });
  });
  await new Promise<void>((r) => server.listen(0, rig.ns.hostIp, r));
  const port = (server.address() as net.AddressInfo).port;
  const script = `const fs=require('fs'),net=require('net');const s=net.connect(${port},'${rig.ns.hostIp}',()=>{fs.createReadStream(${JSON.stringify(file)},{start:0,end:${bytes - 1}}).pipe(s)});`;
  const p = spawn(rig.ns.exec[0], [...rig.ns.exec.slice(1), process.execPath, '-e', script], { stdio: 'ignore' });
  const secs = await done;
  await new Promise((r) => p.on('exit', r));
  server.close();
  return secs;
}

export async function benchAgent(opts: BenchAgentOptions): Promise<void> {
  const { emit, note } = opts;
  const day1 = path.join(opts.images, 'vm1-day1.raw');
  const day2 = path.join(opts.images, 'vm1-day2.raw');
  const vm2 = path.join(opts.images, 'vm2-day1.raw');
  for (const f of [day1, day2, vm2]) if (!fs.existsSync(f)) throw new Error(`${f} is missing: make the sample images with ../shared/testdata/make-vm-images.sh (or pass --images DIR)`);
  const size = opts.quick ? 512 * MiB : fs.statSync(day1).size;
  const work = fs.mkdtempSync(path.join(opts.work ?? os.tmpdir(), 'vmvault-bench-agent-'));
  const c = cleanups();
  try {
    const ns = await makeNetNs(c);
    const key = path.join(work, 'tls.key');
    const cert = path.join(work, 'tls.crt');
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=vmvault-bench', '-addext', `subjectAltName=IP:${ns.hostIp}`]);
    const rig: Rig = { ns, cert, key, pin: new X509Certificate(fs.readFileSync(cert)).fingerprint256 };
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0'; // this process's own API calls; the agents pin

    const diskOf = async (src: string, name: string, bytes: number) => {
      const f = path.join(work, `${name}.qcow2`);
      await run('qemu-img', ['convert', '--image-opts', `driver=raw,size=${bytes},file.driver=file,file.filename=${src}`, '-O', 'qcow2', f]);
      return f;
    };
    const disk = (src: string, name: string) => diskOf(src, name, size);
    const qemu = async (file: string, name: string): Promise<TestQemu> => startQemu({ dir: work, name, wrap: ns.exec, disks: [{ device: 'vda', file }], t: c });
    note(`disks: first ${size / MiB} MiB of vm1-day1 and vm2-day1, qcow2, QEMU in namespace ${ns.name}`);

    // 0. The old definition's internal copy (for one stop): as until benchfair, right after its
    // qcow2 was written (its dirty pages not yet written back), a fresh QEMU and appliance.
    let tInternalOld: number;
    {
      const qOld = await qemu(await disk(day1, 'vm1-old'), 'vm1-old');
      const { app, api } = await appliance(c, work, rig, 'internal-old');
      await api('POST', '/vms', { name: 'vm1', qmp: qOld.qmp, workflow: 'crash-consistent' });
      const pc = dirty();
      const { r, cpu } = await cpuOf({ appliance: app.proc.pid, qemu: qOld.pid }, () => backup(api, 'vm1', { full: true }));
      tInternalOld = r.seconds;
      note(`old definition: internal copy, full, right after its qcow2 was written: ${tInternalOld.toFixed(2)} s; ${cpu}; ${pc}`);
      await app.stop();
      await qOld.stop();
    }

    // 1. The appliance's own copy (internal agent), fresh store, its own fresh QEMU, the source
    // settled. vm1's own QEMU (q1, made now so its qcow2 is written back before either timed
    // backup) serves the agent side and the day-2 and two-agent steps after it.
    const vm1Int = await disk(day1, 'vm1-int');
    const qInt = await qemu(vm1Int, 'vm1-int');
    const vm1Disk = await disk(day1, 'vm1');
    const q1 = await qemu(vm1Disk, 'vm1');
    let tInternal: number;
    let tAgentCold = 0;
    {
      const { app, api } = await appliance(c, work, rig, 'internal');
      await api('POST', '/vms', { name: 'vm1', qmp: qInt.qmp, workflow: 'crash-consistent' });
      await settle(vm1Int);
      const pc = dirty();
      const { r, cpu } = await cpuOf({ appliance: app.proc.pid, qemu: qInt.pid }, () => backup(api, 'vm1', { full: true }));
      tInternal = r.seconds;
      note(`internal copy, full: ${tInternal.toFixed(2)} s, read ${(r.job.result.bytesRead / MiB).toFixed(0)} MiB; ${cpu}; ${pc}`);
      note(`internal copy, full, steps: ${timedSteps(r.job)}`);
      await app.stop();
      await qInt.stop();
    }

    // 2. One agent, unlimited link, fresh store: day 1 full, then day 2 over 100 Mbit/s.
    {
      const { app, api } = await appliance(c, work, rig, 'agent1');
      const a = await startAgent(c, rig, app, 'a1');
      await waitAgents(api, ['a1']);
      await api('POST', '/vms', { name: 'vm1', qmp: q1.qmp, workflow: 'crash-consistent', agent: 'a1' });
      await settle(vm1Disk);
      const pc = dirty();
      const { r: r1, cpu } = await cpuOf({ appliance: app.proc.pid, agent: a.pid, qemu: q1.pid }, () => backup(api, 'vm1', { full: true }));
      const f1 = figures(r1.job);
      tAgentCold = r1.seconds;
      note(`agent, full: ${r1.seconds.toFixed(2)} s, read ${(f1.read / MiB).toFixed(0)} MiB, ${(f1.wire / MiB).toFixed(1)} MiB on the wire, ${f1.sent}/${f1.segments} segments sent; ${cpu}; ${pc}`);
      note(`agent, full, steps: ${timedSteps(r1.job)}`);
      note(`old definition: agent.local.vs_internal with the internal copy in the old state ${r3(tInternalOld / r1.seconds)}`);
      emit({ figure: 'agent.local.vs_internal', value: r3(tInternal / r1.seconds), unit: 'internal time / agent time, both cold, sources settled' });
      emit({ figure: 'agent.fingerprint_bytes_per_gib', value: Math.round(f1.fp / (f1.read / GiB)), unit: 'bytes per GiB read' });
      emit({ figure: 'agent.rss_mib', value: a.peakRssMiB(), unit: 'MiB' });

      const runs = changedRuns(day1, day2, size);
      const qmp = await QmpClient.connect(q1.qmp);
      try {
        await applyRuns(qmp, q1.qdevOf('vda'), day2, runs, work);
      } finally {
        await qmp.close();
      }
      note(`day 2: ${runs.length} changed runs, ${(runs.reduce((n, r) => n + r.length, 0) / MiB).toFixed(1)} MiB written through QEMU`);
      await ns.limit(100);
      const before = (await api('GET', '/stats')).body;
      const r2 = await backup(api, 'vm1');
      const after = (await api('GET', '/stats')).body;
      const f2 = figures(r2.job);
      const newStored = after.storedBytes - before.storedBytes;
      note(`day 2 at 100 Mbit/s: ${r2.seconds.toFixed(2)} s (${r2.job.result.kind}), read ${(f2.read / MiB).toFixed(1)} MiB, ${(f2.wire / MiB).toFixed(2)} MiB on the wire, new stored ${(newStored / MiB).toFixed(2)} MiB, fingerprints ${(f2.fp / MiB).toFixed(2)} MiB`);
      emit({ figure: 'agent.day2.wire_vs_new', value: r3(f2.wire / Math.max(1, newStored + f2.fp)), unit: 'wire bytes / (new stored bytes + fingerprint bytes)' });
      const sample = 48 * MiB;
      const tSample = await rawCopySeconds(rig, day2, sample);
      const tRaw = (tSample * f1.read) / sample;
      note(`raw TCP copy over the same link: ${sample / MiB} MiB in ${tSample.toFixed(2)} s; the disk's ${(f1.read / MiB).toFixed(0)} MiB of data: ${tRaw.toFixed(1)} s`);
      emit({ figure: 'agent.wan.speedup_vs_raw', value: r3(tRaw / r2.seconds), unit: 'raw copy time / day-2 agent backup time' });
      await ns.limit(undefined);
    }

    // 3. One agent on vm2 alone, then two agents on vm1 and vm2 at once (fresh stores each).
    const q2 = await qemu(await disk(vm2, 'vm2'), 'vm2');
    let one: number;
    {
      const { app, api } = await appliance(c, work, rig, 'one');
      const a2 = await startAgent(c, rig, app, 'a2');
      await waitAgents(api, ['a2']);
      await api('POST', '/vms', { name: 'vm2', qmp: q2.qmp, workflow: 'crash-consistent', agent: 'a2' });
      const { r, cpu } = await cpuOf({ appliance: app.proc.pid, agent: a2.pid, qemu: q2.pid }, () => backup(api, 'vm2', { full: true }));
      one = figures(r.job).read / r.seconds;
      note(`one agent, vm2 full: ${r.seconds.toFixed(2)} s, ${(one / MiB).toFixed(1)} MiB/s; ${cpu}`);
    }
    {
      const { app, api } = await appliance(c, work, rig, 'two');
      const b1a = await startAgent(c, rig, app, 'a1');
      const b2a = await startAgent(c, rig, app, 'a2');
      await waitAgents(api, ['a1', 'a2']);
      await api('POST', '/vms', { name: 'vm1', qmp: q1.qmp, workflow: 'crash-consistent', agent: 'a1' });
      await api('POST', '/vms', { name: 'vm2', qmp: q2.qmp, workflow: 'crash-consistent', agent: 'a2' });
      const t0 = performance.now();
      const { r: [b1, b2], cpu } = await cpuOf({ appliance: app.proc.pid, agent1: b1a.pid, agent2: b2a.pid, qemu1: q1.pid, qemu2: q2.pid }, () =>
        Promise.all([backup(api, 'vm1', { full: true }), backup(api, 'vm2', { full: true })]),
      );
      const secs = (performance.now() - t0) / 1000;
      const two = (figures(b1.job).read + figures(b2.job).read) / secs;
      note(`two agents at once: ${secs.toFixed(2)} s, ${(two / MiB).toFixed(1)} MiB/s together; ${cpu}`);
      emit({ figure: 'agent.two.vs_one', value: r3(two / one), unit: 'aggregate throughput of 2 / throughput of 1' });
    }

    // 4. Warm against warm (extra figure): each side backs up the warm-up disk first, then vm1
    // day 1 with the same processes into the same store. vm1's QEMU holds day 2 by now, so
    // day 1 gets a QEMU of its own, on a fresh qcow2.
    if (opts.warm !== false) {
      const warmBytes = Math.min(size, 256 * MiB);
      const warmRaw = path.join(work, 'warmup.raw');
      permutedCopy(day1, warmRaw, warmBytes);
      const qw = await qemu(await diskOf(warmRaw, 'warmup', warmBytes), 'warmup');
      fs.rmSync(warmRaw);
      const vm1wInt = await disk(day1, 'vm1w-int');
      const q1wInt = await qemu(vm1wInt, 'vm1w-int');
      const vm1wAgent = await disk(day1, 'vm1w');
      const q1w = await qemu(vm1wAgent, 'vm1w');
      let tInternalWarm: number;
      {
        const { app, api } = await appliance(c, work, rig, 'internal-warm');
        await api('POST', '/vms', { name: 'warmup', qmp: qw.qmp, workflow: 'crash-consistent' });
        await api('POST', '/vms', { name: 'vm1', qmp: q1wInt.qmp, workflow: 'crash-consistent' });
        const w = await cpuOf({ appliance: app.proc.pid }, () => backup(api, 'warmup', { full: true }));
        note(`internal copy, warm-up (${warmBytes / MiB} MiB of permuted vm1): ${w.r.seconds.toFixed(2)} s; ${w.cpu}`);
        await settle(vm1wInt);
        const { r, cpu } = await cpuOf({ appliance: app.proc.pid, qemu: q1wInt.pid }, () => backup(api, 'vm1', { full: true }));
        tInternalWarm = r.seconds;
        note(`internal copy, full, warm: ${tInternalWarm.toFixed(2)} s (cold ${tInternal.toFixed(2)} s); ${cpu}`);
        await app.stop();
        await q1wInt.stop();
      }
      {
        const { app, api } = await appliance(c, work, rig, 'agent-warm');
        const a = await startAgent(c, rig, app, 'aw');
        await waitAgents(api, ['aw']);
        await api('POST', '/vms', { name: 'warmup', qmp: qw.qmp, workflow: 'crash-consistent', agent: 'aw' });
        await api('POST', '/vms', { name: 'vm1', qmp: q1w.qmp, workflow: 'crash-consistent', agent: 'aw' });
        const w = await cpuOf({ appliance: app.proc.pid, agent: a.pid }, () => backup(api, 'warmup', { full: true }));
        note(`agent, warm-up (${warmBytes / MiB} MiB of permuted vm1): ${w.r.seconds.toFixed(2)} s; ${w.cpu}`);
        await settle(vm1wAgent);
        const { r, cpu } = await cpuOf({ appliance: app.proc.pid, agent: a.pid, qemu: q1w.pid }, () => backup(api, 'vm1', { full: true }));
        const f = figures(r.job);
        note(`agent, full, warm: ${r.seconds.toFixed(2)} s, ${f.sent}/${f.segments} segments sent (cold ${tAgentCold.toFixed(2)} s); ${cpu}`);
        emit({ figure: 'agent.local.vs_internal.warm', value: r3(tInternalWarm / r.seconds), unit: 'internal time / agent time, both warm (extra; not the goal figure)' });
      }
    }
  } finally {
    await c.run();
    fs.rmSync(work, { recursive: true, force: true });
  }
}
