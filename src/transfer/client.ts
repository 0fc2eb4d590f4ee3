// The sender's connection to an appliance: HTTP(S) with keep-alive, the agent's bearer token,
// and for HTTPS the pinned certificate (the appliance's self-signed one: its SHA-256
// fingerprint, printed at the appliance's first start, is checked on every new TLS connection
// instead of a CA chain). Counts every byte that crosses the sockets, both ways, so the
// sender's report says what the wire carried.

import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import type { Socket } from 'node:net';
import { type ErrorCode, ERROR_CODES, vmError } from '../errors.js';
import { FRAME_CONTENT_TYPE } from './frames.js';
import { TRANSFER_PREFIX } from './messages.js';

const REQUEST_TIMEOUT_MS = 120_000;
/**
 * Bodies from this size on go to a TLS socket as a write of their own, after the headers'.
 * Node's HTTP client corks the headers (a string), the body and end()'s empty string chunk into
 * one writev, and a writev holding a string is first copied whole into one fresh buffer
 * (StreamBase::Writev) before TLS encrypts it: a copy of every segments frame (4 MiB; 226 MiB
 * per 512 MiB full send). Written alone, the body is encrypted from the caller's buffer.
 */
export const SEPARATE_BODY_BYTES = 64 * 1024;

export interface ConnectionOptions {
  url: string;
  token: string;
  /** The appliance certificate's SHA-256 fingerprint, hex or colon form. */
  pinSha256?: string;
}

