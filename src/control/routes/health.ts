// Liveness without a token, for load balancers, service managers and `vmvault` itself. It says
// whether the appliance serves, whether its mount and store work, and its version: nothing about
// data (no share names, sizes or paths inside the store). Anything but "ok" is a 503, so a plain
// HTTP check sees a lost mount or an unwritable store.

import type { FastifyInstance } from 'fastify';
import { routeSchema } from '../openapi.js';
import type { RouteDeps } from './deps.js';

const healthBody = {
  type: 'object',
  required: ['status', 'version'],
  properties: {
    status: { type: 'string', enum: ['ok', 'degraded', 'closing'] },
    version: { type: 'string' },
    detail: { type: 'string' },
    mount: {
      type: 'object',
      required: ['path', 'mounted', 'answering', 'remounts'],
      properties: {
        path: { type: 'string', description: 'The mount point.' },
        mounted: { type: 'boolean', description: "The appliance's FUSE mount is attached at the path." },
        answering: { type: 'boolean', description: 'A lookup through the mount was answered in time.' },
        remounts: { type: 'integer', description: 'Times the mount vanished (unmounted by someone else) and was mounted again.' },
      },
    },
    exports: {
      type: 'array',
      description: 'The export servers the appliance supervises (nfs-ganesha, smbd).',
      items: {
        type: 'object',
        required: ['protocol', 'server', 'wanted', 'running', 'listening', 'port', 'restarts'],
        properties: {
          protocol: { type: 'string', enum: ['nfs', 'smb'] },
          server: { type: 'string' },
          wanted: { type: 'boolean', description: 'It has exports to serve.' },
          running: { type: 'boolean' },
          listening: { type: 'boolean', description: 'Its port accepts connections.' },
          port: { type: 'integer' },
          pid: { type: 'integer' },
          restarts: { type: 'integer', description: 'Times it died and was started again since the appliance started.' },
          lastError: { type: 'string' },
        },
      },
    },
    store: {
      type: 'object',
      required: ['open', 'writable'],
      properties: {
        open: { type: 'boolean', description: 'The store and its index database are open and readable.' },
        writable: { type: 'boolean', description: 'The data directory takes a small fsynced write and the disk is not full.' },
      },
    },
  },
} as const;

export async function healthRoutes(app: FastifyInstance, { services }: RouteDeps): Promise<void> {
  app.get(
    '/health',
    {
      config: { public: true },
      schema: routeSchema({
        operationId: 'getHealth',
        summary: 'Whether the appliance is serving, with the state of its mount and store (no token needed)',
        tags: ['appliance'],
        response: {
          200: { description: 'Serving; mount and store work.', ...healthBody },
          503: { description: 'Degraded (detail says why) or shutting down.', ...healthBody },
        },
      }),
    },
    async (_request, reply) => {
      const h = await services.health();
      const body: Record<string, unknown> = { status: h.status, version: services.version };
      if (h.detail !== undefined) body.detail = h.detail;
      if (h.mount !== undefined) body.mount = h.mount;
      if (h.store !== undefined) body.store = h.store;
      if (h.exports !== undefined) body.exports = h.exports;
      return reply.code(h.status === 'ok' ? 200 : 503).send(body);
    },
  );
}
