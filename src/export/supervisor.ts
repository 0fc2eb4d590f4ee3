// Keeps one server process (ganesha.nfsd, smbd) running: starts it, notices when it dies,
// logs that and starts it again after a backoff (1 s, doubling to 30 s; reset once it has run
// for a minute), and stops it on request (SIGTERM, SIGKILL after a grace period).
//
// The process's stdout and stderr go to its own log file (append), never to the appliance's
// log: a server's chatter would drown the appliance's lines. Only the supervisor's own lines
// ("started, pid N", "exited with status S, restarting in 4 s") go to the appliance's log.
//
// A launch may be a wrapper (ganesha runs inside `unshare` with its own rpcbind): then
// `serverPid()` finds the real server's pid, which is what /health reports and what an operator
// would signal.

import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LaunchSpec {
  command: string;
  args: string[];
  /** Appended to; rotated (one .old kept) when over 8 MiB at a start. */
  logFile: string;
  /** The real server's pid when `command` is a wrapper; undefined until it is known. */
  serverPid?: () => Promise<number | undefined>;
  /** Signal that asks the server to stop cleanly (sent to serverPid when known). Default SIGTERM. */
  stopSignal?: NodeJS.Signals;
  /** Sent to the launched wrapper to stop it when the real server's pid is not known. */
  wrapperStopSignal?: NodeJS.Signals;
}

export interface SupervisorOptions {
  /** A person's name for it in log lines: "nfs-ganesha", "smbd". */
  name: string;
  /** Builds the launch (and writes its config) before every start. */
  launch: () => Promise<LaunchSpec>;
  /** The TCP port the server serves on: "listening" in health is a connect to it. */
  port: number;
  log: (line: string) => void;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  stopGraceMs?: number;
}

export interface ServerState {
  /** Whether the appliance wants it running (it has something to serve). */
  wanted: boolean;
  running: boolean;
  pid?: number;
  /** Times it died and was started again since the appliance started. */
  restarts: number;
  lastError?: string;
  /** ISO time of the last (re)start. */
  startedAt?: string;
}

const LOG_ROTATE_BYTES = 8 * 1024 * 1024;
const STABLE_MS = 60_000;

