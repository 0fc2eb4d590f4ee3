// Bearer-token check, run before the body is read so an unauthenticated caller learns nothing
// (not whether a route exists, not whether its body would parse). Routes opt out with
// `config: { public: true }` (health, the OpenAPI document).
//
// Two kinds of token: the admin token (every route) and agent tokens (agent-tokens.ts), which
// work only on routes that opt in with `config: { agent: true }` and get 403 elsewhere. The
// hook sets `request.caller`. Failed authentications are counted per address; past the limit
// the address gets 429 with Retry-After until its window passes.

import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type VmvaultError, vmError } from '../errors.js';
import type { AgentTokens } from './agent-tokens.js';

export type Caller = { kind: 'admin' } | { kind: 'agent'; name: string; trusted?: boolean; replication?: boolean } | { kind: 'anonymous' };

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Served without a token. */
    public?: boolean;
    /** Agent tokens may call this route too (admin tokens may call every route). */
    agent?: boolean;
    /** Replication tokens (another appliance sending clone copies) may call this route. */
    replication?: boolean;
  }
  interface FastifyRequest {
    /** Who the token says is calling; set by the auth hook (anonymous on public routes without one). */
    caller: Caller;
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

export function presentedToken(header: string | undefined): string | undefined {
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
  const c = request.caller as Caller | undefined;
  if (c?.kind === 'agent') return `agent:${c.name}`;
  if (c?.kind === 'admin') return 'admin';
  return carriesToken(token, request) ? 'admin' : 'anonymous';
}

/** One answer for missing, malformed and wrong tokens. */
export function unauthorized(reply: FastifyReply): VmvaultError {
  reply.header('www-authenticate', 'Bearer realm="vmvault"');
  return vmError('UNAUTHORIZED', 'a valid API token is required (Authorization: Bearer <token>)');
}

/** Who a request's token names, whatever the route. */
export function identify(token: string, agents: AgentTokens | undefined, request: FastifyRequest): Caller {
  const presented = presentedToken(request.headers.authorization);
  if (presented === undefined) return { kind: 'anonymous' };
  if (tokenMatches(token, presented)) return { kind: 'admin' };
  const a = agents?.lookup(presented);
  return a ? { kind: 'agent', name: a.name, trusted: a.trusted, ...(a.scope === 'replication' ? { replication: true } : {}) } : { kind: 'anonymous' };
}

/** Failed authentications per address: `limit` within `windowMs`, then 429 until the window ends. */
export class AuthFailureLimiter {
  private readonly failures = new Map<string, { count: number; since: number }>();

  constructor(
    readonly limit = 60,
    readonly windowMs = 60_000,
  ) {}

  /** Milliseconds the address must wait, or 0. */
  blockedFor(ip: string, now = Date.now()): number {
    const f = this.failures.get(ip);
    if (!f) return 0;
    if (now - f.since >= this.windowMs) {
      this.failures.delete(ip);
      return 0;
    }
    return f.count >= this.limit ? this.windowMs - (now - f.since) : 0;
  }

  fail(ip: string, now = Date.now()): void {
    const f = this.failures.get(ip);
    if (!f || now - f.since >= this.windowMs) this.failures.set(ip, { count: 1, since: now });
    else f.count++;
    // Bounded: a flood from many addresses cannot grow the table without end.
    if (this.failures.size > 10_000) {
      for (const [k, v] of this.failures) if (now - v.since >= this.windowMs) this.failures.delete(k);
      if (this.failures.size > 10_000) this.failures.clear();
    }
  }
}

export function rateLimited(reply: FastifyReply, waitMs: number): VmvaultError {
  const s = Math.max(1, Math.ceil(waitMs / 1000));
  reply.header('retry-after', String(s));
  return vmError('RATE_LIMITED', `too many failed authentications from this address; retry in ${s} s`);
}

export function makeAuthHook(token: string, agents?: AgentTokens, limiter = new AuthFailureLimiter()) {
  return async function auth(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const isPublic = request.routeOptions?.config?.public === true;
    const caller = identify(token, agents, request);
    request.caller = caller;
    if (caller.kind === 'admin') return;
    if (caller.kind === 'agent' && caller.replication === true) {
      if (isPublic || request.routeOptions?.config?.replication === true) return;
      throw vmError('FORBIDDEN', `replication token ${caller.name} may not call ${request.method} ${request.routeOptions?.url ?? 'this route'}: replication tokens send clone copies only`);
    }
    if (caller.kind === 'agent') {
      if (isPublic || request.routeOptions?.config?.agent === true) return;
      throw vmError('FORBIDDEN', `agent token ${caller.name} may not call ${request.method} ${request.routeOptions?.url ?? 'this route'}: agent tokens are for agent work only`);
    }
    if (isPublic) return;
    const wait = limiter.blockedFor(request.ip);
    if (wait > 0) throw rateLimited(reply, wait);
    limiter.fail(request.ip);
    throw unauthorized(reply);
  };
}
