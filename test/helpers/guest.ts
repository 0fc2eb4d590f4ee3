// The real test guest for the VM backup tests: built (or taken from the cache) by
// tools/make-test-guest.sh, booted under TCG (no KVM here) with its data disk vda (ext4 holding
// PostgreSQL 15 and a pgbench database, qcow2 so persistent dirty bitmaps work), a guest agent on
// a virtio-serial port, and QEMU user networking forwarding a free host port to the guest's
// PostgreSQL. Boot to ready takes 15-40 s depending on how busy the machine is.
//
// QMP: the `qmp` address is for the code under test alone (QEMU serves one client per monitor);
// the helper has a second monitor of its own (`helperQmp`) to watch and stop QEMU. The guest agent
// has a single channel: the helper connects to it only while one of its calls runs (bootGuest's
// ping, agent(), exec()), so do not call those while the code under test holds the agent.

import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { qga, qgaRun, qmp } from './qemu-sockets.js';
import { runTool } from './run-tool.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const makeGuestScript = path.join(root, 'tools', 'make-test-guest.sh');
export const PGBIN = '/usr/lib/postgresql/15/bin';

/** guest.json, written by tools/make-test-guest.sh beside the guest's files. */
export interface GuestInfo {
  version: number;
  key: string;
  kernel: string;
  packages: string;
  dataDisk: string;
  dataSizeMiB: number;
  /** The PostgreSQL data directory, as a path inside the data disk's file system. */
  pgdata: string;
  pgPort: number;
  pgUser: string;
  pgDatabase: string;
  pgbenchScale: number;
  pgUid: number;
  pgGid: number;
}

export interface GuestImage {
  dir: string;
  kernel: string;
  initrd: string;
  /** The pristine data disk (qcow2). Never boot it directly: bootGuest copies it. */
  dataDisk: string;
  info: GuestInfo;
}

/** Why the guest cannot be built or booted here, or null when it can (for tap's `skip`). */
export function guestUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (the guest build chowns files and runs initdb as postgres)';
  for (const f of ['/usr/bin/qemu-system-x86_64', '/usr/sbin/qemu-ga', '/bin/busybox', `${PGBIN}/initdb`, '/usr/sbin/mkfs.ext4', '/usr/bin/qemu-img']) {
    if (!fs.existsSync(f)) return `${f} is missing (tools/setup.sh --test installs it)`;
  }
  if (!fs.readdirSync('/boot').some((f) => f.startsWith('vmlinuz-'))) return 'no kernel in /boot (linux-image-amd64)';
  return null;
}

let built: Promise<GuestImage> | null = null;

