// NBD URIs, as QEMU, libnbd and nbdkit spell them (the NBD project's doc/uri.md):
//   nbd://HOST[:PORT]/EXPORT            TCP, port 10809 by default
//   nbd+unix:///EXPORT?socket=/PATH     a UNIX socket on this host
// The export name is the path without its leading '/', percent-decoded. TLS (`nbds`) is not
// spoken (our client has no NBD_OPT_STARTTLS): such a URI is refused by name.

import { vmError } from '../../errors.js';
import type { NbdConnectOptions } from './nbd-client.js';

export type NbdTarget = Pick<NbdConnectOptions, 'socket' | 'host' | 'port' | 'exportName'>;

/** True when `s` is meant as an NBD URI (whether or not it is a valid one). */
export function looksLikeNbdUri(s: string): boolean {
  return /^nbds?(\+[a-z]+)?:\/\//i.test(s);
}

export function parseNbdUri(uri: string): NbdTarget {
  const shown = JSON.stringify(uri.length > 120 ? `${uri.slice(0, 120)}...` : uri);
  const bad = (why: string) => vmError('INVALID_ARGUMENT', `NBD URI ${shown}: ${why} (use nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=/PATH)`);
  if (uri.includes('\0')) throw bad('contains a NUL byte');
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw bad('not a URI');
  }
  let exportName: string;
  try {
    exportName = decodeURIComponent(u.pathname.replace(/^\//, ''));
  } catch {
    throw bad('the export name is not valid percent-encoding');
  }
  if (Buffer.byteLength(exportName) > 4096) throw bad('the export name is longer than 4096 bytes');
  if (u.username || u.password) throw bad('user names and passwords are not part of an NBD URI');
  switch (u.protocol) {
    case 'nbd:': {
      if (!u.hostname) throw bad('no host');
      if ([...u.searchParams.keys()].length > 0) throw bad('nbd:// takes no query');
      const port = u.port === '' ? 10809 : Number(u.port);
      return { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port, exportName };
    }
    case 'nbd+unix:': {
      if (u.hostname) throw bad('nbd+unix:// takes no host (three slashes: nbd+unix:///EXPORT?socket=...)');
      const socket = u.searchParams.get('socket');
      if (!socket) throw bad('no socket=/PATH');
      if (!socket.startsWith('/')) throw bad('the socket path must be absolute');
      if (Buffer.byteLength(socket) > 107) throw bad('the socket path is longer than a UNIX socket allows (107 bytes)');
      for (const k of u.searchParams.keys()) if (k !== 'socket') throw bad(`unknown query parameter ${JSON.stringify(k)}`);
      return { socket, exportName };
    }
    case 'nbds:':
    case 'nbds+unix:':
      throw bad('NBD over TLS is not supported');
    default:
      throw bad(`unknown scheme ${JSON.stringify(u.protocol.slice(0, -1))}`);
  }
}

/** The URI as shown in messages: the socket or host:port and the export. */
export function describeNbdTarget(t: NbdTarget): string {
  return `${t.socket ? t.socket : `${t.host}:${t.port}`} (export ${JSON.stringify(t.exportName)})`;
}
