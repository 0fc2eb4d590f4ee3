// The agent's guest-agent host requests (issue 13): an app-consistent backup of a VM on this host
// freezes the guest's file systems through its QEMU guest agent, whose socket only this host can
// open, so the appliance drives it through here (src/backup/host-qga.ts), as it drives QMP.
// Protocol: README.md, "Host requests".
//
// Which sockets: the configured folders' `*.qga` sockets (the Proxmox VE layout
// /var/run/qemu-server/<vmid>.qga, beside <vmid>.qmp) and the `--qga` sockets. Which commands:
// only those a backup needs (ping, sync, info, fsfreeze): an agent is no general relay into its
// guests (guest-exec, file access are refused).

import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { vmError } from '../errors.js';
import { GuestAgent } from '../plugins/qemu/qga.js';
import type { HostRequestTable } from './host-requests.js';

const COMMANDS = new Set(['guest-ping', 'guest-info', 'guest-fsfreeze-freeze', 'guest-fsfreeze-thaw', 'guest-fsfreeze-status']);
const MAX_SESSIONS = 256;

interface Session {
  id: string;
  address: string;
  ga: GuestAgent;
  lastUsed: number;
}

export class QgaRequests {
  private readonly sessions = new Map<string, Session>();
  private readonly dirs: string[];
  private readonly sockets: string[];
  private readonly idleTimer: NodeJS.Timeout;
  private readonly log?: (line: string) => void;

  constructor(o: { qmpDirs: string[]; qgaSockets: string[]; idleMs?: number; log?: (line: string) => void }) {
    this.dirs = o.qmpDirs.map((d) => path.resolve(d));
    this.sockets = o.qgaSockets.map((s) => unixAddress(s));
    this.log = o.log;
    const idle = o.idleMs ?? 10 * 60_000;
    this.idleTimer = setInterval(() => {
      const t = Date.now();
      for (const s of [...this.sessions.values()]) if (t - s.lastUsed > idle) void this.closeSession(s, 'idle');
    }, Math.min(60_000, idle));
    this.idleTimer.unref();
  }

  register(table: HostRequestTable): void {
    table.register('qga-open', (args, ctx) => this.open(args, ctx.timeoutMs));
    table.register('qga-execute', (args) => this.execute(args));
    table.register('qga-close', (args) => this.close(args));
  }

  async stop(): Promise<void> {
    clearInterval(this.idleTimer);
    await Promise.allSettled([...this.sessions.values()].map((s) => this.closeSession(s, 'agent stopping')));
  }

  private allowed(address: string): boolean {
    if (this.sockets.includes(address)) return true;
    const p = address.slice('unix:'.length);
    return path.normalize(p) === p && this.dirs.some((d) => path.dirname(p) === d && p.endsWith('.qga'));
  }

  private async open(args: unknown, timeoutMs: number): Promise<{ session: string }> {
    const address = unixAddress((args as { address?: unknown })?.address);
    if (!this.allowed(address)) {
      throw vmError('FORBIDDEN', `${address} is not a guest-agent socket this agent serves (its --qmp-dir folders' *.qga sockets and its --qga sockets)`, { address });
    }
    if (this.sessions.size >= MAX_SESSIONS) throw vmError('CONFLICT', `this agent holds ${MAX_SESSIONS} guest-agent sessions already`);
    const ga = await GuestAgent.connect(address, { timeoutMs: Math.max(100, Math.min(timeoutMs - 200, 30_000)) });
    const s: Session = { id: randomUUID(), address, ga, lastUsed: Date.now() };
    this.sessions.set(s.id, s);
    this.log?.(`guest-agent session ${s.id} opened on ${address}`);
    return { session: s.id };
  }

  private async execute(args: unknown): Promise<unknown> {
    const a = (args ?? {}) as { session?: unknown; command?: unknown; timeoutMs?: unknown };
    if (typeof a.command !== 'string' || !COMMANDS.has(a.command)) {
      throw vmError('FORBIDDEN', `qga-execute: ${String(a.command).slice(0, 80)} is not relayed (only ${[...COMMANDS].join(', ')})`);
    }
    const s = typeof a.session === 'string' ? this.sessions.get(a.session) : undefined;
    if (!s) throw vmError('NOT_FOUND', `no guest-agent session ${JSON.stringify(String(a.session).slice(0, 80))} on this agent (closed, idle too long, or the agent restarted)`);
    s.lastUsed = Date.now();
    const timeoutMs = Number.isInteger(a.timeoutMs) && (a.timeoutMs as number) > 0 ? Math.min(a.timeoutMs as number, 10 * 60_000) : 10_000;
    const r = await s.ga.execute(a.command, undefined, { timeoutMs });
    s.lastUsed = Date.now();
    // A freeze stops the guest's writes: worth a line in the host's own log.
    if (a.command.startsWith('guest-fsfreeze-') && a.command !== 'guest-fsfreeze-status') this.log?.(`guest-agent session ${s.id}: ${a.command}: ${JSON.stringify(r)}`);
    return r === undefined ? null : r;
  }

  private async close(args: unknown): Promise<null> {
    const id = (args as { session?: unknown })?.session;
    const s = typeof id === 'string' ? this.sessions.get(id) : undefined;
    if (s) await this.closeSession(s, 'closed by the appliance');
    return null;
  }

  private async closeSession(s: Session, why: string): Promise<void> {
    this.sessions.delete(s.id);
    this.log?.(`guest-agent session ${s.id} on ${s.address}: ${why}`);
    await s.ga.close().catch(() => {});
  }
}

function unixAddress(a: unknown): string {
  if (typeof a !== 'string' || a === '' || a.length > 4096) throw vmError('INVALID_ARGUMENT', 'a guest-agent socket address is unix:/path');
  const p = a.startsWith('unix:') ? a.slice(5) : a;
  if (!path.isAbsolute(p)) throw vmError('INVALID_ARGUMENT', `guest-agent socket ${JSON.stringify(a.slice(0, 200))} is not unix:/absolute/path`);
  return `unix:${p}`;
}
