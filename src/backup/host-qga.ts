// The guest agent of a VM on a host (issue 13): its socket is on that host, so an app-consistent
// backup freezes and thaws the guest through the host's agent (host requests qga-open,
// qga-execute, qga-close, src/agent/qga-requests.ts; README.md "Host requests"), as host-qmp.ts
// relays QMP. The agent relays only the commands a backup needs. Its answers are untrusted: a
// count must be a small non-negative integer, a status 'thawed' or 'frozen'.

import { vmError } from '../errors.js';
import type { GuestAgentLike } from '../plugins/qemu/plugin.js';
import type { AgentPool } from './agent-pool.js';

const DEFAULT_TIMEOUT_MS = 10_000;
/** What the agent may take beyond the command's own deadline to answer. */
const MARGIN_MS = 5_000;

export class HostGuestAgent implements GuestAgentLike {
  private closed = false;

  private constructor(
    private readonly pool: Pick<AgentPool, 'request'>,
    private readonly agent: string,
    readonly address: string,
    private readonly session: string,
    private readonly timeoutMs: number,
  ) {}

  /** Opens a session on `socket` (unix:/path on the host) through `agent`. */
  static async open(pool: Pick<AgentPool, 'request'>, o: { host: string; agent: string; socket: string; timeoutMs?: number }): Promise<HostGuestAgent> {
    const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const session = await pool.request(o.agent, 'qga-open', { address: o.socket }, timeoutMs + MARGIN_MS, (x) => {
      const v = x as { session?: unknown };
      if (v === null || typeof v !== 'object' || typeof v.session !== 'string' || !/^[A-Za-z0-9-]{1,64}$/.test(v.session)) throw new Error('no session id');
      return v.session;
    });
    return new HostGuestAgent(pool, o.agent, `agent:${o.host} ${o.socket}`, session, timeoutMs);
  }

  private execute<T>(command: string, validate: (r: unknown) => T, timeoutMs = this.timeoutMs): Promise<T> {
    if (this.closed) return Promise.reject(vmError('CLOSED', `guest agent ${command} at ${this.address}: the session was closed`));
    return this.pool.request(this.agent, 'qga-execute', { session: this.session, command, timeoutMs }, timeoutMs + MARGIN_MS, validate);
  }

  async ping(): Promise<void> {
    await this.execute('guest-ping', () => undefined);
  }

  freeze(): Promise<number> {
    return this.execute('guest-fsfreeze-freeze', count);
  }

  thaw(): Promise<number> {
    return this.execute('guest-fsfreeze-thaw', count);
  }

  status(): Promise<'thawed' | 'frozen'> {
    return this.execute('guest-fsfreeze-status', (r) => {
      if (r !== 'thawed' && r !== 'frozen') throw new Error(`status ${JSON.stringify(r).slice(0, 40)} is not thawed or frozen`);
      return r;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.request(this.agent, 'qga-close', { session: this.session }, DEFAULT_TIMEOUT_MS, () => null).catch(() => {});
  }
}

function count(r: unknown): number {
  if (!Number.isInteger(r) || (r as number) < 0 || (r as number) > 100_000) throw new Error(`${JSON.stringify(r).slice(0, 40)} is not a count of file systems`);
  return r as number;
}
