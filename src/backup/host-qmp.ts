// A QMP channel relayed through a host's agent (issue 13): the VM's QMP socket is a UNIX socket
// only its host can open (Proxmox VE: /var/run/qemu-server/<vmid>.qmp), so the agent there holds
// the session (qmp-open) and runs each command (qmp-execute); QEMU's events stay buffered at the
// agent until this side fetches them (qmp-events) and matches them here, so waitEvent() and
// clearEvents() keep QmpClient's meaning: an event that came before the wait is still seen, and
// a clear drops what arrived before it (the agent's buffer too).
//
// Everything the agent answers is checked (it is untrusted): a session id, a version, events as
// { event: string, data: object }. Its failures are host request errors (src/backup/host-requests.ts):
// a lost agent or a silent one fails the command with that reason.

import { vmError } from '../errors.js';
import type { QmpChannel } from '../plugins/qemu/qmp-channel.js';
import type { AgentPool } from './agent-pool.js';

const DEFAULT_TIMEOUT_MS = 10_000;
/** How long one qmp-events request waits at the agent for an event (a longer wait asks again). */
const EVENT_POLL_MS = 5000;
/** The request's own margin over the command's timeout (the round trip through the poll). */
const MARGIN_MS = 5000;
const MAX_EVENTS = 1000;

interface Ev {
  event: string;
  data: any;
}

export class HostQmpChannel implements QmpChannel {
  private readonly events: Ev[] = [];
  private closed = false;
  /** A clear in flight: waits and commands come after it. */
  private clearing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly pool: AgentPool,
    readonly host: string,
    private readonly agent: string,
    private readonly socket: string,
    private readonly session: string,
    readonly version: { major: number; minor: number; micro: number } | null,
    private readonly timeoutMs: number,
  ) {}

  get address(): string {
    return `agent:${this.host} ${this.socket}`;
  }

  /** Opens a session on `socket` (unix:/path on the host) through `agent`. */
  static async open(pool: AgentPool, o: { host: string; agent: string; socket: string; timeoutMs?: number }): Promise<HostQmpChannel> {
    const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const r = await pool.request(o.agent, 'qmp-open', { address: o.socket }, timeoutMs + MARGIN_MS, (x) => {
      const v = x as { session?: unknown; version?: unknown };
      if (v === null || typeof v !== 'object' || typeof v.session !== 'string' || !/^[A-Za-z0-9-]{1,64}$/.test(v.session)) throw new Error('no session id');
      return { session: v.session, version: checkVersion(v.version) };
    });
    return new HostQmpChannel(pool, o.host, o.agent, o.socket, r.session, r.version, timeoutMs);
  }

  async execute<T = unknown>(command: string, args?: object, opts: { timeoutMs?: number } = {}): Promise<T> {
    await this.clearing;
    if (this.closed) throw vmError('CLOSED', `QMP ${command} at ${this.address}: the channel was closed`);
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    return this.pool.request<T>(
      this.agent,
      'qmp-execute',
      { session: this.session, command, ...(args !== undefined ? { arguments: args } : {}), timeoutMs },
      timeoutMs + MARGIN_MS,
      // QMP's answers are command-specific; the callers check the fields they read.
      (r) => r as T,
    );
  }

  async waitEvent(name: string, match?: (data: any) => boolean, timeoutMs: number = this.timeoutMs): Promise<any> {
    await this.clearing;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.events.findIndex((e) => e.event === name && (!match || safeMatch(match, e.data)));
      if (i >= 0) return this.events.splice(i, 1)[0].data;
      if (this.closed) throw vmError('CLOSED', `waiting for QMP event ${name} at ${this.address}: the channel was closed`);
      const left = deadline - Date.now();
      if (left <= 0) throw vmError('IO', `QMP at ${this.address}: no ${name} event within ${timeoutMs} ms`, { event: name, timeoutMs });
      const closed = await this.fetch(Math.min(left, EVENT_POLL_MS));
      if (closed && !this.events.some((e) => e.event === name)) {
        throw vmError('CLOSED', `QMP at ${this.address}: QEMU closed the connection while waiting for ${name}; has the VM stopped?`);
      }
    }
  }

  clearEvents(name?: string): void {
    // The agent's buffer is drained first (the wait and commands after this one wait for it).
    const before = this.clearing;
    this.clearing = before
      .then(() => this.fetch(0))
      .then(
        () => this.dropLocal(name),
        () => this.dropLocal(name),
      );
  }

  private dropLocal(name?: string): void {
    if (name === undefined) this.events.length = 0;
    else for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i].event === name) this.events.splice(i, 1);
  }

  /** Moves the agent's buffered events here, waiting up to waitMs for one; true when QEMU closed the session. */
  private async fetch(waitMs: number): Promise<boolean> {
    const r = await this.pool.request(this.agent, 'qmp-events', { session: this.session, waitMs }, waitMs + MARGIN_MS, (x) => {
      const v = x as { events?: unknown; closed?: unknown };
      if (v === null || typeof v !== 'object' || !Array.isArray(v.events) || v.events.length > 10_000) throw new Error('events is not a list');
      const events: Ev[] = [];
      for (const e of v.events as unknown[]) {
        const ev = e as { event?: unknown; data?: unknown };
        if (ev === null || typeof ev !== 'object' || typeof ev.event !== 'string' || ev.event.length > 128) throw new Error('an event without a name');
        events.push({ event: ev.event, data: ev.data !== null && typeof ev.data === 'object' ? ev.data : {} });
      }
      return { events, closed: v.closed === true };
    });
    this.events.push(...r.events);
    if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS);
    return r.closed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.request(this.agent, 'qmp-close', { session: this.session }, DEFAULT_TIMEOUT_MS).catch(() => {});
  }
}

function checkVersion(v: unknown): { major: number; minor: number; micro: number } | null {
  if (v === null || v === undefined) return null;
  const x = v as { major?: unknown; minor?: unknown; micro?: unknown };
  if (typeof v !== 'object' || ![x.major, x.minor, x.micro].every((n) => Number.isInteger(n) && (n as number) >= 0 && (n as number) < 10_000)) throw new Error('the QEMU version is not {major, minor, micro}');
  return { major: x.major as number, minor: x.minor as number, micro: x.micro as number };
}

function safeMatch(match: (data: any) => boolean, data: unknown): boolean {
  try {
    return match(data);
  } catch {
    return false;
  }
}
