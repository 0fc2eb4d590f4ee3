// The agent's QEMU host requests (issue 13): discovery of the QEMU VMs of this host, and QMP
// sessions the appliance drives from afar (src/backup/host-qmp.ts). Protocol: README.md.
//
// Which sockets: the configured folders' `*.qmp` sockets (the Proxmox VE layout
// /var/run/qemu-server/<vmid>.qmp; its <vmid>.qga sockets beside them are not QMP) and the
// configured sockets. A session may be opened only on one of those: the appliance is trusted,
// but an agent is no general socket relay into its host.
//
// QEMU serves one client per QMP monitor, so discovery uses a session already open on a socket
// (a backup holding it) instead of queueing behind it; a socket that does not answer within the
// per-socket timeout is reported with the reason, never left out.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { vmError } from '../errors.js';
import { QmpClient } from '../plugins/qemu/qmp.js';
import type { QmpChannel } from '../plugins/qemu/qmp-channel.js';
import type { HostRequestTable } from './host-requests.js';
import { type DiscoveredDisk, type DiscoveredVm, type Discovery, DISCOVERY_VERSION } from '../plugins/qemu/discovery-types.js';
export { type DiscoveredDisk, type DiscoveredVm, type Discovery, DISCOVERY_VERSION };

export interface QemuRequestOptions {
  /** Folders whose `*.qmp` sockets are this host's VMs. */
  qmpDirs: string[];
  /** Single QMP sockets (`unix:/path` or a path). */
  qmpSockets: string[];
  /** A session nobody used for this long is closed. Default 10 min. */
  idleMs?: number;
  log?: (line: string) => void;
}

const MAX_SESSIONS = 256;
const DEFAULT_SOCKET_TIMEOUT_MS = 1500;


interface Session {
  id: string;
  address: string;
  qmp: QmpClient;
  lastUsed: number;
}

export class QemuRequests {
  private readonly sessions = new Map<string, Session>();
  private readonly sockets: string[];
  private readonly dirs: string[];
  private readonly idleTimer: NodeJS.Timeout;

  constructor(private readonly o: QemuRequestOptions) {
    this.sockets = o.qmpSockets.map((s) => unixAddress(s));
    this.dirs = o.qmpDirs.map((d) => path.resolve(d));
    const idle = o.idleMs ?? 10 * 60_000;
    this.idleTimer = setInterval(() => {
      const t = Date.now();
      for (const s of [...this.sessions.values()]) if (t - s.lastUsed > idle) void this.closeSession(s, 'idle');
    }, Math.min(60_000, idle));
    this.idleTimer.unref();
  }

  /** Registers discover and the qmp-* kinds into `table`. */
  register(table: HostRequestTable): void {
    table.register('discover', (args, ctx) => this.discover(args, ctx.signal));
    table.register('qmp-open', (args, ctx) => this.open(args, ctx.timeoutMs));
    table.register('qmp-execute', (args) => this.execute(args));
    table.register('qmp-events', (args, ctx) => this.events(args, ctx.signal, ctx.timeoutMs));
    table.register('qmp-close', (args) => this.close(args));
  }

  async stop(): Promise<void> {
    clearInterval(this.idleTimer);
    await Promise.allSettled([...this.sessions.values()].map((s) => this.closeSession(s, 'agent stopping')));
  }