/** "AB:CD:..." or "abcd..." -> "abcd..." (64 hex digits). */
export function normalizePin(pin: string): string {
  const hex = pin.replace(/[:\s]/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw vmError('INVALID_ARGUMENT', `--pin ${JSON.stringify(pin.slice(0, 100))} is not a SHA-256 fingerprint (64 hex digits, colons allowed)`);
  return hex;
}

export class TransferConnection {
  private readonly agent: http.Agent;
  private readonly base: URL;
  private closed = false;
  /** Bytes the sockets carried for this connection's requests, both ways. */
  private wire = 0;
  private readonly counted = new WeakMap<Socket, { r: number; w: number }>();

  private constructor(
    opts: ConnectionOptions,
    base: URL,
  ) {
    this.base = base;
    this.token = opts.token;
    if (base.protocol === 'https:') {
      const pin = opts.pinSha256 === undefined ? undefined : normalizePin(opts.pinSha256);
      this.agent = pin === undefined ? new https.Agent({ keepAlive: true, maxSockets: 4 }) : pinnedAgent(pin);
    } else {
      this.agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    }
  }

  private readonly token: string;

  /** Opens a connection and checks the appliance answers (and, over HTTPS, its pin). */
  static async open(opts: ConnectionOptions): Promise<TransferConnection> {
    let base: URL;
    try {
      base = new URL(opts.url);
    } catch {
      throw vmError('INVALID_ARGUMENT', `appliance URL ${JSON.stringify(opts.url.slice(0, 200))} is not a URL`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw vmError('INVALID_ARGUMENT', `appliance URL must be http:// or https://, not ${base.protocol}`);
    if (typeof opts.token !== 'string' || opts.token === '') throw vmError('INVALID_ARGUMENT', 'an agent token is needed');
    const c = new TransferConnection(opts, base);
    try {
      await c.request('GET', `${TRANSFER_PREFIX}/hello`);
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  /** Bytes on the wire so far (requests and responses, headers included). */
  get wireBytes(): number {
    return this.wire;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.agent.destroy();
  }

  /** JSON in, JSON out. */
  async json<T>(method: string, route: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const res = await this.request(method, route, payload, payload ? 'application/json' : undefined, signal);
    return (res.length === 0 ? {} : JSON.parse(res.toString('utf8'))) as T;
  }

  /** A binary frame in, the raw answer out. */
  frame(route: string, frame: Buffer, signal?: AbortSignal): Promise<Buffer> {
    return this.request('POST', route, frame, FRAME_CONTENT_TYPE, signal);
  }

  request(method: string, route: string, body?: Buffer, contentType?: string, signal?: AbortSignal): Promise<Buffer> {
    if (this.closed) return Promise.reject(vmError('CLOSED', 'the transfer connection is closed'));
    const url = new URL(route, this.base);
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise<Buffer>((resolve, reject) => {
      const headers: Record<string, string | number> = { authorization: `Bearer ${this.token}` };
      if (body !== undefined) {
        headers['content-type'] = contentType ?? 'application/octet-stream';
        headers['content-length'] = body.length;
      }
      const req = mod.request(url, { method, headers, agent: this.agent, signal, timeout: REQUEST_TIMEOUT_MS });
      let sock: Socket | undefined;
      req.on('socket', (s: Socket) => {
        sock = s;
        if (!this.counted.has(s)) this.counted.set(s, { r: 0, w: 0 });
      });
      const account = () => {
        if (!sock) return;
        const c = this.counted.get(sock)!;
        const r = sock.bytesRead;
        const w = sock.bytesWritten;
        this.wire += r - c.r + (w - c.w);
        c.r = r;
        c.w = w;
      };
      req.on('timeout', () => req.destroy(vmError('TIMEOUT', `${method} ${url.pathname}: no answer within ${REQUEST_TIMEOUT_MS / 1000} s`, { transport: true })));
      req.on('error', (err) => {
        account();
        // `transport`: the connection failed, not the request; a sender may retry (sender.ts).
        reject(isTyped(err) ? err : vmError('IO', `${method} ${url.pathname} on ${this.base.origin}: ${err.message}`, { errno: (err as NodeJS.ErrnoException).code, transport: true }, err));
      });
      req.on('response', (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('error', (err) => reject(vmError('IO', `${method} ${url.pathname}: ${err.message}`, { transport: true }, err)));
        res.on('end', () => {
          account();
          const buf = Buffer.concat(parts);
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve(buf);
          reject(replyError(method, url.pathname, status, buf, res.headers['retry-after']));
        });
      });
      if (body !== undefined && body.length >= SEPARATE_BODY_BYTES && url.protocol === 'https:') endSeparately(req, body);
      else req.end(body);
    });
  }
}

/**
 * Sends `body` to the socket as a write of its own (SEPARATE_BODY_BYTES): the headers once the
 * socket is connected, the body a turn of the event loop later (write() corks until the next
 * tick, so alone in its turn it leaves alone), end() a turn after that (its empty chunk would
 * otherwise join the body's writev). Not before connect: a connecting socket queues the writes
 * and hands them on together.
 */
function endSeparately(req: http.ClientRequest, body: Buffer): void {
  req.once('socket', (s: Socket) => {
    const go = () => {
      if (req.destroyed) return;
      req.flushHeaders();
      setImmediate(() => {
        if (req.destroyed) return;
        req.write(body);
        setImmediate(() => {
          if (!req.destroyed) req.end();
        });
      });
    };
    if ((s as Socket & { connecting?: boolean }).connecting) s.once('secureConnect', go);
    else go();
  });
}

/**
 * An agent whose TLS sockets are handed to HTTP only after the peer's certificate matched the
 * pin: nothing (not the token) is written on a connection before the check. With a pin the
 * chain is not checked (the certificate is self-signed); the pin is the trust.
 */
function pinnedAgent(pin: string): https.Agent {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 4 });
  (agent as unknown as { createConnection: unknown }).createConnection = (options: tls.ConnectionOptions, cb: (err: Error | null, s?: Socket) => void) => {
    const s = tls.connect({ ...options, rejectUnauthorized: false });
    let answered = false;
    const answer = (err: Error | null, sock?: Socket) => {
      if (answered) return;
      answered = true;
      cb(err, sock);
    };
    s.once('secureConnect', () => {
      const got = s.getPeerCertificate()?.fingerprint256?.replace(/:/g, '').toLowerCase();
      if (got !== pin) {
        s.destroy();
        answer(vmError('UNAUTHORIZED', `the appliance's certificate (SHA-256 ${got ?? 'none'}) does not match the pinned fingerprint ${pin}`));
        return;
      }
      answer(null, s);
    });
    s.once('error', (err) => answer(err));
    return undefined;
  };
  return agent;
}

function isTyped(err: unknown): boolean {
  return typeof (err as { code?: unknown }).code === 'string' && (err as { name?: string }).name === 'VmvaultError';
}

function replyError(method: string, route: string, status: number, body: Buffer, retryAfter: string | string[] | undefined) {
  let code: ErrorCode = status === 401 ? 'UNAUTHORIZED' : status === 403 ? 'FORBIDDEN' : status === 429 ? 'RATE_LIMITED' : status >= 500 ? 'IO' : 'INVALID_ARGUMENT';
  let message = `${method} ${route}: HTTP ${status}`;
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { error?: { code?: string; message?: string } };
    if (parsed.error?.code && parsed.error.code in ERROR_CODES) code = parsed.error.code as ErrorCode;
    if (parsed.error?.message) message = `${method} ${route}: ${parsed.error.message}`;
  } catch {
    // not our error body; the status says enough
  }
  return vmError(code, message, { status, ...(retryAfter !== undefined ? { retryAfter: String(retryAfter) } : {}) });
}
