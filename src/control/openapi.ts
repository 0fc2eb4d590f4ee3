// The OpenAPI document, generated from the very schemas Fastify validates with (collected by an
// onRoute hook), so it lists exactly the routes that exist. Written here rather than taken from
// @fastify/swagger: our schemas are plain inline JSON Schema and the conversion is a page,
// while the plug-in would bring a UI, YAML and $ref machinery we do not use.

import type { FastifySchema, RouteOptions } from 'fastify';
import { backupRecord, gcResult, restoreResult, verifyResult } from './schemas.js';

/** The route schema as our routes write it: Fastify's parts plus documentation fields. */
export interface RouteSchema {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  params?: JsonSchema;
  querystring?: JsonSchema;
  body?: JsonSchema;
  /** The body may be absent (POST /gc with no options). */
  bodyOptional?: boolean;
  response: Record<string, JsonSchema>;
}

export type JsonSchema = { readonly [k: string]: unknown };

/** Fastify reads the parts it knows and leaves the documentation fields for the collector. */
export function routeSchema(s: RouteSchema): FastifySchema {
  return s as unknown as FastifySchema;
}

interface CollectedRoute {
  method: string;
  url: string;
  schema: RouteSchema;
  isPublic: boolean;
}

export class OpenApiCollector {
  private readonly routes: CollectedRoute[] = [];

  /** Pass to app.addHook('onRoute', ...) before any route is registered. */
  readonly onRoute = (opts: RouteOptions): void => {
    const schema = opts.schema as RouteSchema | undefined;
    if (schema?.operationId === undefined) return;
    const methods = Array.isArray(opts.method) ? opts.method : [opts.method];
    const isPublic = opts.config?.public === true;
    for (const method of methods) {
      if (method === 'HEAD') continue;
      this.routes.push({ method: method.toLowerCase(), url: opts.url, schema, isPublic });
    }
  };

  document(info: { title: string; version: string }): Record<string, unknown> {
    const paths: Record<string, Record<string, unknown>> = {};
    for (const r of this.routes) {
      const path = r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
      (paths[path] ??= {})[r.method] = operation(r);
    }
    return {
      openapi: '3.1.0',
      info: {
        ...info,
        description: 'vmvault control plane. Every route but health and this document needs `Authorization: Bearer <token>` (the token is in <data>/api-token). Errors are `{"error": {"code", "message"}}`.',
      },
      servers: [{ url: '/' }],
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } }, schemas: { GcResult: gcResult, VerifyResult: verifyResult, BackupRecord: backupRecord, RestoreResult: restoreResult } },
      security: [{ bearer: [] }],
      paths,
    };
  }
}

function operation(r: CollectedRoute): Record<string, unknown> {
  const s = r.schema;
  const op: Record<string, unknown> = { operationId: s.operationId, summary: s.summary, tags: s.tags };
  if (s.description !== undefined) op.description = s.description;
  if (r.isPublic) op.security = [];
  const parameters = [...parametersOf(s.params, 'path'), ...parametersOf(s.querystring, 'query')];
  if (parameters.length > 0) op.parameters = parameters;
  if (s.body !== undefined) {
    op.requestBody = { required: s.bodyOptional !== true, content: { 'application/json': { schema: s.body } } };
  }
  const responses: Record<string, unknown> = {};
  for (const [status, schema] of Object.entries(s.response)) {
    const { description, ...body } = schema as { description?: string };
    const entry: Record<string, unknown> = { description: description ?? defaultDescription(status) };
    if (status !== '204') entry.content = { 'application/json': { schema: body } };
    responses[status] = entry;
  }
  op.responses = responses;
  return op;
}

function parametersOf(schema: JsonSchema | undefined, where: 'path' | 'query'): Array<Record<string, unknown>> {
  if (schema === undefined) return [];
  const props = (schema.properties ?? {}) as Record<string, { description?: string }>;
  const required = new Set((schema.required ?? []) as string[]);
  return Object.entries(props).map(([name, prop]) => {
    const { description, ...rest } = prop;
    return { name, in: where, required: where === 'path' || required.has(name), description, schema: rest };
  });
}

function defaultDescription(status: string): string {
  return status.startsWith('2') ? 'Success.' : 'Error.';
}
