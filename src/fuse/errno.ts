// The one place where errors become errnos for the kernel. A process on the other side of the
// mount sees only strerror(errno), so every code that collapses to EIO also leaves a log line
// naming what actually broke.
import { constants } from 'node:os';
import { type ErrorCode, VmvaultError } from '../errors.js';

const E = constants.errno;

// null: EIO plus a log line. Typed as Record<ErrorCode, ...> so a new code in errors.ts does not
// compile until someone decides what a file system caller should see for it.
const CODE_TO_ERRNO: Record<ErrorCode, number | null> = {
  NOT_FOUND: E.ENOENT,
  ALREADY_EXISTS: E.EEXIST,
  NOT_EMPTY: E.ENOTEMPTY,
  IS_DIRECTORY: E.EISDIR,
  NOT_DIRECTORY: E.ENOTDIR,
  INVALID_ARGUMENT: E.EINVAL,
  NAME_TOO_LONG: E.ENAMETOOLONG,
  READ_ONLY: E.EROFS,
  NOT_PERMITTED: E.EPERM,
  CROSS_SHARE: E.EXDEV,
  NO_SPACE: E.ENOSPC,
  NOT_SUPPORTED: E.ENOTSUP,
  CORRUPT_SEGMENT: null,
  CORRUPT_CONTAINER: null,
  CORRUPT_RECORD: null,
  MISSING_SEGMENT: null,
  UNSUPPORTED_FORMAT: null,
  STORE_LOCKED: null,
  LOCKED: E.EPERM,
  CONFLICT: null,
  UNAUTHORIZED: null,
  CANCELLED: null,
  CLOSED: null,
  IO: null,
  TIMEOUT: null,
  PLUGIN_FAILED: null,
  FORBIDDEN: null,
  RATE_LIMITED: null,
  SEGMENT_MISMATCH: null,
  CORRUPT_COPY: null,
};

export type LogLine = (line: string) => void;

/**
 * Negative errno for `err` (replies take its absolute value). `where` names the operation and path for
 * the log line (e.g. "write /share/vm1.vmdk").
 * VmvaultError codes go through the table; plain Node errors whose `.code` is a POSIX name
 * (ENOENT, EACCES, ...) map to themselves; anything else is EIO and logged.
 */
export function toErrno(err: unknown, where: string, log: LogLine): number {
  if (err instanceof VmvaultError) {
    const errno = CODE_TO_ERRNO[err.code];
    if (errno !== null && errno !== undefined) return -errno;
    log(`fuse: ${where}: ${err.code}: ${err.message} -> EIO`);
    return -E.EIO;
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && Object.hasOwn(E, code)) {
    const errno = E[code as keyof typeof E];
    if (errno === E.EIO) log(`fuse: ${where}: ${describe(err)} -> EIO`);
    return -errno;
  }
  log(`fuse: ${where}: ${describe(err)} -> EIO`);
  return -E.EIO;
}

/** Negative errno for a POSIX name. */
export function errno(name: keyof typeof E): number {
  return -E[name];
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.stack?.split('\n', 2).join(' ') ?? err.message;
  return String(err);
}
