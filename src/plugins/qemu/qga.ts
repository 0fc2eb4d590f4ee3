// A small client for the QEMU guest agent (qemu-ga in the guest, reached through the VM's
// virtio-serial channel org.qemu.guest_agent.0, whose host end is a UNIX or TCP socket).
//
// The agent has no command ids and may have stale output queued from an earlier client, so
// every conversation starts with guest-sync-delimited: we send 0xFF (resets the agent's parser),
// then the sync with a random id; the agent answers 0xFF before the reply, and everything before
// it is dropped. After a timeout or garbled reply the next command syncs again. Commands run one
// at a time (the agent answers in order and carries no id).
//
// A socket with no agent behind it (the channel exists but nothing runs in the guest) accepts the
// connection and never answers; connect() then fails with what to install and configure.

import type net from 'node:net';
import { vmError, type VmvaultError } from '../../errors.js';
import { JsonLines } from './json-lines.js';
import { openSocket, parseSocketAddress } from './socket-address.js';

const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_LINE = 16 * 1024 * 1024;

const NO_AGENT_HINT =
  'install and start qemu-guest-agent in the guest, and give the VM the channel it talks on: ' +
  '-device virtio-serial-pci -chardev socket,path=PATH,server=on,wait=off,id=qga0 ' +
  '-device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0 (libvirt: <channel type="unix"> with target name org.qemu.guest_agent.0)';

export class GuestAgent {
  private lines: JsonLines;
  /** Bytes are dropped until the agent's 0xFF sync delimiter. */
  private awaitingDelimiter = false;
  private needSync = true;
  private waiting: { resolve(m: unknown): void; reject(e: Error): void } | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private closed: VmvaultError | null = null;

