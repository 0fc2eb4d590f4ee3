// Builds the control plane as a Fastify instance, without listening (listen.ts does that), so
// tests drive it with inject().

import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { AgentPool } from '../backup/agent-pool.js';
import { vmError } from '../errors.js';
import { AUDIT_VERSION, type AuditLog } from './audit-log.js';
import { auditTarget } from './audit-target.js';
import { AuthFailureLimiter, callerName, identify, isAuthorized, makeAuthHook, unauthorized } from './auth.js';
import type { AgentTokens } from './agent-tokens.js';
import { API_PREFIX } from './defaults.js';
import { sendError, sentErrorCode } from './error-reply.js';
import { JobRunner } from './jobs.js';
import { OpenApiCollector, type RouteSchema, routeSchema } from './openapi.js';
import { agentRoutes } from './routes/agents.js';
import { hostRoutes } from './routes/hosts.js';
import type { HostsControl } from './hosts-control.js';
import { backupRoutes } from './routes/backups.js';
import { exportRoutes } from './routes/exports.js';
import type { CatalogApi } from './catalog-api.js';
import { catalogRoutes } from './routes/catalog.js';
import { fastcopyRoutes } from './routes/fastcopy.js';
import { healthRoutes } from './routes/health.js';
import { jobRoutes } from './routes/jobs.js';
import { maintenanceRoutes } from './routes/maintenance.js';
import { shareRoutes } from './routes/shares.js';
import { snapshotRoutes } from './routes/snapshots.js';
import { statsRoutes } from './routes/stats.js';
import { vmRoutes } from './routes/vms.js';
import { agentTokenRoutes } from './routes/agent-tokens.js';
import { transferRoutes } from './routes/transfer.js';
import { policyRoutes } from './routes/policies.js';
import type { PolicyService } from '../policy/policy-service.js';
import type { ControlServices } from './services.js';

/** Every request body here is a few names; anything near this is a mistake or an attack. */
const DEFAULT_BODY_LIMIT = 64 * 1024;

export interface ServerOptions {
  token: string;
  bodyLimit?: number;
  /** Fastify's logger option (default off: the appliance passes its own). */
  logger?: FastifyServerOptions['logger'];
  /** Defaults to a new runner, closed with the server. */
  jobs?: JobRunner;
  /** Where every state-changing call is recorded (audit-log.ts); none if absent. */
  audit?: AuditLog;
  /** Serve HTTPS with this PEM key and certificate (the appliance image's --tls-cert/--tls-key). */
  tls?: { key: Buffer; cert: Buffer };
  /** Agent tokens (agent-tokens.ts); without them only the admin token authenticates. */
  agentTokens?: AgentTokens;
  /** Failed authentications per address before 429 (default 60 a minute). */
  authFailures?: { limit: number; windowMs: number };
  /** The agent pool its /agents routes serve (issue 12). */
  agents?: AgentPool;
  /** The guest-file catalog's routes (issue 15), when the appliance has a catalog. */
  catalog?: CatalogApi;
  /** Protection policies (issue 14): the /policies routes. */
  policies?: PolicyService;
  /** Hosts and the cluster map (issue 13): the /hosts and /cluster routes. */
  hosts?: HostsControl;
}

