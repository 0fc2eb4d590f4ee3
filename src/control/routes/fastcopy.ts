import type { FastifyInstance } from 'fastify';
import { validateName, validatePathInShare } from '../../namespace/names.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody, pathInShare, shareName } from '../schemas.js';
import type { RouteDeps } from './deps.js';

const fastcopyResult = {
  type: 'object',
  required: ['share', 'from', 'to', 'logicalBytes'],
  properties: { share: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, logicalBytes: { type: 'number' } },
} as const;

export async function fastcopyRoutes(app: FastifyInstance, { services }: RouteDeps): Promise<void> {
  app.post<{ Params: { share: string }; Body: { from: string; to: string } }>(
    '/shares/:share/fastcopy',
    {
      schema: routeSchema({
        operationId: 'fastcopy',
        summary: 'Copy a file inside a share by reference: instant, no new space',
        tags: ['files'],
        params: { type: 'object', required: ['share'], properties: { share: shareName } },
        body: { type: 'object', required: ['from', 'to'], additionalProperties: false, properties: { from: pathInShare, to: pathInShare } },
        response: {
          201: { description: 'Copied.', ...fastcopyResult },
          ...commonErrors,
          404: { description: 'No such share or source file.', ...errorBody },
          409: { description: 'The target exists, or source or target is a directory.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      const { share } = request.params;
      const { from, to } = request.body;
      validateName('share', share);
      validatePathInShare(from, 'from');
      validatePathInShare(to, 'to');
      return reply.code(201).send(await services.fastcopy(share, from, to));
    },
  );
}
