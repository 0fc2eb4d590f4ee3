// Bearer-token check, run before the body is read so an unauthenticated caller learns nothing
// (not whether a route exists, not whether its body would parse). Routes opt out with
// `config: { public: true }` (health, the OpenAPI document).

import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type VmvaultError, vmError } from '../errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Served without a token. */
    public?: boolean;
  }
}

// Hashing both sides first gives equal-length inputs, so timingSafeEqual neither throws nor
// leaks the token's length.
function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export function tokenMatches(expected: string, presented: string): boolean {
  return timingSafeEqual(digest(expected), digest(presented));
}

function presentedToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer +(\S+) *$/i.exec(header);
  return m?.[1];
}

/** Whether the request carries the token (routes marked public need none). */
export function isAuthorized(token: string, request: FastifyRequest): boolean {
  if (request.routeOptions?.config?.public === true) return true;
  return carriesToken(token, request);
}

/** Whether the request presents the valid token, whatever the route. */
export function carriesToken(token: string, request: FastifyRequest): boolean {
  const presented = presentedToken(request.headers.authorization);
  return presented !== undefined && tokenMatches(token, presented);
}

/**
 * The name of the token a request carries, for the audit log: "admin" for the one admin token
 * there is today (agent tokens will have their own names), "anonymous" for none or a wrong one.
 */
export function callerName(token: string, request: FastifyRequest): string {
  return carriesToken(token, request) ? 'admin' : 'anonymous';
}

/** One answer for missing, malformed and wrong tokens. */
export function unauthorized(reply: FastifyReply): VmvaultError {
  reply.header('www-authenticate', 'Bearer realm="vmvault"');
  return vmError('UNAUTHORIZED', 'a valid API token is required (Authorization: Bearer <token>)');
}

export function makeAuthHook(token: string) {
  return async function auth(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!isAuthorized(token, request)) throw unauthorized(reply);
  };
}
