import type { FastifyInstance } from 'fastify';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody, jobId, jobView } from '../schemas.js';
import type { RouteDeps } from './deps.js';

const idParams = { type: 'object', required: ['id'], properties: { id: jobId } } as const;
const notFound = { description: 'No such job (or it left the history).', ...errorBody };

export async function jobRoutes(app: FastifyInstance, { jobs }: RouteDeps): Promise<void> {
  app.get(
    '/jobs',
    {
      schema: routeSchema({
        operationId: 'listJobs',
        summary: 'Running and recent jobs, newest first',
        tags: ['jobs'],
        response: { 200: { type: 'object', required: ['jobs'], properties: { jobs: { type: 'array', items: jobView } } }, 401: commonErrors[401] },
      }),
    },
    async () => ({ jobs: jobs.list() }),
  );

  app.get<{ Params: { id: string } }>(
    '/jobs/:id',
    {
      schema: routeSchema({
        operationId: 'getJob',
        summary: 'State, progress, rate, ETA, and the result or error of a job',
        tags: ['jobs'],
        params: idParams,
        response: { 200: jobView, 400: commonErrors[400], 401: commonErrors[401], 404: notFound },
      }),
    },
    async (request) => jobs.get(request.params.id),
  );

  app.delete<{ Params: { id: string } }>(
    '/jobs/:id',
    {
      schema: routeSchema({
        operationId: 'cancelJob',
        summary: 'Cancel a queued or running job; it ends "cancelled" once it has stopped',
        tags: ['jobs'],
        params: idParams,
        response: {
          202: { description: 'Cancellation requested.', ...jobView },
          ...commonErrors,
          404: notFound,
          409: { description: 'The job has already ended.', ...errorBody },
        },
      }),
    },
    async (request, reply) => reply.code(202).send(jobs.cancel(request.params.id)),
  );
}
