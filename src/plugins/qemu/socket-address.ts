// The addresses a VM's QMP and guest-agent sockets are given by: 'unix:/path' or 'tcp:host:port'
// (QEMU's own -qmp / -chardev spelling). A bare absolute path is taken as unix.

import net from 'node:net';
import { vmError } from '../../errors.js';

export type SocketAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export function parseSocketAddress(address: string, what: string): SocketAddress {
  if (address.startsWith('unix:')) {
    const path = address.slice(5);
    if (path.length === 0) throw vmError('INVALID_ARGUMENT', `${what} address ${JSON.stringify(address)}: empty socket path`);
    return { kind: 'unix', path };
  }
  if (address.startsWith('/')) return { kind: 'unix', path: address };
  if (address.startsWith('tcp:')) {
    const rest = address.slice(4);
    const colon = rest.lastIndexOf(':');
    const host = rest.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    const port = Number(rest.slice(colon + 1));
    if (colon <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
      throw vmError('INVALID_ARGUMENT', `${what} address ${JSON.stringify(address)}: expected tcp:HOST:PORT`);
    }
    return { kind: 'tcp', host, port };
  }
  throw vmError('INVALID_ARGUMENT', `${what} address ${JSON.stringify(address)}: expected unix:/path or tcp:host:port`);
}

/**
 * Opens a stream socket to `addr`, failing after `timeoutMs` with a message naming `what`.
 * `onread` (net's option): the socket reads into buffers the caller gives and hands them to its
 * callback instead of emitting 'data' (the NBD client's receive slabs).
 */
export function openSocket(addr: SocketAddress, what: string, timeoutMs: number, onread?: net.OnReadOpts): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const extra = onread ? { onread } : {};
    const sock = addr.kind === 'unix' ? net.createConnection({ path: addr.path, ...extra }) : net.createConnection({ host: addr.host, port: addr.port, ...extra });
    const where = addr.kind === 'unix' ? addr.path : `${addr.host}:${addr.port}`;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(vmError('IO', `${what} at ${where}: no connection within ${timeoutMs} ms; check that the VM is running and the address is right`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const hint =
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? 'nothing listens there; check that the VM is running and was started with that socket'
          : err.code === 'EACCES'
            ? 'permission denied on the socket'
            : err.message;
      reject(vmError('IO', `${what} at ${where}: cannot connect (${err.code ?? 'error'}): ${hint}`, { errno: err.code }, err));
    });
  });
}
