// A real QEMU with no guest: `qemu-system-x86_64 -S` (stopped before the first instruction), TCG,
// with the given disks on virtio-blk. Cheap (~28 MB, almost no CPU) and enough for everything
// the backup does through QMP and NBD: bitmaps, fleecing jobs, exports. Guest-like writes go
// through the real block layer with HMP qemu-io (see qemuIo). stop() ends QEMU by its PID with
// SIGTERM (a clean shutdown that writes persistent bitmaps into the qcow2), SIGKILL after 10 s.

import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { runTool } from './run-tool.js';

export interface TestDisk {
  /** Device id and guest name, e.g. 'vda'. */
  device: string;
  file: string;
  format?: 'qcow2' | 'raw';
  /** Creates the file with qemu-img when it does not exist. */
  sizeBytes?: number;
}

export interface TestQemu {
  qmpPath: string;
  /** 'unix:' + qmpPath, the address the clients take. */
  qmp: string;
  /** The guest-agent socket when asked for (QEMU serves it; no agent answers: there is no guest). */
  qgaPath?: string;
  /**
   * A second QMP monitor when asked for (secondQmp): QEMU serves one client per monitor, so a
   * test writes through this one while a backup holds the first.
   */
  qmp2?: string;
  pid: number;
  /** Block node name of each disk's format node: 'disk-' + device. */
  nodeOf(device: string): string;
  /** The qdev path HMP qemu-io takes for a disk. */
  qdevOf(device: string): string;
  stderr(): string;
  stop(): Promise<void>;
}

export interface StartQemuOptions {
  dir: string;
  disks: TestDisk[];
  name?: string;
  /** Adds virtio-serial and a guest-agent chardev socket (no agent will answer it). */
  qga?: boolean;
  /** Adds a second QMP monitor (TestQemu.qmp2). */
  secondQmp?: boolean;
  /** Adds a virtio NIC with this MAC (user networking, no ROM). */
  nicMac?: string;
  memoryMiB?: number;
  cpus?: number;
  /** Registers stop() with the test's teardown. */
  t?: { teardown(fn: () => unknown): void };
  /** argv prefix QEMU runs under, e.g. `ip netns exec NS` (it must exec, so the PID stays QEMU's). */
  wrap?: string[];
  /** QEMU's -uuid (default a fixed one). */
  uuid?: string;
  /** Where the QMP socket goes (default a random name in dir), e.g. the Proxmox layout <dir>/<vmid>.qmp. */
  qmpPath?: string;
}

