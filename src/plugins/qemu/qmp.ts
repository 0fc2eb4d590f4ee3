// A small QMP client (QEMU Machine Protocol: JSON lines over a UNIX or TCP socket). No library
// exists for Node, and the part we need is small: the greeting, qmp_capabilities, commands with
// ids (several may be in flight; QEMU answers them in order), and asynchronous events.
//
// What a caller may rely on:
// - execute() resolves with the command's `return` value or rejects with a VmvaultError whose
//   message carries QEMU's error class and description (details.qmpClass, details.qmpDesc).
// - Every command has a deadline (opts.timeoutMs, else the client's default); a late answer to a
//   timed-out command is dropped.
// - Events are buffered from the moment the connection is made (the last MAX_EVENTS), so
//   waitEvent() sees an event that arrived before it was called. waitEvent() consumes the event
//   it returns: two waits for the same name need two events.
// - QEMU serves one client per QMP monitor: a second client is accepted by the kernel but gets no
//   greeting until the first leaves. connect() says so when the greeting does not come.

import type net from 'node:net';
import { type ErrorCode, type VmvaultError, vmError } from '../../errors.js';
import { JsonLines } from './json-lines.js';
import { openSocket, parseSocketAddress } from './socket-address.js';
import type { QmpChannel } from './qmp-channel.js';

const DEFAULT_TIMEOUT_MS = 10_000;
/** Events kept for a later waitEvent(); older ones are dropped first. */
const MAX_EVENTS = 1000;
/** QMP answers we accept (query-named-block-nodes of a large VM is some hundreds of KiB). */
const MAX_LINE = 64 * 1024 * 1024;

export interface QmpEvent {
  event: string;
  data: any;
  timestamp?: { seconds: number; microseconds: number };
}

interface Pending {
  command: string;
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

interface Waiter {
  name: string;
  match: ((data: any) => boolean) | undefined;
  resolve(data: any): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** QEMU's error classes that have a closer code of ours than IO. */
const CLASS_CODES: Record<string, ErrorCode> = {
  DeviceNotFound: 'NOT_FOUND',
  CommandNotFound: 'NOT_SUPPORTED',
};

export class QmpClient implements QmpChannel {
  private readonly pending = new Map<number, Pending>();
  private readonly events: QmpEvent[] = [];
  private readonly waiters = new Set<Waiter>();
  /** Woken by any event that is buffered (takeEvents' callers: the agent's relayed sessions). */
  private anyWaiters = new Set<() => void>();
  private nextId = 1;
  private closed: VmvaultError | null = null;
  /** QEMU's version from the greeting, e.g. { major: 7, minor: 2, micro: 22 }. */
  version: { major: number; minor: number; micro: number } | null = null;

  private constructor(
    private readonly sock: net.Socket,
    readonly address: string,
    private readonly defaultTimeoutMs: number,
  ) {}

  static async connect(address: string, opts: { timeoutMs?: number } = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const addr = parseSocketAddress(address, 'QMP');
    const sock = await openSocket(addr, 'QMP', timeoutMs);
    const client = new QmpClient(sock, address, timeoutMs);
    try {
      await client.handshake(timeoutMs);
    } catch (err) {
      await client.close();
      throw err;
    }
    return client;
  }

  private handshake(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let greeted = false;
      const timer = setTimeout(() => {
        reject(
          vmError(
            'IO',
            `QMP at ${this.address}: the socket accepted but sent no greeting within ${timeoutMs} ms. ` +
              'Check that it is a QMP socket (-qmp unix:PATH,server=on,wait=off or -chardev socket + -mon mode=control) ' +
              'and that no other client holds it (QEMU serves one client per QMP monitor).',
          ),
        );
      }, timeoutMs);
      const lines = new JsonLines(
        MAX_LINE,
        (msg) => {
          if (!greeted) {
            const g = msg as { QMP?: { version?: { qemu?: { major: number; minor: number; micro: number } } } };
            if (!g || typeof g !== 'object' || !g.QMP) {
              clearTimeout(timer);
              reject(vmError('IO', `QMP at ${this.address}: the first message is not a QMP greeting; is this the guest agent's socket?`));
              return;
            }
            greeted = true;
            this.version = g.QMP.version?.qemu ?? null;
            clearTimeout(timer);
            this.execute('qmp_capabilities', undefined, { timeoutMs }).then(() => resolve(), reject);
            return;
          }
          this.dispatch(msg);
        },
        (err) => this.fail(vmError('IO', `QMP at ${this.address}: bad message from QEMU: ${err.message}`)),
      );
      this.sock.on('data', (chunk) => lines.push(chunk));
      this.sock.on('error', (err: NodeJS.ErrnoException) =>
        this.fail(
          err.code === 'ECONNRESET' || err.code === 'EPIPE'
            ? vmError('CLOSED', `QMP at ${this.address}: QEMU closed the connection (${err.code}); has the VM stopped?`, undefined, err)
            : vmError('IO', `QMP at ${this.address}: ${err.message}`, undefined, err),
        ),
      );
      this.sock.on('close', () => {
        clearTimeout(timer);
        const e = vmError('CLOSED', `QMP at ${this.address}: QEMU closed the connection${greeted ? '' : ' before its greeting'}; has the VM stopped?`);
        if (!greeted) reject(e);
        this.fail(e);
      });
    });
  }