const AUDITED_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export async function buildServer(services: ControlServices, opts: ServerOptions): Promise<FastifyInstance> {
  if (typeof opts.token !== 'string' || opts.token.length < 16) {
    throw vmError('INVALID_ARGUMENT', 'the control plane needs an API token of at least 16 characters');
  }
  const token = opts.token;
  const app = Fastify({
    ...(opts.tls ? { https: { key: opts.tls.key, cert: opts.tls.cert } } : {}),
    logger: opts.logger ?? false,
    // URLs the router cannot even match (bad percent-encoding, a segment over maxParamLength)
    // never reach the hooks, so they get the token check and our error shape here.
    frameworkErrors: (err, request, reply) => {
      if (!isAuthorized(token, request) && identify(token, opts.agentTokens, request).kind !== 'agent') return sendError(unauthorized(reply), request, reply);
      return sendError(vmError('INVALID_ARGUMENT', frameworkMessage(err.code)), request, reply);
    },
    bodyLimit: opts.bodyLimit ?? DEFAULT_BODY_LIMIT,
    exposeHeadRoutes: false,
    // Long names must reach validateName (and get NAME_TOO_LONG), not fall out of the router as 404.
    routerOptions: { maxParamLength: 16 * 1024 },
    ajv: {
      customOptions: {
        // "name": 5 is a wrong type, not the name "5"; and an unknown field is a typo to report,
        // not something to drop silently.
        coerceTypes: false,
        removeAdditional: false,
        allErrors: false,
        // The failing value and schema travel with each error, for validation-message.ts.
        verbose: true,
      },
    },
  });
  const jobs =
    opts.jobs ??
    new JobRunner({ onInternalError: (job, err) => app.log.error({ err, job: job.id }, `${job.kind} job failed unexpectedly`) });
  const collector = new OpenApiCollector();

  // JSON only: a text/plain body is a client mistake better named by 415 than by a schema error.
  app.removeContentTypeParser('text/plain');
  // A query parameter no route reads is a typo (?forse=true) to report, not to ignore.
  app.addHook('onRoute', (route) => {
    if (route.schema !== undefined && route.schema.querystring === undefined) {
      route.schema = { ...route.schema, querystring: { type: 'object', additionalProperties: false, properties: {} } };
    }
  });
  app.addHook('onRoute', collector.onRoute);
  app.decorateRequest('caller', null as never);
  const limiter = new AuthFailureLimiter(opts.authFailures?.limit, opts.authFailures?.windowMs);
  app.addHook('onRequest', makeAuthHook(token, opts.agentTokens, limiter));
  const audit = opts.audit;
  if (audit !== undefined) {
    app.addHook('onResponse', async (request, reply) => {
      if (!AUDITED_METHODS.has(request.method)) return;
      await audit.append({
        v: AUDIT_VERSION,
        time: new Date().toISOString(),
        caller: callerName(token, request),
        ip: request.ip,
        method: request.method,
        route: request.routeOptions?.url ?? '',
        url: (request.url.split('?')[0] ?? '').slice(0, 512),
        target: auditTarget(request.params, request.body, request.query),
        status: reply.statusCode,
        error: sentErrorCode(reply),
        ms: Math.round(reply.elapsedTime),
      });
    });
  }
  app.addHook('preValidation', async (request) => {
    const schema = request.routeOptions.schema as RouteSchema | undefined;
    if (request.body === undefined) {
      if (schema?.bodyOptional === true) request.body = {};
    } else if (schema !== undefined && schema.body === undefined) {
      // Say so rather than ignore it: {"force": true} on a DELETE would otherwise do nothing.
      throw vmError('INVALID_ARGUMENT', `${request.method} ${request.routeOptions.url} takes no request body`);
    }
  });
  app.setErrorHandler((err, request, reply) => sendError(err, request, reply));
  app.setNotFoundHandler((request, reply) => {
    const what = `${request.method} ${request.url}`.slice(0, 200);
    return sendError(vmError('NOT_FOUND', `no such route: ${what} (see ${API_PREFIX}/openapi.json)`), request, reply);
  });
  app.addHook('onClose', async () => {
    if (opts.jobs === undefined) await jobs.close();
  });

  const deps = { services, jobs, agents: opts.agents, policies: opts.policies };
  await app.register(
    async (api) => {
      await healthRoutes(api, deps);
      await statsRoutes(api, deps);
      await shareRoutes(api, deps);
      await snapshotRoutes(api, deps);
      await fastcopyRoutes(api, deps);
      await maintenanceRoutes(api, deps);
      await jobRoutes(api, deps);
      await vmRoutes(api, deps);
      await backupRoutes(api, deps);
      if (opts.agentTokens !== undefined) await agentTokenRoutes(api, opts.agentTokens);
      await agentRoutes(api, deps);
      await hostRoutes(api, opts.hosts);
      if (services.transfer !== undefined) await transferRoutes(api, services.transfer);
      await exportRoutes(api, deps);
      if (opts.catalog) await catalogRoutes(api, { catalog: opts.catalog, jobs: deps.jobs });
      await policyRoutes(api, deps);
      api.get(
        '/openapi.json',
        {
          config: { public: true },
          schema: routeSchema({
            operationId: 'getOpenApi',
            summary: 'This document (no token needed: it describes the API, not the data)',
            tags: ['appliance'],
            response: { 200: { type: 'object', additionalProperties: true } },
          }),
        },
        async () => collector.document({ title: 'vmvault control plane', version: services.version }),
      );
    },
    { prefix: API_PREFIX },
  );
  return app;
}

function frameworkMessage(code: string): string {
  if (code === 'FST_ERR_MAX_PARAM_LENGTH') return 'a path segment of the URL is too long';
  if (code === 'FST_ERR_BAD_URL') return 'the URL is malformed (bad percent-encoding)';
  return 'the request cannot be routed';
}