  private constructor(
    private readonly sock: net.Socket,
    readonly address: string,
    private readonly defaultTimeoutMs: number,
  ) {
    this.lines = new JsonLines(
      MAX_LINE,
      (msg) => {
        const w = this.waiting;
        if (w) {
          this.waiting = null;
          w.resolve(msg);
        }
        // A message nobody waits for is stale output (e.g. a late answer after a timeout): dropped.
      },
      (err) => {
        this.needSync = true;
        const w = this.waiting;
        this.waiting = null;
        w?.reject(vmError('IO', `guest agent at ${this.address}: bad message: ${err.message}`));
      },
    );
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', (err: NodeJS.ErrnoException) =>
      this.fail(
        err.code === 'ECONNRESET' || err.code === 'EPIPE'
          ? vmError('CLOSED', `guest agent at ${this.address}: the connection was closed (${err.code}); has the VM stopped?`, undefined, err)
          : vmError('IO', `guest agent at ${this.address}: ${err.message}`, undefined, err),
      ),
    );
    sock.on('close', () => this.fail(vmError('CLOSED', `guest agent at ${this.address}: the connection was closed`)));
  }

  /** Connects and synchronizes (guest-sync-delimited); fails when no agent answers. */
  static async connect(address: string, opts: { timeoutMs?: number } = {}): Promise<GuestAgent> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let sock: net.Socket;
    try {
      sock = await openSocket(parseSocketAddress(address, 'guest agent'), 'guest agent', timeoutMs);
    } catch (err) {
      // No socket at all: the VM has no guest-agent channel (or is not running).
      const e = err as VmvaultError;
      if (e.code !== 'IO') throw err;
      throw vmError(e.code, `${e.message}. If the VM runs: ${NO_AGENT_HINT}`, e.details, err);
    }
    const ga = new GuestAgent(sock, address, timeoutMs);
    try {
      await ga.enqueue(() => ga.sync(timeoutMs));
    } catch (err) {
      await ga.close();
      throw err;
    }
    return ga;
  }

  private onData(chunk: Buffer): void {
    if (this.awaitingDelimiter) {
      const i = chunk.indexOf(0xff);
      if (i < 0) return;
      this.awaitingDelimiter = false;
      this.lines.reset();
      chunk = chunk.subarray(i + 1);
    }
    // Stray 0xFF bytes outside a sync are not JSON; drop them.
    if (chunk.includes(0xff)) chunk = Buffer.from(chunk.filter((b) => b !== 0xff));
    this.lines.push(chunk);
  }

  private fail(err: VmvaultError): void {
    if (this.closed) return;
    this.closed = err;
    const w = this.waiting;
    this.waiting = null;
    w?.reject(err);
    this.sock.destroy();
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Sends one line and waits for the next message, up to timeoutMs. */
  private roundTrip(msg: object, timeoutMs: number, what: string, prefix?: Buffer): Promise<any> {
    if (this.closed) return Promise.reject(vmError(this.closed.code, `${what}: ${this.closed.message}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        this.needSync = true;
        reject(vmError('IO', `guest agent at ${this.address}: no answer to ${what} within ${timeoutMs} ms; ${NO_AGENT_HINT}`, { timeoutMs }));
      }, timeoutMs);
      this.waiting = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const line = Buffer.from(JSON.stringify(msg) + '\n');
      this.sock.write(prefix ? Buffer.concat([prefix, line]) : line);
    });
  }

  private async sync(timeoutMs: number): Promise<void> {
    const id = Math.floor(Math.random() * 0x7fffffff);
    this.awaitingDelimiter = true;
    this.lines.reset();
    const deadline = Date.now() + timeoutMs;
    // 0xFF first: the agent drops any half-written command it holds and resets its parser.
    let reply = await this.roundTrip({ execute: 'guest-sync-delimited', arguments: { id } }, timeoutMs, 'guest-sync-delimited', Buffer.from([0xff]));
    // Stale answers to an earlier client may still come after the delimiter; skip to ours.
    while (reply?.return !== id) {
      if (reply?.error) throw this.agentError('guest-sync-delimited', reply.error);
      const left = deadline - Date.now();
      if (left <= 0) throw vmError('IO', `guest agent at ${this.address}: no matching guest-sync-delimited reply; ${NO_AGENT_HINT}`);
      reply = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.waiting = null;
          reject(vmError('IO', `guest agent at ${this.address}: no matching guest-sync-delimited reply within ${timeoutMs} ms; ${NO_AGENT_HINT}`));
        }, left);
        this.waiting = {
          resolve: (m) => (clearTimeout(timer), resolve(m)),
          reject: (e) => (clearTimeout(timer), reject(e)),
        };
      });
    }
    this.needSync = false;
  }

  private agentError(command: string, e: { class?: string; desc?: string }): VmvaultError {
    const cls = String(e.class ?? 'GenericError');
    const desc = String(e.desc ?? '(no description)');
    const code = cls === 'CommandNotFound' || cls === 'CommandDisabled' ? 'NOT_SUPPORTED' : 'IO';
    return vmError(code, `guest agent ${command} failed: ${cls}: ${desc}`, { qgaClass: cls, qgaDesc: desc, command });
  }

  /** Runs one agent command (synchronizing first when needed) and returns its `return` value. */
  execute<T = unknown>(command: string, args?: object, opts: { timeoutMs?: number } = {}): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    return this.enqueue(async () => {
      if (this.needSync) await this.sync(timeoutMs);
      const msg: Record<string, unknown> = { execute: command };
      if (args !== undefined) msg.arguments = args;
      const reply = await this.roundTrip(msg, timeoutMs, command);
      if (reply?.error) throw this.agentError(command, reply.error);
      if (!reply || !('return' in reply)) {
        this.needSync = true;
        throw vmError('IO', `guest agent ${command}: unexpected answer ${JSON.stringify(reply).slice(0, 200)}`);
      }
      return reply.return as T;
    });
  }

  async ping(opts?: { timeoutMs?: number }): Promise<void> {
    await this.execute('guest-ping', undefined, opts);
  }

  /** Freezes the guest's file systems; resolves with how many were frozen. */
  async freeze(opts?: { timeoutMs?: number }): Promise<number> {
    return Number(await this.execute('guest-fsfreeze-freeze', undefined, opts));
  }

  /** Thaws the guest's file systems; resolves with how many were thawed. */
  async thaw(opts?: { timeoutMs?: number }): Promise<number> {
    return Number(await this.execute('guest-fsfreeze-thaw', undefined, opts));
  }

  async status(opts?: { timeoutMs?: number }): Promise<'thawed' | 'frozen'> {
    const s = await this.execute<string>('guest-fsfreeze-status', undefined, opts);
    if (s !== 'thawed' && s !== 'frozen') throw vmError('IO', `guest agent guest-fsfreeze-status: unexpected answer ${JSON.stringify(s)}`);
    return s;
  }

  async close(): Promise<void> {
    if (this.sock.destroyed) return;
    const closed = new Promise<void>((resolve) => this.sock.once('close', () => resolve()));
    this.fail(vmError('CLOSED', `guest agent at ${this.address}: the client was closed`));
    await closed;
  }
}