  private dispatch(msg: unknown): void {
    const m = msg as { id?: unknown; return?: unknown; error?: { class?: string; desc?: string }; event?: string; data?: unknown };
    if (typeof m?.event === 'string') {
      const ev: QmpEvent = { event: m.event, data: m.data ?? {}, timestamp: (m as QmpEvent).timestamp };
      for (const w of this.waiters) {
        if (w.name === ev.event && (!w.match || safeMatch(w.match, ev.data))) {
          this.waiters.delete(w);
          clearTimeout(w.timer);
          w.resolve(ev.data);
          return;
        }
      }
      this.events.push(ev);
      if (this.events.length > MAX_EVENTS) this.events.shift();
      const any = this.anyWaiters;
      this.anyWaiters = new Set();
      for (const w of any) w();
      return;
    }
    if (typeof m?.id !== 'number') return; // an answer we did not ask for (or to a timed-out command's old id type)
    const p = this.pending.get(m.id);
    if (!p) return; // the command timed out; its late answer is dropped
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.error) {
      const cls = String(m.error.class ?? 'GenericError');
      const desc = String(m.error.desc ?? '(no description)');
      p.reject(vmError(CLASS_CODES[cls] ?? 'IO', `QMP ${p.command} failed: ${cls}: ${desc}`, { qmpClass: cls, qmpDesc: desc, command: p.command }));
    } else {
      p.resolve(m.return);
    }
  }

  private fail(err: VmvaultError): void {
    if (this.closed) return;
    this.closed = err;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(vmError(err.code, `${err.message} (while running ${p.command})`, undefined, err));
    }
    this.pending.clear();
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(vmError(err.code, `${err.message} (while waiting for event ${w.name})`, undefined, err));
    }
    this.waiters.clear();
    for (const w of this.anyWaiters) w();
    this.anyWaiters.clear();
    this.sock.destroy();
  }

  /** Runs one QMP command. Several may be in flight; QEMU answers them in order. */
  execute<T = unknown>(command: string, args?: object, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closed) return Promise.reject(vmError(this.closed.code, `QMP ${command}: ${this.closed.message}`));
    const id = this.nextId++;
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          vmError(
            'IO',
            `QMP ${command} at ${this.address}: no answer within ${timeoutMs} ms; QEMU may be hung or busy ` +
              '(check the process, its load, and that nothing else is using this monitor)',
            { command, timeoutMs },
          ),
        );
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      const msg: Record<string, unknown> = { execute: command, id };
      if (args !== undefined) msg.arguments = args;
      this.sock.write(JSON.stringify(msg) + '\n');
    });
  }

  /**
   * Resolves with the data of the first event named `name` (for which `match` holds), looking
   * first at the events buffered since the connection was made, then waiting up to timeoutMs.
   */
  waitEvent(name: string, match?: (data: any) => boolean, timeoutMs: number = this.defaultTimeoutMs): Promise<any> {
    const i = this.events.findIndex((e) => e.event === name && (!match || safeMatch(match, e.data)));
    if (i >= 0) {
      const [ev] = this.events.splice(i, 1);
      return Promise.resolve(ev.data);
    }
    if (this.closed) return Promise.reject(vmError(this.closed.code, `waiting for QMP event ${name}: ${this.closed.message}`));
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        name,
        match,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(w);
          reject(vmError('IO', `QMP at ${this.address}: no ${name} event within ${timeoutMs} ms`, { event: name, timeoutMs }));
        }, timeoutMs),
      };
      this.waiters.add(w);
    });
  }

  /**
   * Hands over every buffered event (oldest first) and forgets them; when none is buffered,
   * waits up to `waitMs` for one (or `signal`). For a relay (the agent's QMP sessions, issue 13)
   * that passes all events on to be matched elsewhere; not to be mixed with waitEvent().
   */
  async takeEvents(waitMs = 0, signal?: AbortSignal): Promise<QmpEvent[]> {
    if (this.events.length === 0 && waitMs > 0 && !this.closed && !signal?.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          this.anyWaiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, waitMs);
        signal?.addEventListener('abort', done, { once: true });
        this.anyWaiters.add(done);
      });
    }
    return this.events.splice(0, this.events.length);
  }

  /** Whether the connection is gone (QEMU closed it, or close() was called). */
  get isClosed(): boolean {
    return this.closed !== null;
  }

  /** Drops the buffered events (e.g. before starting something whose events are awaited). */
  clearEvents(name?: string): void {
    if (name === undefined) this.events.length = 0;
    else for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i].event === name) this.events.splice(i, 1);
  }

  async close(): Promise<void> {
    if (this.sock.destroyed) {
      this.fail(vmError('CLOSED', `QMP at ${this.address}: the client was closed`));
      return;
    }
    await new Promise<void>((resolve) => {
      this.sock.once('close', () => resolve());
      this.fail(vmError('CLOSED', `QMP at ${this.address}: the client was closed`));
    });
  }
}

function safeMatch(match: (data: any) => boolean, data: unknown): boolean {
  try {
    return match(data);
  } catch {
    return false;
  }
}

