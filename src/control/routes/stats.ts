import type { FastifyInstance } from 'fastify';
import { routeSchema } from '../openapi.js';
import { commonErrors, statsReport } from '../schemas.js';
import type { RouteDeps } from './deps.js';

export async function statsRoutes(app: FastifyInstance, { services }: RouteDeps): Promise<void> {
  app.get(
    '/stats',
    {
      schema: routeSchema({
        operationId: 'getStats',
        summary: 'Logical vs stored bytes, dedup and compression ratios, counts',
        tags: ['appliance'],
        response: { 200: statsReport, 401: commonErrors[401] },
      }),
    },
    async () => services.stats(),
  );
}
