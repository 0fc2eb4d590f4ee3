// The agent's side of the appliance's /api/v1/agents routes: JSON over HTTP(S) with the agent
// token, and over HTTPS the appliance certificate pinned by its SHA-256 fingerprint (the
// appliance's certificate is self-signed, so no CA vouches for it: the pin is the check, made
// before any byte of a request is sent on a new connection).
//
// Errors: an HTTP error answer becomes an AgentHttpError carrying the status and the appliance's
// error code, so the agent can tell "register again" (404, 409) from "try later" (network, 5xx).

import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { vmError } from '../errors.js';

export class AgentHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'AgentHttpError';
  }
}

/** "AB:CD:..." or "abcd..." -> "abcd..." (64 hex digits). */
export function normalizePin(pin: string): string {
  const hex = pin.replace(/[:\s]/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw vmError('INVALID_ARGUMENT', `--pin ${JSON.stringify(pin.slice(0, 100))} is not a SHA-256 fingerprint (64 hex digits, colons allowed)`);
  return hex;
}

/** An HTTPS agent whose every new connection must present the certificate with this fingerprint. */
function pinnedAgent(pin: string): https.Agent {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 8 });
  // Node's Agent accepts a connection handed to a callback; it gets one only after the check.
  (agent as unknown as { createConnection: (o: tls.ConnectionOptions, cb: (e: Error | null, s?: Duplex) => void) => void }).createConnection = (options, cb) => {
    const sock = tls.connect({ ...options, rejectUnauthorized: false });
    const onError = (err: Error) => cb(err);
    sock.once('error', onError);
    sock.once('secureConnect', () => {
      sock.off('error', onError);
      const got = sock.getPeerCertificate().fingerprint256?.replace(/:/g, '').toLowerCase();
      if (got !== pin) {
        sock.destroy();
        cb(vmError('UNAUTHORIZED', `the appliance's certificate has fingerprint ${got ?? 'none'}, not the pinned ${pin}: refusing to talk to it`));
        return;
      }
      cb(null, sock);
    });
  };
  return agent;
}

export interface ControlClientOptions {
  /** https://backup:7443 (the origin; /api/v1 is added). */
  url: string;
  token: string;
  pinSha256?: string;
}

export class ControlClient {
  readonly base: URL;
  private readonly agent: http.Agent;
  private readonly lib: typeof http | typeof https;

  constructor(private readonly opts: ControlClientOptions) {
    let base: URL;
    try {
      base = new URL(opts.url);
    } catch {
      throw vmError('INVALID_ARGUMENT', `--appliance ${JSON.stringify(opts.url)} is not a URL (example: https://backup:7443)`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw vmError('INVALID_ARGUMENT', `--appliance must be http:// or https://, not ${base.protocol}`);
    if (opts.pinSha256 !== undefined && base.protocol !== 'https:') throw vmError('INVALID_ARGUMENT', '--pin needs an https:// appliance URL');
    this.base = base;
    this.lib = base.protocol === 'https:' ? https : http;
    this.agent =
      base.protocol === 'https:'
        ? opts.pinSha256 !== undefined
          ? pinnedAgent(normalizePin(opts.pinSha256))
          : new https.Agent({ keepAlive: true, maxSockets: 8 })
        : new http.Agent({ keepAlive: true, maxSockets: 8 });
  }

  /** POST (or GET without a body) to /api/v1/<route>; resolves with the parsed JSON (undefined for 204). */
  request<T>(method: 'GET' | 'POST', route: string, body: unknown, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const url = new URL(`/api/v1${route}`, this.base);
    return new Promise<T>((resolve, reject) => {
      const req = this.lib.request(
        url,
        {
          method,
          agent: this.agent,
          headers: {
            authorization: `Bearer ${this.opts.token}`,
            ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
          },
          signal: opts.signal,
          timeout: opts.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            // An answer from the appliance is a few KiB; a huge one is refused, not buffered.
            if (size > 16 * 1024 * 1024) req.destroy(vmError('IO', `the appliance's answer to ${route} is larger than 16 MiB`));
            else chunks.push(c);
          });
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            let json: unknown;
            try {
              json = text === '' ? undefined : JSON.parse(text);
            } catch {
              if (status < 300) return reject(vmError('IO', `the appliance's answer to ${route} is not JSON`));
            }
            if (status >= 200 && status < 300) return resolve(json as T);
            const e = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
            reject(new AgentHttpError(status, typeof e?.code === 'string' ? e.code : 'HTTP', `${method} ${route}: ${status} ${typeof e?.message === 'string' ? e.message : text.slice(0, 200)}`));
          });
        },
      );
      req.on('timeout', () => req.destroy(vmError('TIMEOUT', `${method} ${route}: no answer within ${opts.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