// QEMUs still running when the test process exits without its teardowns: killed by pid, so no
// guest outlives its test.
const running = new Set<number>();
process.on('exit', () => {
  for (const pid of running) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/**
 * The guest image: tools/make-test-guest.sh run once per process (it returns at once when its
 * cache, ${VMVAULT_TEST_CACHE:-/var/cache/vmvault-test}, already holds this version).
 */
export function buildGuest(): Promise<GuestImage> {
  built ??= (async () => {
    const r = await runTool(makeGuestScript, [], { timeoutMs: 900_000 });
    if (r.code !== 0) throw new Error(`${makeGuestScript} failed (exit ${r.code}):\n${r.stderr.slice(-4000)}`);
    const dir = r.stdout.trim().split('\n').pop() ?? '';
    const info = JSON.parse(fs.readFileSync(path.join(dir, 'guest.json'), 'utf8')) as GuestInfo;
    return {
      dir,
      kernel: path.join(dir, 'vmlinuz'),
      initrd: path.join(dir, 'initrd.img'),
      dataDisk: path.join(dir, info.dataDisk),
      info,
    };
  })();
  built.catch(() => {
    built = null;
  });
  return built;
}

export interface BootOptions {
  /** A directory of the test's own (sockets, disk copies, console log). */
  dir: string;
  /** Guest memory; 320 MiB by default (enough for PostgreSQL with shared_buffers = 32MB). */
  memoryMiB?: number;
  /** Start PostgreSQL in the guest and wait until it accepts connections. */
  pg?: boolean;
  /** Boot from this data disk instead of a fresh copy of the image's (e.g. a restored disk). */
  disk?: string;
  /** Format of `disk`; from its extension by default (.raw/.img raw, else qcow2). */
  diskFormat?: 'raw' | 'qcow2';
  /** A second disk, vdb: a new empty qcow2 of that size, or an existing file. */
  extraDisk?: { sizeMiB: number } | { path: string; format?: 'raw' | 'qcow2' };
  /** Without a guest agent (no virtio-serial port): for refusing app-consistent backups. */
  noAgent?: boolean;
  /** How long to wait for the guest to be ready; 240 s by default (TCG on a busy machine). */
  timeoutMs?: number;
}

export interface GuestDisk {
  /** The device id (`-device ...,id=vda`), also the name the backup gives the disk. */
  device: string;
  /** The block node of the disk's format layer (`-blockdev ...,node-name=`). */
  node: string;
  path: string;
  format: 'raw' | 'qcow2';
}

export interface ExecResult {
  exitcode: number | null;
  signal: number | null;
  stdout: string;
  stderr: string;
}

export interface Guest {
  /** QMP address for the code under test ('unix:/...'). */
  qmp: string;
  /** Guest-agent address ('unix:/...'), or null with noAgent. */
  qga: string | null;
  qmpPath: string;
  qgaPath: string | null;
  /** The helper's own QMP socket (not for the code under test). */
  helperQmp: string;
  /** postgres://postgres@127.0.0.1:PORT/postgres when booted with pg, else null. */
  pgUrl: string | null;
  pgPort: number | null;
  /** The data disk QEMU runs on (vda). */
  diskPath: string;
  disks: GuestDisk[];
  pid: number;
  consoleLog: string;
  image: GuestImage;
  /** Whether QEMU is still running. */
  running(): boolean;
  /** A guest-agent command on its own connection. */
  agent<T = unknown>(command: string, args?: object, timeoutMs?: number): Promise<T>;
  /** Runs argv in the guest (initramfs root; the data disk is at /mnt) and waits for it to end. */
  exec(argv: string[], opts?: { timeoutMs?: number; input?: string; inputData?: Buffer }): Promise<ExecResult>;
  /** Starts argv in the guest and returns its pid at once (stop it with exec(['kill', pid])). */
  spawn(argv: string[]): Promise<number>;
  /** SQL through the host's psql to the guest's PostgreSQL; the rows, unaligned, '|' between fields. */
  psql(sql: string, timeoutMs?: number): Promise<string>;
  /** Stops QEMU: quit over QMP, SIGKILL by pid after 5 s. Idempotent; registered as t.teardown. */
  stop(): Promise<void>;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function formatOf(file: string, given?: 'raw' | 'qcow2'): 'raw' | 'qcow2' {
  return given ?? (/\.(raw|img)$/.test(file) ? 'raw' : 'qcow2');
}

/** Boots the test guest; stops it in t.teardown whatever happens. */
export async function bootGuest(t: Teardown, opts: BootOptions): Promise<Guest> {
  const image = await buildGuest();
  const dir = opts.dir;
  fs.mkdirSync(dir, { recursive: true });
  const timeoutMs = opts.timeoutMs ?? 240_000;

  const disks: GuestDisk[] = [];
  let diskPath: string;
  if (opts.disk) {
    diskPath = opts.disk;
  } else {
    diskPath = path.join(dir, 'vda.qcow2');
    fs.copyFileSync(image.dataDisk, diskPath, fs.constants.COPYFILE_FICLONE);
  }
  disks.push({ device: 'vda', node: 'disk0', path: diskPath, format: formatOf(diskPath, opts.disk ? opts.diskFormat : 'qcow2') });
  if (opts.extraDisk) {
    if ('path' in opts.extraDisk) {
      disks.push({ device: 'vdb', node: 'disk1', path: opts.extraDisk.path, format: formatOf(opts.extraDisk.path, opts.extraDisk.format) });
    } else {
      const p = path.join(dir, 'vdb.qcow2');
      const r = await runTool('qemu-img', ['create', '-q', '-f', 'qcow2', p, `${opts.extraDisk.sizeMiB}M`]);
      if (r.code !== 0) throw new Error(`qemu-img create ${p}: ${r.stderr}`);
      disks.push({ device: 'vdb', node: 'disk1', path: p, format: 'qcow2' });
    }
  }

  const qmpPath = path.join(dir, 'qmp.sock');
  const helperQmp = path.join(dir, 'helper-qmp.sock');
  const qgaPath = opts.noAgent ? null : path.join(dir, 'qga.sock');
  const consoleLog = path.join(dir, 'console.log');

  let child: ChildProcess | null = null;
  let exited = false;
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const c = child;
      if (!c || exited) return;
      const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      try {
        await qmp(helperQmp, 'quit', undefined, 3000);
      } catch {
        // QEMU may be wedged or already going: the kill below covers it.
      }
      const timer = setTimeout(() => {
        if (!exited && c.pid) process.kill(c.pid, 'SIGKILL');
      }, 5000);
      await gone;
      clearTimeout(timer);
    })();
    return stopping;
  };
  t.teardown(stop);

  // The forwarded port may be taken between freePort and QEMU's bind: then QEMU exits at once,
  // and one more port is tried.
  let pgPort: number | null = null;
  let stderr = '';
  for (let attempt = 0; ; attempt++) {
    pgPort = opts.pg ? await freePort() : null;
    for (const s of [qmpPath, helperQmp, qgaPath]) if (s) fs.rmSync(s, { force: true });
    fs.rmSync(consoleLog, { force: true });
    const args = [
      '-nodefaults', '-display', 'none', '-no-reboot',
      '-machine', 'q35', '-accel', 'tcg,tb-size=64', '-smp', '1', '-m', String(opts.memoryMiB ?? 320),
      '-name', 'vmvault-test-guest',
      '-kernel', image.kernel, '-initrd', image.initrd,
      '-append', `console=ttyS0 panic=-1 quiet${opts.pg ? ' vmvault.pg=1' : ''}`,
      '-serial', `file:${consoleLog}`,
      '-qmp', `unix:${qmpPath},server=on,wait=off`,
      '-chardev', `socket,id=helpermon,path=${helperQmp},server=on,wait=off`,
      '-mon', 'chardev=helpermon,mode=control',
    ];
    if (qgaPath) {
      args.push(
        '-device', 'virtio-serial-pci,id=vserial0',
        '-chardev', `socket,path=${qgaPath},server=on,wait=off,id=qga0`,
        '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
      );
    }
    for (const d of disks) {
      args.push(
        '-blockdev', `driver=file,filename=${d.path},node-name=${d.node}-file`,
        '-blockdev', `driver=${d.format},file=${d.node}-file,node-name=${d.node}`,
        '-device', `virtio-blk-pci,drive=${d.node},id=${d.device}`,
      );
    }
    // romfile= : no iPXE option ROM (the ipxe-qemu package may be absent; nothing boots from it).
    args.push('-netdev', `user,id=net0${pgPort ? `,hostfwd=tcp:127.0.0.1:${pgPort}-:5432` : ''}`);
    args.push('-device', 'virtio-net-pci,netdev=net0,romfile=,id=nic0');

    exited = false;
    stderr = '';
    // setpriv --pdeathsig: QEMU (setpriv execs it, same pid) gets SIGKILL when this process dies
    // in any way, also by a signal that skips the exit handler above.
    const c = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'qemu-system-x86_64', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    c.stderr?.setEncoding('utf8');
    c.stderr?.on('data', (s: string) => {
      if (stderr.length < 16_384) stderr += s;
    });
    if (c.pid) running.add(c.pid);
    c.on('exit', () => {
      exited = true;
      if (c.pid) running.delete(c.pid);
    });
    // Wait for QEMU to answer on the helper's monitor, or to exit.
    const until = Date.now() + 30_000;
    let up = false;
    while (!exited && Date.now() < until) {
      try {
        await qmp(helperQmp, 'query-status', undefined, 2000);
        up = true;
        break;
      } catch {
        await sleep(100);
      }
    }
    if (up) break;
    await stop();
    stopping = null;
    if (attempt >= 1 || !/hostfwd|Could not set up host forwarding/i.test(stderr)) {
      throw new Error(`QEMU did not start: ${stderr.trim() || 'no answer on its monitor within 30 s'}`);
    }
  }

  const c = child!;
  const consoleTail = () => {
    try {
      return fs.readFileSync(consoleLog, 'utf8').slice(-3000);
    } catch {
      return '';
    }
  };
  const deadline = Date.now() + timeoutMs;
  const failIfGone = (what: string) => {
    if (exited) throw new Error(`QEMU exited while waiting for ${what}: ${stderr.trim()}\nconsole:\n${consoleTail()}`);
    if (Date.now() > deadline) throw new Error(`guest not ready within ${timeoutMs} ms (waiting for ${what})\nconsole:\n${consoleTail()}`);
  };

  // The guest's /init prints this once the agent is started and PostgreSQL (when asked) is up.
  for (;;) {
    failIfGone('the guest to boot');
    const text = consoleTail();
    if (text.includes('vmvault-guest: ready')) break;
    if (text.includes('Kernel panic')) throw new Error(`the guest's kernel panicked:\n${text}`);
    await sleep(250);
  }
  if (opts.pg && consoleTail().includes('vmvault-guest: postgres failed')) {
    throw new Error(`PostgreSQL did not start in the guest:\n${consoleTail()}`);
  }
  if (qgaPath) {
    for (;;) {
      failIfGone('guest-ping');
      try {
        await qga(qgaPath, 'guest-ping', undefined, 3000);
        break;
      } catch {
        await sleep(250);
      }
    }
  }
  const pgUrl = pgPort ? `postgres://${image.info.pgUser}@127.0.0.1:${pgPort}/${image.info.pgDatabase}` : null;
  if (pgPort) {
    for (;;) {
      failIfGone('PostgreSQL to accept connections');
      const r = await runTool(`${PGBIN}/pg_isready`, ['-h', '127.0.0.1', '-p', String(pgPort), '-U', image.info.pgUser, '-t', '5']);
      if (r.code === 0) break;
      await sleep(500);
    }
  }

  const needAgent = (): string => {
    if (!qgaPath) throw new Error('this guest was booted without a guest agent');
    return qgaPath;
  };
  const agent = <T>(command: string, args?: object, ms?: number) => qga<T>(needAgent(), command, args, ms ?? 30_000);
  const spawnIn = async (argv: string[], input?: Buffer): Promise<number> => {
    const r = await agent<{ pid: number }>('guest-exec', {
      path: argv[0],
      arg: argv.slice(1),
      'capture-output': true,
      ...(input !== undefined ? { 'input-data': input.toString('base64') } : {}),
    });
    return r.pid;
  };
  const guest: Guest = {
    qmp: `unix:${qmpPath}`,
    qga: qgaPath ? `unix:${qgaPath}` : null,
    qmpPath,
    qgaPath,
    helperQmp,
    pgUrl,
    pgPort,
    diskPath,
    disks,
    pid: c.pid!,
    consoleLog,
    image,
    running: () => !exited,
    agent,
    async exec(argv, o = {}) {
      const pid = await spawnIn(argv, o.inputData ?? (o.input !== undefined ? Buffer.from(o.input) : undefined));
      const until = Date.now() + (o.timeoutMs ?? 60_000);
      for (;;) {
        const [st] = (await qgaRun(needAgent(), [{ execute: 'guest-exec-status', arguments: { pid } }], 30_000)) as Array<{
          exited: boolean;
          exitcode?: number;
          signal?: number;
          'out-data'?: string;
          'err-data'?: string;
        }>;
        if (st.exited) {
          return {
            exitcode: st.exitcode ?? null,
            signal: st.signal ?? null,
            stdout: Buffer.from(st['out-data'] ?? '', 'base64').toString('utf8'),
            stderr: Buffer.from(st['err-data'] ?? '', 'base64').toString('utf8'),
          };
        }
        if (Date.now() > until) throw new Error(`guest command ${argv.join(' ')} still running after ${o.timeoutMs ?? 60_000} ms`);
        await sleep(200);
      }
    },
    async spawn(argv) {
      const r = await agent<{ pid: number }>('guest-exec', { path: argv[0], arg: argv.slice(1) });
      return r.pid;
    },
    async psql(sql, ms = 60_000) {
      if (!pgPort) throw new Error('this guest was booted without PostgreSQL (pg: true)');
      const r = await runTool(`${PGBIN}/psql`, ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(pgPort), '-U', image.info.pgUser, '-d', image.info.pgDatabase, '-c', sql], { timeoutMs: ms });
      if (r.code !== 0) throw new Error(`psql ${sql}: exit ${r.code}: ${r.stderr}`);
      return r.stdout.trim();
    },
    stop,
  };
  return guest;
}

