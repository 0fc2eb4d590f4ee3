// Host requests (issue 13): the appliance asks an agent to do something on its host (discover
// the QEMU VMs, hold a QMP session, later the HA plug-in's kinds) and waits for the answer. They
// ride on the agent's long-poll beside the copy tasks (src/agent/README.md, "Host requests",
// protocol version HOST_REQUEST_VERSION), so an agent needs no port of its own.
//
// What a caller may rely on:
// - request() settles within its timeout: with the answer, or a typed error saying why not:
//   NOT_FOUND (no agent of that name ever registered), IO with details.hostReason 'agent-lost'
//   (the agent stopped heartbeating, or was lost while the request was out), TIMEOUT (no answer
//   in time), NOT_SUPPORTED (the agent does not handle that kind), or the error the agent's
//   handler reported (its code when it is one of ours, else IO).
// - Each request is handed to the agent once (a request is short and its caller waits; a lost
//   answer is a timeout, not a retry: a QMP command must not run twice).
// - The agent is untrusted: an answer is checked by the caller's validator before anyone sees
//   it, and an answer to a request that is not out to that agent is refused (CONFLICT).

import { randomUUID } from 'node:crypto';
import { ERROR_CODES, type ErrorCode, vmError, type VmvaultError } from '../errors.js';

/** Version of the host request messages; an agent answers a newer one with NOT_SUPPORTED. */
export const HOST_REQUEST_VERSION = 1;

/** A host request as an agent receives it in its poll answer (`requests`). */
export interface HostRequest {
  v: number;
  id: string;
  kind: string;
  args: unknown;
  /** How long the appliance waits for the answer, ms (the agent gives its handler that long). */
  timeoutMs: number;
}

/** What an agent posts back (`/agents/{name}/requests/{id}/answer`). */
export interface HostAnswer {
  ok: boolean;
  result?: unknown;
  error?: { code?: string; message?: string };
}

export type HostReason = 'agent-unknown' | 'agent-lost' | 'timeout' | 'not-supported' | 'failed' | 'bad-answer';

const KIND = /^[a-z][a-z0-9-]{0,63}$/;
/** The longest a caller may wait for one request (a QMP event wait is the longest). */
export const MAX_REQUEST_MS = 10 * 60_000;

interface Out {
  req: HostRequest;
  agent: string;
  delivered: boolean;
  timer: NodeJS.Timeout;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

/** The appliance's side: requests waiting for delivery or for an answer, per agent. */
export class HostRequests {
  private readonly out = new Map<string, Out>();
  private closed = false;

  constructor(
    /** Whether an agent is known, live, and which request kinds it declared (undefined: any). */
    private readonly agentState: (name: string) => { state: 'live' | 'lost'; kinds?: readonly string[] } | undefined,
    /** Wakes the agent's long-poll. */
    private readonly wake: (name: string) => void,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /**
   * Asks `agent` to run `kind` with `args`; resolves with the answer `validate` accepts (it
   * throws on a malformed one: the agent is untrusted). See the file's head for the errors.
   */
  request<T>(agent: string, kind: string, args: unknown, timeoutMs: number, validate: (result: unknown) => T): Promise<T> {
    if (this.closed) return Promise.reject(vmError('CLOSED', 'the agent pool is closed (the appliance is shutting down)'));
    if (!KIND.test(kind)) return Promise.reject(vmError('INVALID_ARGUMENT', `host request kind ${JSON.stringify(kind.slice(0, 80))} is not 1 to 64 lower-case letters, digits or '-'`));
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_REQUEST_MS) return Promise.reject(vmError('INVALID_ARGUMENT', `host request timeout must be 1 to ${MAX_REQUEST_MS} ms`));
    const st = this.agentState(agent);
    if (st === undefined) return Promise.reject(hostError('NOT_FOUND', 'agent-unknown', agent, kind, `agent ${agent} has not registered (start it on the host: vmvault agent --name ${agent} ...)`));
    if (st.state === 'lost') return Promise.reject(hostError('IO', 'agent-lost', agent, kind, `agent ${agent} is lost (not heard from within the appliance's --agent-lost time)`));
    if (st.kinds !== undefined && !st.kinds.includes(kind)) {
      return Promise.reject(hostError('NOT_SUPPORTED', 'not-supported', agent, kind, `agent ${agent} does not handle ${kind} requests (it handles: ${st.kinds.join(', ') || 'none'}; upgrade it)`));
    }
    const req: HostRequest = { v: HOST_REQUEST_VERSION, id: randomUUID(), kind, args, timeoutMs };
    return new Promise<T>((resolve, reject) => {
      const o: Out = {
        req,
        agent,
        delivered: false,
        timer: setTimeout(() => {
          this.out.delete(req.id);
          reject(hostError('TIMEOUT', 'timeout', agent, kind, `agent ${agent} did not answer ${kind} within ${timeoutMs} ms${o.delivered ? '' : ' (it did not even fetch the request: is it polling?)'}`));
        }, timeoutMs),
        resolve: (v) => {
          try {
            resolve(validate(v));
          } catch (err) {
            const m = (err as Error).message;
            this.log(`agent ${agent}: malformed ${kind} answer: ${m}`);
            reject(hostError('IO', 'bad-answer', agent, kind, `agent ${agent} answered ${kind} with something malformed: ${m}`));
          }
        },
        reject,
      };
      this.out.set(req.id, o);
      this.wake(agent);
    });
  }

