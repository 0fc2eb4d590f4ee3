// Every failure an HTTP client sees goes through here: VmvaultErrors by the code table,
// Fastify's own request errors (validation, bad JSON, media type, body size) as the 4xx Fastify
// chose with our words (validation-message.ts for schema failures), and anything else (a bug) as 500 INTERNAL without its details, which go to the log.

import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { type ErrorCode, fromSystemError, isVmvaultError } from '../errors.js';
import { INTERNAL_CODE, statusFor } from './http-status.js';
import { type AjvError, validationMessage } from './validation-message.js';

export interface ErrorBody {
  error: { code: string; message: string; [detail: string]: unknown };
}

// For Fastify's 4xx errors, which carry no code of ours.
const STATUS_TO_CODE: Record<number, ErrorCode> = { 401: 'UNAUTHORIZED', 404: 'NOT_FOUND', 409: 'CONFLICT' };

// Where Fastify's own words would not tell a person what to change.
const FASTIFY_MESSAGES: Record<string, string> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'the body must be JSON, sent with Content-Type: application/json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'the request body is larger than the appliance accepts',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'the request says its body is JSON but sends none: send a JSON object, or no Content-Type',
  FST_ERR_CTP_INVALID_JSON_BODY: 'the request body is not valid JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'the Content-Length header does not match the body',
};

export function toHttpError(err: unknown): { status: number; body: ErrorBody; internal: boolean } {
  if (isSystemError(err)) err = fromSystemError(err, 'the appliance');
  if (isVmvaultError(err)) {
    const body: ErrorBody = { error: { ...primitiveDetails(err.details), code: err.code, message: err.message } };
    return { status: statusFor(err.code), body, internal: false };
  }
  const fe = err as Partial<FastifyError> | null;
  const status = fe?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const validation = (fe as { validation?: AjvError[] }).validation;
    const message = Array.isArray(validation)
      ? validationMessage(validation, (fe as { validationContext?: string }).validationContext ?? 'body')
      : FASTIFY_MESSAGES[fe?.code ?? ''] ?? (typeof fe?.message === 'string' && fe.message !== '' ? fe.message : 'bad request');
    return { status, body: { error: { code: STATUS_TO_CODE[status] ?? 'INVALID_ARGUMENT', message } }, internal: false };
  }
  return { status: 500, body: { error: { code: INTERNAL_CODE, message: 'internal error; see the appliance log' } }, internal: true };
}

// A Node system error (ENOSPC from a write) that a layer below let through untyped.
function isSystemError(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException | null;
  return e instanceof Error && typeof e.syscall === 'string' && typeof e.code === 'string';
}

// Details such as a conflicting job's id or a damaged container's number help the caller;
// nested objects (causes, stacks) stay in the log.
function primitiveDetails(details: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(details ?? {})) {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[k] = v;
  }
  return out;
}

// The code each failed reply carried, for the audit log's onResponse hook.
const sentCodes = new WeakMap<FastifyReply, string>();

/** The error code sendError() answered with, or null if the reply was not an error. */
export function sentErrorCode(reply: FastifyReply): string | null {
  return sentCodes.get(reply) ?? null;
}

export function sendError(err: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const { status, body, internal } = toHttpError(err);
  sentCodes.set(reply, body.error.code);
  if (internal) request.log.error({ err }, 'unexpected error');
  // Pre-serialized so a route's response schema cannot drop the detail fields.
  return reply.code(status).type('application/json; charset=utf-8').send(JSON.stringify(body));
}