export class Supervisor {
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private wanted = false;
  private restarts = 0;
  private lastError: string | undefined;
  private startedAt: number | undefined;
  private backoffMs: number;
  private timer: NodeJS.Timeout | undefined;
  private realPid: number | undefined;
  private spec: LaunchSpec | undefined;
  /** Serializes start/stop/restart so two reconfigurations never race. */
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly opts: SupervisorOptions) {
    this.backoffMs = opts.initialBackoffMs ?? 1000;
  }

  get name(): string {
    return this.opts.name;
  }

  /** Start it if it is not running. */
  ensureRunning(): Promise<void> {
    return this.serial(async () => {
      this.wanted = true;
      if (this.child === undefined) await this.spawnNow();
    });
  }

  /** Stop it (if running) and start it again with a freshly generated config. */
  restart(): Promise<void> {
    return this.serial(async () => {
      this.wanted = true;
      await this.stopNow();
      this.wanted = true;
      await this.spawnNow();
    });
  }

  /** Send a signal to the running server (SIGHUP: reload the config); false if none runs. */
  async signal(sig: NodeJS.Signals): Promise<boolean> {
    const pid = await this.pid();
    if (pid === undefined) return false;
    try {
      process.kill(pid, sig);
      return true;
    } catch {
      return false;
    }
  }

  stop(): Promise<void> {
    return this.serial(() => this.stopNow());
  }

  async pid(): Promise<number | undefined> {
    if (this.child === undefined) return undefined;
    if (this.spec?.serverPid === undefined) return this.child.pid;
    this.realPid ??= await this.spec.serverPid();
    return this.realPid;
  }

  async state(): Promise<ServerState> {
    const s: ServerState = { wanted: this.wanted, running: this.child !== undefined, restarts: this.restarts };
    const pid = await this.pid();
    if (pid !== undefined) s.pid = pid;
    if (this.lastError !== undefined) s.lastError = this.lastError;
    if (this.startedAt !== undefined && this.child !== undefined) s.startedAt = new Date(this.startedAt).toISOString();
    return s;
  }

  /** Whether something accepts TCP connections on the server's port (on loopback). */
  listening(timeoutMs = 1000): Promise<boolean> {
    return new Promise((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port: this.opts.port });
      const done = (ok: boolean) => {
        sock.destroy();
        resolve(ok);
      };
      sock.setTimeout(timeoutMs, () => done(false));
      sock.once('connect', () => done(true));
      sock.once('error', () => done(false));
    });
  }

  /** Waits until the server is running and its port answers, or the time is up. */
  async waitListening(timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (this.child !== undefined && (await this.listening(500))) return true;
      await sleep(200);
    }
    return false;
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const next = this.chain.then(fn);
    this.chain = next.catch(() => {});
    return next;
  }

  private async spawnNow(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    let spec: LaunchSpec;
    try {
      spec = await this.opts.launch();
    } catch (err) {
      this.lastError = `cannot start: ${(err as Error).message}`;
      this.opts.log(`${this.opts.name}: ${this.lastError}`);
      this.scheduleRestart();
      return;
    }
    await rotate(spec.logFile);
    const fh = await fs.open(spec.logFile, 'a', 0o600);
    let child: ChildProcess;
    try {
      await fh.write(`${new Date().toISOString()} vmvault: starting ${spec.command} ${spec.args.join(' ')}\n`);
      child = spawn(spec.command, spec.args, { stdio: ['ignore', fh.fd, fh.fd], detached: false });
    } finally {
      await fh.close();
    }
    this.spec = spec;
    this.realPid = undefined;
    this.child = child;
    this.startedAt = Date.now();
    this.exited = new Promise<void>((resolve) => {
      child.once('error', (err) => {
        this.lastError = `cannot run ${spec.command}: ${err.message}`;
      });
      child.once('close', (code, signal) => {
        if (this.child === child) this.child = undefined;
        this.realPid = undefined;
        const how = signal !== null ? `was killed by ${signal}` : `exited with status ${code}`;
        if (this.wanted) {
          this.lastError = `${this.opts.name} ${how} at ${new Date().toISOString()} (see ${spec.logFile})`;
          const ranMs = Date.now() - (this.startedAt ?? Date.now());
          if (ranMs > STABLE_MS) this.backoffMs = this.opts.initialBackoffMs ?? 1000;
          this.restarts++;
          this.opts.log(`${this.opts.name} ${how}; restarting in ${(this.backoffMs / 1000).toFixed(0)} s (restart ${this.restarts}; its log: ${spec.logFile})`);
          this.scheduleRestart();
        }
        resolve();
      });
    });
    const pid = await this.pid().catch(() => undefined);
    this.opts.log(`${this.opts.name} started (pid ${pid ?? child.pid}, log ${spec.logFile})`);
  }

  private scheduleRestart(): void {
    if (!this.wanted || this.timer !== undefined) return;
    const wait = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs ?? 30_000);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.serial(async () => {
        if (this.wanted && this.child === undefined) await this.spawnNow();
      });
    }, wait);
    this.timer.unref();
  }

  private async stopNow(): Promise<void> {
    this.wanted = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    const child = this.child;
    if (child === undefined) return;
    const spec = this.spec!;
    const pid = await this.pid().catch(() => undefined);
    try {
      if (pid !== undefined && pid !== child.pid) process.kill(pid, spec.stopSignal ?? 'SIGTERM');
      else child.kill(spec.serverPid !== undefined ? (spec.wrapperStopSignal ?? 'SIGTERM') : (spec.stopSignal ?? 'SIGTERM'));
    } catch {
      // already gone
    }
    const grace = this.opts.stopGraceMs ?? 10_000;
    const timer = setTimeout(() => {
      this.opts.log(`${this.opts.name} did not stop within ${grace / 1000} s: killing it`);
      if (pid !== undefined) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      child.kill('SIGKILL');
    }, grace);
    await this.exited;
    clearTimeout(timer);
    this.opts.log(`${this.opts.name} stopped`);
  }
}

async function rotate(file: string): Promise<void> {
  const st = await fs.stat(file).catch(() => undefined);
  if (st !== undefined && st.size > LOG_ROTATE_BYTES) await fs.rename(file, `${file}.old`).catch(() => {});
}
