// The one place where error codes become exit codes, so scripts can tell "not there" from
// "already there" from "cannot reach the appliance" without parsing messages.

import type { ErrorCode } from '../errors.js';

export const EXIT = {
  OK: 0,
  /** Anything without a more specific code: I/O failures, appliance bugs, unexpected answers. */
  FAILURE: 1,
  /** The command line or a name in it is wrong. */
  USAGE: 2,
  /** No appliance answered at the URL. */
  UNREACHABLE: 3,
  UNAUTHORIZED: 4,
  NOT_FOUND: 5,
  /** Already exists, not empty, read-only, or another job in the way. */
  CONFLICT: 6,
  /** Stored data is damaged, or verify found problems. */
  DAMAGED: 7,
  NO_SPACE: 8,
  /** The appliance is shutting down or its store is locked: try again later. */
  UNAVAILABLE: 9,
  /** A job was cancelled (by someone else; Ctrl-C here gives INTERRUPTED). */
  CANCELLED: 10,
  /** Ctrl-C, as shells report SIGINT. */
  INTERRUPTED: 130,
} as const;

// Typed as Record<ErrorCode, ...> so a new code in errors.ts does not compile until someone
// decides what a script should see for it.
const CODE_TO_EXIT: Record<ErrorCode, number> = {
  NOT_FOUND: EXIT.NOT_FOUND,
  ALREADY_EXISTS: EXIT.CONFLICT,
  NOT_EMPTY: EXIT.CONFLICT,
  IS_DIRECTORY: EXIT.CONFLICT,
  NOT_DIRECTORY: EXIT.CONFLICT,
  INVALID_ARGUMENT: EXIT.USAGE,
  NAME_TOO_LONG: EXIT.USAGE,
  READ_ONLY: EXIT.CONFLICT,
  NOT_PERMITTED: EXIT.CONFLICT,
  CROSS_SHARE: EXIT.USAGE,
  NO_SPACE: EXIT.NO_SPACE,
  CORRUPT_SEGMENT: EXIT.DAMAGED,
  CORRUPT_CONTAINER: EXIT.DAMAGED,
  CORRUPT_RECORD: EXIT.DAMAGED,
  MISSING_SEGMENT: EXIT.DAMAGED,
  UNSUPPORTED_FORMAT: EXIT.DAMAGED,
  STORE_LOCKED: EXIT.UNAVAILABLE,
  LOCKED: EXIT.CONFLICT,
  CONFLICT: EXIT.CONFLICT,
  UNAUTHORIZED: EXIT.UNAUTHORIZED,
  CANCELLED: EXIT.CANCELLED,
  CLOSED: EXIT.UNAVAILABLE,
  NOT_SUPPORTED: EXIT.FAILURE,
  IO: EXIT.FAILURE,
  TIMEOUT: EXIT.FAILURE,
  PLUGIN_FAILED: EXIT.FAILURE,
  FORBIDDEN: EXIT.UNAUTHORIZED,
  RATE_LIMITED: EXIT.UNAVAILABLE,
  SEGMENT_MISMATCH: EXIT.FAILURE,
  CORRUPT_COPY: EXIT.DAMAGED,
};

/** Codes only the CLI raises, for failures that never reached an appliance answer. */
const CLI_CODES = {
  USAGE: EXIT.USAGE,
  UNREACHABLE: EXIT.UNREACHABLE,
  PROTOCOL: EXIT.FAILURE,
  INTERRUPTED: EXIT.INTERRUPTED,
} as const;

export type CliCode = keyof typeof CLI_CODES;

/** For any code an error can carry: ErrorCode, CliCode, or one a newer appliance sent (FAILURE). */
export function exitCodeFor(code: string): number {
  if (Object.hasOwn(CODE_TO_EXIT, code)) return CODE_TO_EXIT[code as ErrorCode];
  if (Object.hasOwn(CLI_CODES, code)) return CLI_CODES[code as CliCode];
  return EXIT.FAILURE;
}
