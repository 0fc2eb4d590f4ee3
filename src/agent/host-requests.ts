// The agent's side of host requests (issue 13; protocol in README.md, "Host requests"): a table
// of handlers by kind. The built-in kinds (discover, qmp-open/-execute/-events/-close) are
// registered by main.ts from qemu-requests.ts; another plug-in adds its own kinds with
// registerHostRequest() in one file (the HA plug-in: ha-state, ha-set-role) and main.ts imports
// it. The agent declares the kinds it handles when it registers, so the appliance refuses a kind
// an agent lacks at once instead of waiting for a timeout.
//
// A handler gets the request's args (unchecked: it validates them itself, the appliance is
// trusted but a bug there must not crash the agent) and a signal aborted at the request's
// deadline or when the agent stops; what it resolves with is the answer's result (JSON). A
// VmvaultError it throws is answered with its code; anything else as IO.

import { isVmvaultError, vmError } from '../errors.js';

/** The host request version this agent reads (src/backup/host-requests.ts HOST_REQUEST_VERSION). */
export const HOST_REQUEST_VERSION = 1;

export interface HostRequest {
  v: number;
  id: string;
  kind: string;
  args: unknown;
  timeoutMs: number;
}

export type HostRequestHandler = (args: unknown, ctx: { signal: AbortSignal; timeoutMs: number }) => Promise<unknown>;

export type HostAnswer = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } };

/** An answer larger than this is refused here (the appliance would refuse it anyway). */
const MAX_ANSWER_BYTES = 15 * 1024 * 1024;
const KIND = /^[a-z][a-z0-9-]{0,63}$/;

export class HostRequestTable {
  private readonly handlers = new Map<string, HostRequestHandler>();

  register(kind: string, handler: HostRequestHandler): void {
    if (!KIND.test(kind)) throw vmError('INVALID_ARGUMENT', `host request kind ${JSON.stringify(kind)} is not 1 to 64 lower-case letters, digits or '-'`);
    if (this.handlers.has(kind)) throw vmError('ALREADY_EXISTS', `host request kind ${kind} is registered twice`);
    this.handlers.set(kind, handler);
  }

  kinds(): string[] {
    return [...this.handlers.keys()].sort();
  }

  /** Runs one request to its answer; never rejects. */
  async run(req: HostRequest, stop: AbortSignal): Promise<HostAnswer> {
    if (req.v !== HOST_REQUEST_VERSION) return fail('NOT_SUPPORTED', `host request version ${req.v}; this agent reads version ${HOST_REQUEST_VERSION} (upgrade the agent)`);
    const handler = this.handlers.get(req.kind);
    if (!handler) return fail('NOT_SUPPORTED', `this agent does not handle ${String(req.kind).slice(0, 64)} requests (it handles: ${this.kinds().join(', ')})`);
    const timeoutMs = Number.isInteger(req.timeoutMs) && req.timeoutMs > 0 ? req.timeoutMs : 10_000;
    const signal = AbortSignal.any([stop, AbortSignal.timeout(timeoutMs)]);
    try {
      const result = await handler(req.args, { signal, timeoutMs });
      const size = Buffer.byteLength(JSON.stringify(result ?? null));
      if (size > MAX_ANSWER_BYTES) return fail('IO', `the answer to ${req.kind} is ${size} bytes, more than ${MAX_ANSWER_BYTES}`);
      return { ok: true, result: result ?? null };
    } catch (err) {
      return fail(isVmvaultError(err) ? err.code : 'IO', (err as Error)?.message ?? String(err));
    }
  }
}

function fail(code: string, message: string): HostAnswer {
  return { ok: false, error: { code, message: message.slice(0, 4000) } };
}

/** The agent process's table (main.ts hands it to the Agent). */
export const hostRequests = new HostRequestTable();

/** Adds a kind to the agent process's table (the roster's contract for other plug-ins). */
export function registerHostRequest(kind: string, handler: HostRequestHandler): void {
  hostRequests.register(kind, handler);
}
