import type { FastifyInstance } from 'fastify';
import { validateName } from '../../namespace/names.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody, shareName, shareSummary } from '../schemas.js';
import type { RouteDeps } from './deps.js';

const shareParams = { type: 'object', required: ['name'], properties: { name: shareName } } as const;

export async function shareRoutes(app: FastifyInstance, { services }: RouteDeps): Promise<void> {
  app.get(
    '/shares',
    {
      schema: routeSchema({
        operationId: 'listShares',
        summary: 'List shares',
        tags: ['shares'],
        response: {
          200: { type: 'object', required: ['shares'], properties: { shares: { type: 'array', items: shareSummary } } },
          401: commonErrors[401],
        },
      }),
    },
    async () => ({ shares: await services.listShares() }),
  );

  app.post<{ Body: { name: string } }>(
    '/shares',
    {
      schema: routeSchema({
        operationId: 'createShare',
        summary: 'Create an empty share (a top-level directory of the mount)',
        tags: ['shares'],
        body: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: shareName } },
        response: {
          201: { description: 'Created.', ...shareSummary },
          ...commonErrors,
          409: { description: 'A share with that name exists.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      validateName('share', request.body.name);
      const share = await services.createShare(request.body.name);
      return reply.code(201).header('location', `${app.prefix}/shares/${encodeURIComponent(share.name)}`).send(share);
    },
  );

  app.get<{ Params: { name: string } }>(
    '/shares/:name',
    {
      schema: routeSchema({
        operationId: 'getShare',
        summary: 'One share',
        tags: ['shares'],
        params: shareParams,
        response: { 200: shareSummary, 400: commonErrors[400], 401: commonErrors[401], 404: { description: 'No such share.', ...errorBody } },
      }),
    },
    async (request) => {
      validateName('share', request.params.name);
      return services.getShare(request.params.name);
    },
  );

  app.delete<{ Params: { name: string }; Querystring: { force?: 'true' | 'false'; deleteSnapshots?: 'true' | 'false' } }>(
    '/shares/:name',
    {
      schema: routeSchema({
        operationId: 'deleteShare',
        summary: 'Delete a share; refused while it has files (unless force=true) or snapshots (unless deleteSnapshots=true)',
        tags: ['shares'],
        params: shareParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            force: { type: 'string', title: 'force parameter', enum: ['true', 'false'], description: "Delete the share's files too." },
            deleteSnapshots: {
              type: 'string',
              title: 'deleteSnapshots parameter',
              enum: ['true', 'false'],
              description: "Delete the share's snapshots too; force alone never does. Without it, the refusal names them.",
            },
          },
        },
        response: {
          204: { description: 'Deleted.' },
          ...commonErrors,
          404: { description: 'No such share.', ...errorBody },
          409: { description: 'The share has files or snapshots the flags do not allow deleting (NOT_EMPTY); the message names them.', ...errorBody },
          423: { description: 'A snapshot of the share is under a retention lock (LOCKED), whatever the flags; the message names it and when its lock ends.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      validateName('share', request.params.name);
      const { force, deleteSnapshots } = request.query;
      await services.deleteShare(request.params.name, { force: force === 'true', deleteSnapshots: deleteSnapshots === 'true' });
      return reply.code(204).send();
    },
  );
}
