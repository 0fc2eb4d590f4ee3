// Where a restore may write: a directory on the appliance host, named absolutely (the CLI resolves
// a relative --to against its own directory before sending it), or an NBD URI (nbd://HOST/EXPORT,
// nbd+unix:///EXPORT?socket=/PATH; `{device}` for a VM with several disks). Checked by the route
// and again by the VM services (public methods validate).

import path from 'node:path';
import { checkNbdUri, looksLikeNbdUri } from '../backup/restore-nbd.js';
import { vmError } from '../errors.js';

/**
 * An absolute, canonical directory on the appliance host (no NUL, no '.' or '..' components), or
 * a well-formed NBD URI, returned as given.
 */
export function checkRestoreTarget(to: unknown): string {
  if (typeof to !== 'string' || to.length === 0) throw vmError('INVALID_ARGUMENT', 'the restore target directory is missing');
  if (looksLikeNbdUri(to)) {
    checkNbdUri(to);
    return to;
  }
  if (to.includes('\0')) throw vmError('INVALID_ARGUMENT', 'the restore target directory contains a NUL byte');
  if (Buffer.byteLength(to) > 4000) throw vmError('NAME_TOO_LONG', 'the restore target directory is longer than 4000 bytes');
  const shown = JSON.stringify(to.length > 80 ? `${to.slice(0, 80)}...` : to);
  if (!path.isAbsolute(to)) throw vmError('INVALID_ARGUMENT', `the restore target directory ${shown} must be an absolute path on the appliance host`);
  if (to.split('/').some((c) => c === '.' || c === '..')) throw vmError('INVALID_ARGUMENT', `the restore target directory ${shown} must not contain '.' or '..' components`);
  return path.normalize(to).replace(/(.)\/$/, '$1');
}
