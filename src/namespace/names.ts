// Rules for the names people give shares and snapshots, and for file paths inside a share. One
// module so FUSE, HTTP and the namespace itself refuse the same things with the same words.
// A share name is a top-level directory of the mount and a snapshot name a directory under
// `.snapshots/`, so both must be one path component that cannot climb out ("..") or hide among
// the appliance's own dot-entries (".snapshots").

import { vmError } from '../errors.js';

export type NameKind = 'share' | 'snapshot';

/** Longest share or snapshot name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 128;
/** Longest path inside a share, in UTF-8 bytes (Linux PATH_MAX less room for mount and share). */
export const MAX_PATH_BYTES = 3840;
/** Longest component of a path inside a share (Linux NAME_MAX). */
export const MAX_COMPONENT_BYTES = 255;

export const SNAPSHOTS_DIR = '.snapshots';

const CONTROL = /[\u0000-\u001f\u007f]/;

/** Throws INVALID_ARGUMENT or NAME_TOO_LONG, with a message saying what is wrong, unless `name` is usable. */
export function validateName(kind: NameKind, name: unknown): asserts name is string {
  if (typeof name !== 'string') {
    throw vmError('INVALID_ARGUMENT', `${kind} name must be a string, not ${describeType(name)}`);
  }
  if (name.length === 0) throw vmError('INVALID_ARGUMENT', `${kind} name is empty`);
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_NAME_BYTES) {
    throw vmError('NAME_TOO_LONG', `${kind} name is ${bytes} bytes long; the limit is ${MAX_NAME_BYTES}`, { kind, bytes });
  }
  if (name.includes('\0')) throw vmError('INVALID_ARGUMENT', `${kind} name ${quote(name)} contains a NUL byte`);
  if (CONTROL.test(name)) throw vmError('INVALID_ARGUMENT', `${kind} name ${quote(name)} contains a control character`);
  if (name.includes('/')) throw vmError('INVALID_ARGUMENT', `${kind} name ${quote(name)} contains '/'; it must be one path component`);
  if (name.startsWith('.')) {
    throw vmError('INVALID_ARGUMENT', `${kind} name ${quote(name)} starts with '.'; such names are reserved`);
  }
  if (!isWellFormed(name)) throw vmError('INVALID_ARGUMENT', `${kind} name ${quote(name)} is not valid Unicode`);
}

/**
 * For paths a caller names inside a share (fastcopy): relative, canonical ("a/b", no "", "."
 * or ".." components), no NUL, and not under `.snapshots/`, which is read-only and not part of
 * the share's own tree. Returns the components. `what` names the path in messages ("from", "to").
 */
export function validatePathInShare(path: unknown, what = 'path'): string[] {
  if (typeof path !== 'string') throw vmError('INVALID_ARGUMENT', `${what} must be a string, not ${describeType(path)}`);
  if (path.length === 0) throw vmError('INVALID_ARGUMENT', `${what} is empty`);
  const bytes = Buffer.byteLength(path, 'utf8');
  if (bytes > MAX_PATH_BYTES) {
    throw vmError('NAME_TOO_LONG', `${what} is ${bytes} bytes long; the limit is ${MAX_PATH_BYTES}`, { bytes });
  }
  if (path.includes('\0')) throw vmError('INVALID_ARGUMENT', `${what} ${quote(path)} contains a NUL byte`);
  if (path.startsWith('/')) throw vmError('INVALID_ARGUMENT', `${what} ${quote(path)} must be relative to the share, without a leading '/'`);
  if (!isWellFormed(path)) throw vmError('INVALID_ARGUMENT', `${what} ${quote(path)} is not valid Unicode`);
  const parts = path.split('/');
  for (const part of parts) {
    if (part === '' || part === '.' || part === '..') {
      throw vmError('INVALID_ARGUMENT', `${what} ${quote(path)} has an empty, '.' or '..' component`);
    }
    const partBytes = Buffer.byteLength(part, 'utf8');
    if (partBytes > MAX_COMPONENT_BYTES) {
      throw vmError('NAME_TOO_LONG', `${what} component ${quote(part)} is ${partBytes} bytes long; the limit is ${MAX_COMPONENT_BYTES}`);
    }
  }
  if (parts[0] === SNAPSHOTS_DIR) {
    throw vmError('INVALID_ARGUMENT', `${what} ${quote(path)} is inside ${SNAPSHOTS_DIR}/, which is read-only and not part of the share`);
  }
  return parts;
}

/** A place named as `<share>/<path>` or `<share>/.snapshots/<snapshot>/<path>`. */
export interface SharePath {
  share: string;
  /** Set when the path is inside a snapshot (read-only). */
  snapshot?: string;
  /** Components below the share's (or snapshot's) root; empty for the root itself. */
  parts: string[];
}

/**
 * Parses what a person writes for fastcopy: "vms/dir/web01.vmdk", or with `inSnapshot` also
 * "vms/.snapshots/nightly/dir/web01.vmdk" and "vms/.snapshots/nightly" (the snapshot's whole
 * tree). `what` names it in messages ("source", "target").
 */
export function parseSharePath(text: unknown, what: string, opts: { inSnapshot: boolean }): SharePath {
  if (typeof text !== 'string') throw vmError('INVALID_ARGUMENT', `${what} must be a string, not ${describeType(text)}`);
  const slash = text.indexOf('/');
  const share = slash < 0 ? text : text.slice(0, slash);
  const rest = slash < 0 ? '' : text.slice(slash + 1);
  const form = opts.inSnapshot ? '<share>/<path> or <share>/.snapshots/<snapshot>[/<path>]' : '<share>/<path>';
  if (share === '' || (rest === '' && !opts.inSnapshot)) throw vmError('INVALID_ARGUMENT', `${what} ${quote(text)} is not ${form}`);
  validateName('share', share);
  if (rest === SNAPSHOTS_DIR || rest.startsWith(`${SNAPSHOTS_DIR}/`)) {
    if (!opts.inSnapshot) {
      throw vmError('INVALID_ARGUMENT', `${what} ${quote(text)} is inside ${SNAPSHOTS_DIR}/, which is read-only: copy into the share itself`);
    }
    const [, snapshot, ...parts] = rest.split('/');
    if (snapshot === undefined || snapshot === '') throw vmError('INVALID_ARGUMENT', `${what} ${quote(text)} names no snapshot: ${form}`);
    validateName('snapshot', snapshot);
    return { share, snapshot, parts: parts.length === 0 ? [] : validatePathInShare(parts.join('/'), what) };
  }
  if (rest === '') throw vmError('INVALID_ARGUMENT', `${what} ${quote(text)} names a whole share; name a file or directory in it (${form})`);
  return { share, parts: validatePathInShare(rest, what) };
}

/** "vms/a/b", "vms/.snapshots/nightly/a/b": how messages name a SharePath. */
export function showSharePath(p: SharePath): string {
  return [p.share, ...(p.snapshot === undefined ? [] : [SNAPSHOTS_DIR, p.snapshot]), ...p.parts].join('/');
}

// Lone surrogates would all encode to U+FFFD, so two different names could land on one entry.
function isWellFormed(s: string): boolean {
  return Buffer.from(s, 'utf8').toString('utf8') === s;
}

// Names in messages are JSON-quoted and cut, so a 4 KiB name or a control byte stays readable.
function quote(s: string): string {
  const cut = s.length > 64 ? `${s.slice(0, 64)}…` : s;
  return JSON.stringify(cut);
}

function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}
