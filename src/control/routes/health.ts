// Liveness without a token, for load balancers and `vmvault` itself to find the appliance. It
// says only whether the appliance serves and its version: nothing about data.

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
  },
} as const;

export async function healthRoutes(app: FastifyInstance, { services }: RouteDeps): Promise<void> {
  app.get(
    '/health',
    {
      config: { public: true },
      schema: routeSchema({
        operationId: 'getHealth',
        summary: 'Whether the appliance is serving (no token needed)',
        tags: ['appliance'],
        response: {
          200: { description: 'Serving (possibly degraded).', ...healthBody },
          503: { description: 'Shutting down.', ...healthBody },
        },
      }),
    },
    async (_request, reply) => {
      const h = await services.health();
      const body: Record<string, string> = { status: h.status, version: services.version };
      if (h.detail !== undefined) body.detail = h.detail;
      return reply.code(h.status === 'closing' ? 503 : 200).send(body);
    },
  );
}
