// The one place where error codes become HTTP statuses. Typed as Record<ErrorCode, ...> so a new
// code in errors.ts does not compile until someone decides what an HTTP client should see.

import type { ErrorCode } from '../errors.js';

export const CODE_TO_STATUS: Record<ErrorCode, number> = {
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  NOT_EMPTY: 409,
  // The request is well formed but the target's current state forbids it.
  IS_DIRECTORY: 409,
  NOT_DIRECTORY: 409,
  INVALID_ARGUMENT: 400,
  NAME_TOO_LONG: 400,
  // 409, not 403: 403 reads as "your token may not", and tools would retry with other credentials.
  READ_ONLY: 409,
  NOT_PERMITTED: 409,
  CROSS_SHARE: 400,
  NO_SPACE: 507,
  // Server-side damage: 500 with a message naming container and offset.
  CORRUPT_SEGMENT: 500,
  CORRUPT_CONTAINER: 500,
  CORRUPT_RECORD: 500,
  MISSING_SEGMENT: 500,
  UNSUPPORTED_FORMAT: 500,
  STORE_LOCKED: 503,
  LOCKED: 423,
  CONFLICT: 409,
  UNAUTHORIZED: 401,
  CANCELLED: 409,
  CLOSED: 503,
  NOT_SUPPORTED: 501,
  IO: 500,
  // A system the appliance drives (QEMU, PostgreSQL, a script) timed out or failed: gateway errors.
  TIMEOUT: 504,
  PLUGIN_FAILED: 502,
  FORBIDDEN: 403,
  RATE_LIMITED: 429,
  // The sender's bytes do not match its fingerprint: a well-formed request with content refused.
  SEGMENT_MISMATCH: 422,
  // A copy on a destination failed its checks: the request was fine, the copy's bytes are not.
  CORRUPT_COPY: 422,
};

/**
 * Codes that only the HTTP edge emits, for failures that are not VmvaultErrors: a bug that let a
 * plain Error escape. Not in errors.ts because no layer below ever throws them.
 */
export const INTERNAL_CODE = 'INTERNAL';

export function statusFor(code: ErrorCode): number {
  return CODE_TO_STATUS[code];
}