  /** Every QMP socket this agent knows now: the folders' *.qmp sockets, then the single ones. */
  async listSockets(): Promise<{ sockets: string[]; problems: string[] }> {
    const found = new Set<string>();
    const problems: string[] = [];
    for (const dir of this.dirs) {
      let names: string[];
      try {
        names = await fs.readdir(dir);
      } catch (err) {
        problems.push(`${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        continue;
      }
      for (const n of names.sort()) {
        if (!n.endsWith('.qmp')) continue;
        const p = path.join(dir, n);
        const st = await fs.lstat(p).catch(() => null);
        if (st?.isSocket()) found.add(`unix:${p}`);
      }
    }
    for (const s of this.sockets) found.add(s);
    return { sockets: [...found], problems };
  }

  private allowed(address: string): boolean {
    if (this.sockets.includes(address)) return true;
    const p = address.slice('unix:'.length);
    return this.dirs.some((d) => path.dirname(p) === d && p.endsWith('.qmp'));
  }

  private async discover(args: unknown, signal: AbortSignal): Promise<Discovery> {
    const a = (args ?? {}) as { socketTimeoutMs?: unknown; sampleMs?: unknown };
    const socketTimeoutMs = clampInt(a.socketTimeoutMs, 100, 30_000, DEFAULT_SOCKET_TIMEOUT_MS);
    const sampleMs = clampInt(a.sampleMs, 0, 10_000, 0);
    const { sockets, problems } = await this.listSockets();
    const vms = await Promise.all(sockets.map((s) => this.describe(s, socketTimeoutMs, sampleMs, signal)));
    return { v: DISCOVERY_VERSION, hostname: os.hostname(), sampledAt: Date.now(), vms, problems };
  }

  /** One socket: the VM it serves, or why it could not be read. */
  private async describe(address: string, timeoutMs: number, sampleMs: number, signal: AbortSignal): Promise<DiscoveredVm> {
    const held = [...this.sessions.values()].find((s) => s.address === address && !s.qmp.isClosed);
    let own: QmpClient | undefined;
    try {
      const qmp: QmpChannel = held?.qmp ?? (own = await QmpClient.connect(address, { timeoutMs }));
      const opts = { timeoutMs };
      const [name, status, uuid, blocks, stats] = await Promise.all([
        qmp.execute<{ name?: string }>('query-name', undefined, opts),
        qmp.execute<{ status: string }>('query-status', undefined, opts),
        qmp.execute<{ UUID: string }>('query-uuid', undefined, opts),
        qmp.execute<BlockInfo[]>('query-block', undefined, opts),
        qmp.execute<BlockStats[]>('query-blockstats', undefined, opts),
      ]);
      const disks = disksOf(blocks, stats);
      let wrBytesPerSec: number | undefined;
      if (sampleMs > 0 && !signal.aborted) {
        const t0 = performance.now();
        await new Promise((r) => setTimeout(r, sampleMs));
        const again = disksOf(blocks, await qmp.execute<BlockStats[]>('query-blockstats', undefined, opts));
        const secs = (performance.now() - t0) / 1000;
        const sum = (ds: DiscoveredDisk[]) => ds.reduce((n, d) => n + d.wrBytes, 0);
        wrBytesPerSec = Math.max(0, Math.round((sum(again) - sum(disks)) / secs));
        for (const d of disks) Object.assign(d, again.find((x) => x.device === d.device) ?? {});
      }
      return { qmp: address, ok: true, name: name.name ?? '', uuid: uuid.UUID, status: status.status, disks, ...(wrBytesPerSec !== undefined ? { wrBytesPerSec } : {}) };
    } catch (err) {
      return { qmp: address, ok: false, error: (err as Error).message.slice(0, 1000) };
    } finally {
      if (own) await own.close().catch(() => {});
    }
  }

  private async open(args: unknown, timeoutMs: number): Promise<{ session: string; version: QmpClient['version'] }> {
    const address = unixAddress((args as { address?: unknown })?.address);
    if (!this.allowed(address)) {
      throw vmError('FORBIDDEN', `${address} is not a QMP socket this agent serves (its --qmp-dir folders' *.qmp sockets and its --qmp sockets)`, { address });
    }
    if (this.sessions.size >= MAX_SESSIONS) throw vmError('CONFLICT', `this agent holds ${MAX_SESSIONS} QMP sessions already`);
    const qmp = await QmpClient.connect(address, { timeoutMs: Math.max(100, Math.min(timeoutMs - 200, 30_000)) });
    const s: Session = { id: randomUUID(), address, qmp, lastUsed: Date.now() };
    this.sessions.set(s.id, s);
    this.o.log?.(`QMP session ${s.id} opened on ${address}`);
    return { session: s.id, version: qmp.version };
  }

  private session(args: unknown): Session {
    const id = (args as { session?: unknown })?.session;
    const s = typeof id === 'string' ? this.sessions.get(id) : undefined;
    if (!s) throw vmError('NOT_FOUND', `no QMP session ${JSON.stringify(String(id).slice(0, 80))} on this agent (closed, idle too long, or the agent restarted)`);
    s.lastUsed = Date.now();
    return s;
  }

  private async execute(args: unknown): Promise<unknown> {
    const s = this.session(args);
    const a = args as { command?: unknown; arguments?: unknown; timeoutMs?: unknown };
    if (typeof a.command !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(a.command)) throw vmError('INVALID_ARGUMENT', 'qmp-execute: command must be a QMP command name');
    if (a.arguments !== undefined && (a.arguments === null || typeof a.arguments !== 'object' || Array.isArray(a.arguments))) throw vmError('INVALID_ARGUMENT', 'qmp-execute: arguments must be an object');
    const timeoutMs = clampInt(a.timeoutMs, 1, 10 * 60_000, 10_000);
    const r = await s.qmp.execute(a.command, a.arguments as object | undefined, { timeoutMs });
    return r === undefined ? null : r;
  }

  private async events(args: unknown, signal: AbortSignal, timeoutMs: number): Promise<{ events: Array<{ event: string; data: unknown }>; closed: boolean }> {
    const s = this.session(args);
    const a = args as { waitMs?: unknown; clear?: unknown };
    // Answer before the appliance stops waiting for the answer.
    const waitMs = Math.min(clampInt(a.waitMs, 0, 5 * 60_000, 0), Math.max(0, timeoutMs - 1000));
    const events = await s.qmp.takeEvents(a.clear === true ? 0 : waitMs, signal);
    s.lastUsed = Date.now();
    return { events: a.clear === true ? [] : events.map((e) => ({ event: e.event, data: e.data })), closed: s.qmp.isClosed };
  }

  private async close(args: unknown): Promise<null> {
    const id = (args as { session?: unknown })?.session;
    const s = typeof id === 'string' ? this.sessions.get(id) : undefined;
    if (s) await this.closeSession(s, 'closed by the appliance');
    return null;
  }

  private async closeSession(s: Session, why: string): Promise<void> {
    this.sessions.delete(s.id);
    this.o.log?.(`QMP session ${s.id} on ${s.address}: ${why}`);
    await s.qmp.close().catch(() => {});
  }
}

interface BlockInfo {
  device: string;
  qdev?: string;
  inserted?: {
    'node-name': string;
    file: string;
    drv: string;
    image?: { filename: string; format: string; 'virtual-size': number };
    'dirty-bitmaps'?: Array<{ name?: string; count: number; granularity: number; persistent?: boolean; recording?: boolean }>;
  };
}

interface BlockStats {
  device?: string;
  qdev?: string;
  'node-name'?: string;
  stats: { rd_bytes: number; wr_bytes: number; rd_operations: number; wr_operations: number };
}

/** Disks as describeVm names them (device, else the qdev id, else the node), with their counters. */
function disksOf(blocks: BlockInfo[], stats: BlockStats[]): DiscoveredDisk[] {
  const out: DiscoveredDisk[] = [];
  for (const b of blocks) {
    const ins = b.inserted;
    if (!ins) continue;
    const qdevId = b.qdev?.match(/^\/machine\/peripheral\/([^/]+)/)?.[1];
    const device = b.device || qdevId || ins['node-name'];
    const st = stats.find((s) => (b.device && s.device === b.device) || (b.qdev && s.qdev === b.qdev) || s['node-name'] === ins['node-name'])?.stats;
    out.push({
      device,
      node: ins['node-name'],
      file: ins.image?.filename ?? ins.file,
      format: ins.image?.format ?? ins.drv,
      sizeBytes: ins.image?.['virtual-size'] ?? 0,
      dirtyBitmaps: (ins['dirty-bitmaps'] ?? []).map((d) => ({ name: d.name ?? '', count: d.count, granularity: d.granularity, persistent: d.persistent === true, recording: d.recording !== false })),
      rdBytes: st?.rd_bytes ?? 0,
      wrBytes: st?.wr_bytes ?? 0,
      rdOps: st?.rd_operations ?? 0,
      wrOps: st?.wr_operations ?? 0,
    });
  }
  return out;
}

/** `unix:/abs/path` (a bare absolute path taken as one); anything else is refused. */
function unixAddress(v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 1024) throw vmError('INVALID_ARGUMENT', 'a QMP socket is unix:/absolute/path');
  const p = v.startsWith('unix:') ? v.slice(5) : v;
  if (!p.startsWith('/') || p.split('/').some((c) => c === '..' || c === '.') || /[\u0000-\u001f]/.test(p)) {
    throw vmError('INVALID_ARGUMENT', `QMP socket ${JSON.stringify(v.slice(0, 120))} is not unix:/absolute/path`);
  }
  return `unix:${path.normalize(p)}`;
}

function clampInt(v: unknown, min: number, max: number, dflt: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? Math.max(min, Math.min(max, Math.round(v))) : dflt;
}