export async function startQemu(opts: StartQemuOptions): Promise<TestQemu> {
  const qmpPath = opts.qmpPath ?? path.join(opts.dir, `qmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}.sock`);
  const qgaPath = opts.qga ? qmpPath.replace(/\.sock$/, '.qga.sock') : undefined;
  const args = [
    '-S',
    '-machine', 'q35,accel=tcg',
    '-nodefaults',
    '-display', 'none',
    '-m', String(opts.memoryMiB ?? 64),
    '-smp', String(opts.cpus ?? 1),
    '-name', opts.name ?? 'testvm',
    '-uuid', opts.uuid ?? '6b1e3b2c-0c1d-4d5e-9f00-112233445566',
    '-qmp', `unix:${qmpPath},server=on,wait=off`,
  ];
  const qmp2Path = opts.secondQmp ? qmpPath.replace(/\.sock$/, '.2.sock') : undefined;
  if (qmp2Path) args.push('-qmp', `unix:${qmp2Path},server=on,wait=off`);
  for (const d of opts.disks) {
    const format = d.format ?? 'qcow2';
    if (!fs.existsSync(d.file)) {
      const r = await runTool('qemu-img', ['create', '-q', '-f', format, d.file, String(d.sizeBytes ?? 64 * 1024 * 1024)]);
      if (r.code !== 0) throw new Error(`qemu-img create ${d.file}: ${r.stderr}`);
    }
    args.push(
      '-blockdev', `driver=file,node-name=file-${d.device},filename=${d.file}`,
      '-blockdev', `driver=${format},node-name=disk-${d.device},file=file-${d.device}`,
      '-device', `virtio-blk-pci,drive=disk-${d.device},id=${d.device}`,
    );
  }
  if (qgaPath) {
    args.push(
      '-device', 'virtio-serial-pci',
      '-chardev', `socket,path=${qgaPath},server=on,wait=off,id=qga0`,
      '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
    );
  }
  if (opts.nicMac) {
    args.push('-netdev', 'user,id=n0', '-device', `virtio-net-pci,netdev=n0,id=net0,mac=${opts.nicMac},romfile=`);
  }
  const argv = [...(opts.wrap ?? []), 'qemu-system-x86_64', ...args];
  const child: ChildProcess = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let running = true;
  void exited.then(() => (running = false));
  const stop = async (): Promise<void> => {
    if (!running || child.pid === undefined) return;
    const signal = (sig: NodeJS.Signals) => {
      try {
        if (running && child.pid !== undefined) process.kill(child.pid, sig);
      } catch {
        // exited between the check and the signal
      }
    };
    signal('SIGTERM');
    const timer = setTimeout(() => signal('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  opts.t?.teardown(stop);
  // Wait for the QMP socket (QEMU creates it before it starts the machine).
  const deadline = Date.now() + 30_000;
  while (!fs.existsSync(qmpPath)) {
    if (!running) throw new Error(`qemu-system-x86_64 exited at start: ${err}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`qemu-system-x86_64 made no QMP socket in 30 s: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  // The file exists from bind(); QEMU listens a moment later. Probe until a connection is taken
  // (QEMU greets the probe and forgets it when it leaves). The guest agent's channel likewise:
  // a test that connected to it between its bind() and listen() got ECONNREFUSED (seen once in
  // a whole-suite run) instead of the "no agent answers" it was checking.
  const accepting = async (sock: string, what: string): Promise<void> => {
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.createConnection(sock, () => (s.destroy(), resolve(true)));
        s.on('error', () => resolve(false));
      });
      if (ok) return;
      if (!running) throw new Error(`qemu-system-x86_64 exited at start: ${err}`);
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`qemu-system-x86_64 does not accept on its ${what} socket in 30 s: ${err}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await accepting(qmpPath, 'QMP');
  if (qgaPath) await accepting(qgaPath, 'guest agent');
  // The second monitor's socket is bound a moment after the first.
  while (qmp2Path !== undefined && !fs.existsSync(qmp2Path)) {
    if (!running) throw new Error(`qemu-system-x86_64 exited at start: ${err}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`qemu-system-x86_64 made no second QMP socket in 30 s: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    qmpPath,
    qmp: `unix:${qmpPath}`,
    qgaPath,
    ...(qmp2Path ? { qmp2: `unix:${qmp2Path}` } : {}),
    pid: child.pid!,
    nodeOf: (device) => `disk-${device}`,
    qdevOf: (device) => `/machine/peripheral/${device}/virtio-backend`,
    stderr: () => err,
    stop,
  };
}

/** What execute() of a QMP client needs; keeps this helper free of src/ imports. */
interface Executes {
  execute<T = unknown>(command: string, args?: object): Promise<T>;
}

/**
 * A guest-like write through QEMU's block layer (so dirty bitmaps and fleecing see it):
 * HMP `qemu-io -d QDEV "write -P PATTERN OFFSET LENGTH"`. Throws on qemu-io's error text.
 */
export async function qemuIo(qmp: Executes, qdev: string, cmd: string): Promise<string> {
  const out = await qmp.execute<string>('human-monitor-command', { 'command-line': `qemu-io -d ${qdev} "${cmd}"` });
  if (/error|failed|invalid/i.test(out)) throw new Error(`qemu-io ${cmd}: ${out}`);
  return out;
}