  /** Whether requests wait for delivery to this agent (its poll answers at once then). */
  hasFor(agent: string): boolean {
    for (const o of this.out.values()) if (o.agent === agent && !o.delivered) return true;
    return false;
  }

  /** The requests waiting for this agent, marked delivered (handed once). */
  take(agent: string): HostRequest[] {
    const out: HostRequest[] = [];
    for (const o of this.out.values()) {
      if (o.agent !== agent || o.delivered) continue;
      o.delivered = true;
      out.push(o.req);
    }
    return out;
  }

  /** The agent's answer. CONFLICT when the request is not out to that agent (finished, timed out, another's). */
  answer(agent: string, id: string, answer: HostAnswer): void {
    const o = typeof id === 'string' ? this.out.get(id) : undefined;
    if (!o || o.agent !== agent || !o.delivered) {
      throw vmError('CONFLICT', `host request ${String(id).slice(0, 80)} is not out to agent ${agent} (it was answered, timed out or is another agent's)`, { agent });
    }
    if (answer === null || typeof answer !== 'object' || typeof answer.ok !== 'boolean') throw vmError('INVALID_ARGUMENT', 'a host request answer is { ok, result | error }');
    this.out.delete(id);
    clearTimeout(o.timer);
    if (answer.ok) {
      o.resolve(answer.result);
      return;
    }
    const e = answer.error;
    const code: ErrorCode = typeof e?.code === 'string' && e.code in ERROR_CODES ? (e.code as ErrorCode) : 'IO';
    const msg = typeof e?.message === 'string' && e.message !== '' ? e.message.slice(0, 2000) : 'no reason given';
    const reason: HostReason = code === 'NOT_SUPPORTED' ? 'not-supported' : 'failed';
    o.reject(hostError(code, reason, agent, o.req.kind, `agent ${agent}: ${o.req.kind}: ${msg}`));
  }

  /** The agent was lost or registered again: what it held will not be answered. */
  agentGone(agent: string, why: string): void {
    for (const [id, o] of this.out) {
      if (o.agent !== agent) continue;
      // Not yet delivered to a re-registered agent: it still may be (a new process polls too).
      if (!o.delivered && why !== 'lost') continue;
      this.out.delete(id);
      clearTimeout(o.timer);
      o.reject(hostError('IO', 'agent-lost', agent, o.req.kind, `agent ${agent} ${why === 'lost' ? 'was lost' : 'registered again'} while ${o.req.kind} was out`));
    }
  }

  close(): void {
    this.closed = true;
    for (const o of this.out.values()) {
      clearTimeout(o.timer);
      o.reject(vmError('CANCELLED', 'the appliance is shutting down'));
    }
    this.out.clear();
  }
}

function hostError(code: ErrorCode, reason: HostReason, agent: string, kind: string, message: string): VmvaultError {
  return vmError(code, message, { agent, kind, hostReason: reason });
}
