// Puts the control plane on a socket. Loopback only unless the caller says otherwise: over plain
// HTTP the token travels in clear, so serving beyond this machine needs TLS (the appliance's
// --tls-cert/--tls-key, or a proxy in front with a deliberate `allowRemote`).

import net from 'node:net';
import type { FastifyInstance } from 'fastify';
import { fromSystemError, vmError } from '../errors.js';
import { DEFAULT_HOST, DEFAULT_PORT } from './defaults.js';

export interface ListenOptions {
  host?: string;
  /** 0 picks a free port (tests). */
  port?: number;
  allowRemote?: boolean;
  /** The server was built with TLS (buildServer's `tls`): remote callers are then allowed, as the token is encrypted. */
  tls?: boolean;
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

/** Starts listening; returns the base URL (e.g. http://127.0.0.1:7070). */
export async function listen(app: FastifyInstance, opts: ListenOptions = {}): Promise<string> {
  const host = opts.host ?? DEFAULT_HOST;
  const port = opts.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw vmError('INVALID_ARGUMENT', `port ${port} is not 0..65535`);
  if (!isLoopback(host) && opts.allowRemote !== true && opts.tls !== true) {
    throw vmError(
      'INVALID_ARGUMENT',
      `refusing to serve the control plane on ${host}: it is not a loopback address, and the token would cross the network in clear; put a TLS proxy in front and allow remote explicitly`,
    );
  }
  try {
    await app.listen({ host, port });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw vmError('CONFLICT', `${host}:${port} is already in use: is another appliance running?`, undefined, err);
    }
    throw fromSystemError(err, `listening on ${host}:${port}`);
  }
  const addr = app.server.address();
  const actualPort = typeof addr === 'object' && addr !== null ? addr.port : port;
  const shownHost = net.isIPv6(host) ? `[${host}]` : host;
  return `${opts.tls ? 'https' : 'http'}://${shownHost}:${actualPort}`;
}
