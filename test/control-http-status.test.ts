// Every error code has an HTTP status, and every failure becomes one error shape.

import t from 'tap';
import { ERROR_CODES, type ErrorCode, vmError } from '../src/errors.js';
import { toHttpError } from '../src/control/error-reply.js';
import { CODE_TO_STATUS, INTERNAL_CODE } from '../src/control/http-status.js';

t.test('every code in ERROR_CODES has a status in the table', async (t) => {
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    const status = CODE_TO_STATUS[code];
    t.ok(Number.isInteger(status) && status >= 400 && status < 600, `${code} -> ${status}`);
  }
  t.same(Object.keys(CODE_TO_STATUS).sort(), Object.keys(ERROR_CODES).sort(), 'no stale codes in the table');
});

t.test('the statuses the API promises', async (t) => {
  const expected: Partial<Record<ErrorCode, number>> = {
    NOT_FOUND: 404,
    ALREADY_EXISTS: 409,
    NOT_EMPTY: 409,
    CONFLICT: 409,
    INVALID_ARGUMENT: 400,
    NAME_TOO_LONG: 400,
    UNAUTHORIZED: 401,
    READ_ONLY: 409,
    NO_SPACE: 507,
    CORRUPT_SEGMENT: 500,
    MISSING_SEGMENT: 500,
    CLOSED: 503,
    NOT_SUPPORTED: 501,
  };
  for (const [code, status] of Object.entries(expected)) t.equal(CODE_TO_STATUS[code as ErrorCode], status, code);
});

t.test('VmvaultError: status from the table, message and simple details kept', async (t) => {
  const r = toHttpError(vmError('CORRUPT_SEGMENT', 'segment 3fa1 in container 000123 at offset 81920 failed verification', { container: 123, nested: { x: 1 } }));
  t.equal(r.status, 500);
  t.same(r.body, { error: { code: 'CORRUPT_SEGMENT', message: 'segment 3fa1 in container 000123 at offset 81920 failed verification', container: 123 } });
  t.equal(r.internal, false);
});

t.test("Fastify's request errors keep their 4xx", async (t) => {
  const validation = [{ instancePath: '/name', keyword: 'type', params: { type: 'string' }, data: 5, parentSchema: { title: 'share name' } }];
  const r = toHttpError(Object.assign(new Error('body/name must be string'), { statusCode: 400, validation, validationContext: 'body' }));
  t.same(r, { status: 400, body: { error: { code: 'INVALID_ARGUMENT', message: 'the share name must be a string, not number 5' } }, internal: false }, 'in our words, not AJV\'s');
  const big = toHttpError(Object.assign(new Error('Request body is too large'), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' }));
  t.equal(big.status, 413);
  t.match(big.body.error.message, /larger than the appliance accepts/);
});

t.test('a Node system error is typed on the way out', async (t) => {
  const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write', errno: -28 });
  const r = toHttpError(enospc);
  t.equal(r.status, 507);
  t.equal(r.body.error.code, 'NO_SPACE');
});

t.test('anything else is 500 INTERNAL without its details', async (t) => {
  const r = toHttpError(new TypeError("Cannot read properties of undefined (reading 'secret')"));
  t.equal(r.status, 500);
  t.equal(r.body.error.code, INTERNAL_CODE);
  t.notMatch(r.body.error.message, /secret/);
  t.equal(r.internal, true);
});