/** pgbench run from the host against the guest's PostgreSQL for `seconds`; its transactions per second. */
export async function runPgbench(g: Guest, seconds: number, clients = 2): Promise<{ tps: number; transactions: number; output: string }> {
  if (!g.pgPort) throw new Error('this guest was booted without PostgreSQL (pg: true)');
  const r = await runTool(
    `${PGBIN}/pgbench`,
    ['-h', '127.0.0.1', '-p', String(g.pgPort), '-U', g.image.info.pgUser, '-c', String(clients), '-T', String(seconds), '-n', g.image.info.pgDatabase],
    { timeoutMs: seconds * 1000 + 120_000 },
  );
  if (r.code !== 0) throw new Error(`pgbench: exit ${r.code}: ${r.stderr}\n${r.stdout}`);
  const tps = Number(/tps = ([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(r.stdout)?.[1] ?? NaN);
  return { tps, transactions, output: r.stdout };
}

/**
 * Starts a writer in the guest: a shell loop rewriting files under /mnt/writer with fsync, so
 * the file system's journal is always busy. Returns its pid; stop it with stopWriter.
 */
export async function startWriter(g: Guest): Promise<number> {
  return g.spawn([
    '/bin/sh',
    '-c',
    'mkdir -p /mnt/writer; i=0; while :; do dd if=/dev/urandom of=/mnt/writer/f$((i % 16)) bs=64k count=4 conv=fsync 2>/dev/null; i=$((i + 1)); done',
  ]);
}

export async function stopWriter(g: Guest, pid: number): Promise<void> {
  await g.exec(['/bin/kill', String(pid)]);
}

/**
 * Writes `data` at `offset` of a whole guest disk (`vdb`: not the mounted vda) from inside the
 * guest, through its block layer, and flushes it (conv=fsync: the guest's flush makes QEMU write
 * its qcow2 metadata too). For tests that need guest writes at known extents, e.g. what the next
 * incremental must read. Offset and length in multiples of 4 KiB; keep each call to a few MiB
 * (the data travels base64 in one guest-agent message).
 */
export async function writeDisk(g: Guest, device: string, offset: number, data: Buffer): Promise<void> {
  if (offset % 4096 !== 0 || data.length % 4096 !== 0 || data.length === 0) throw new Error(`writeDisk: offset ${offset} and length ${data.length} must be multiples of 4096`);
  if (!/^vd[a-z]$/.test(device)) throw new Error(`writeDisk: not a guest disk name: ${device}`);
  const r = await g.exec(['/bin/dd', `of=/dev/${device}`, 'bs=4096', `seek=${offset / 4096}`, 'conv=notrunc,fsync'], { inputData: data });
  if (r.exitcode !== 0) throw new Error(`dd to /dev/${device} in the guest: exit ${r.exitcode}: ${r.stderr}`);
}
