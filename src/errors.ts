// Typed errors with stable codes. Every layer throws VmvaultError; each edge maps the code
// exactly once: fuse/ to an errno, control/ to an HTTP status, cli/ to an exit code.
// Codes are part of the API (HTTP bodies, CLI --json): never rename one, only add.

export const ERROR_CODES = {
  NOT_FOUND: 'The named share, snapshot, file, job or segment does not exist.',
  ALREADY_EXISTS: 'Something with that name already exists.',
  NOT_EMPTY: 'The directory or share still has entries.',
  IS_DIRECTORY: 'A file operation was asked of a directory.',
  NOT_DIRECTORY: 'A directory operation was asked of something that is not a directory.',
  INVALID_ARGUMENT: 'The request or a name in it is malformed; the message says which part.',
  NAME_TOO_LONG: 'A name exceeds the length limit.',
  READ_ONLY: 'The target is read-only (a snapshot).',
  NOT_PERMITTED: 'The operation is not allowed on this object (e.g. a file at the top of the mount, renaming .snapshots).',
  CROSS_SHARE: 'The operation would move data between shares or snapshots; copy instead.',
  NO_SPACE: 'The data disk is full; free space (delete snapshots, run gc) and retry.',
  CORRUPT_SEGMENT: 'A stored segment failed verification; the message names container and offset.',
  CORRUPT_CONTAINER: 'A container file is unreadable or malformed.',
  CORRUPT_RECORD: 'A metadata record in the database (index entry, inode, volume, counters) is malformed.',
  MISSING_SEGMENT: 'A segment is referenced but absent from the store.',
  UNSUPPORTED_FORMAT: 'The on-disk data was written by a newer or unknown format version.',
  STORE_LOCKED: 'Another process has this data directory open.',
  CONFLICT: 'The operation conflicts with one already running.',
  UNAUTHORIZED: 'The API token is missing or wrong.',
  CANCELLED: 'The operation was cancelled.',
  CLOSED: 'The store or appliance is shutting down or already closed.',
  NOT_SUPPORTED: 'The operation is not supported.',
  IO: 'An operating-system I/O call failed; the message carries the cause.',
  TIMEOUT: 'A step did not finish within its deadline; the message names the step and the limit.',
  LOCKED: 'A retention lock keeps the restore point until the time the message names; nothing but time releases it.',
  PLUGIN_FAILED: 'A backup plug-in (qemu, postgresql, script) reported a failure; the message names plug-in, action and cause.',
  FORBIDDEN: 'The token is valid but not allowed this call (an agent token on an admin route, or outside its scope).',
  RATE_LIMITED: 'Too many failed authentications from this address; wait the time Retry-After names.',
  SEGMENT_MISMATCH: 'A segment sent to the appliance does not hash to the fingerprint it was sent under; it was refused.',
  CORRUPT_COPY: 'A copy kept elsewhere (a DR copy) is damaged or incomplete; the message names the file and what is wrong.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class VmvaultError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'VmvaultError';
    this.code = code;
    this.details = details;
  }
}

export function vmError(
  code: ErrorCode,
  message: string,
  details?: Record<string, unknown>,
  cause?: unknown,
): VmvaultError {
  return new VmvaultError(code, message, details, cause);
}

export function isVmvaultError(err: unknown, code?: ErrorCode): err is VmvaultError {
  return err instanceof VmvaultError && (code === undefined || err.code === code);
}

// Node's own system errors become typed ones where a caller can act on them (disk full);
// anything else is IO with the original kept as cause.
export function fromSystemError(err: unknown, what: string): VmvaultError {
  if (err instanceof VmvaultError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') {
    return vmError('NO_SPACE', `${what}: the data disk is full (${e.code}); free space and retry`, undefined, err);
  }
  return vmError('IO', `${what}: ${e?.message ?? String(err)}`, { syscall: e?.syscall, errno: e?.code }, err);
}
