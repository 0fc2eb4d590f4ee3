import type { FastifyInstance } from 'fastify';
import { validateName, validatePathInShare } from '../../namespace/names.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody, fastcopyResult, pathInShare, shareName, sourceSharePath, targetSharePath } from '../schemas.js';
import type { RouteDeps } from './deps.js';

const shareFastcopyResult = {
  type: 'object',
  required: ['share', 'from', 'to', 'logicalBytes'],
  properties: { share: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, logicalBytes: { type: 'number' } },
} as const;

export async function fastcopyRoutes(app: FastifyInstance, { services }: RouteDeps): Promise<void> {
  app.post<{ Body: { from: string; to: string } }>(
    '/fastcopy',
    {
      schema: routeSchema({
        operationId: 'fastcopy',
        summary: 'Copy a file or directory by reference, out of a snapshot or across shares: instant, no new space',
        description:
          'Restores a file or a tree from `<share>/.snapshots/<snapshot>/...` into a share, or copies between shares. Only metadata is written: the copy shares every segment with its source, so stored bytes do not grow.',
        tags: ['files'],
        body: { type: 'object', required: ['from', 'to'], additionalProperties: false, properties: { from: sourceSharePath, to: targetSharePath } },
        response: {
          201: { description: 'Copied.', ...fastcopyResult },
          ...commonErrors,
          404: { description: 'No such share, snapshot, source, or target directory.', ...errorBody },
          409: { description: 'The target exists, or a component of a path is not a directory.', ...errorBody },
        },
      }),
    },
    async (request, reply) => reply.code(201).send(await services.fastcopy(request.body.from, request.body.to)),
  );

  app.post<{ Params: { share: string }; Body: { from: string; to: string } }>(
    '/shares/:share/fastcopy',
    {
      schema: routeSchema({
        operationId: 'fastcopyInShare',
        summary: 'Copy a file or directory inside a share by reference: instant, no new space (POST /fastcopy also copies out of snapshots and across shares)',
        tags: ['files'],
        params: { type: 'object', required: ['share'], properties: { share: shareName } },
        body: {
          type: 'object',
          required: ['from', 'to'],
          additionalProperties: false,
          properties: { from: { ...pathInShare, title: 'source path' }, to: { ...pathInShare, title: 'target path' } },
        },
        response: {
          201: { description: 'Copied.', ...shareFastcopyResult },
          ...commonErrors,
          404: { description: 'No such share or source file.', ...errorBody },
          409: { description: 'The target exists.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      const { share } = request.params;
      const { from, to } = request.body;
      validateName('share', share);
      validatePathInShare(from, 'from');
      validatePathInShare(to, 'to');
      const r = await services.fastcopy(`${share}/${from}`, `${share}/${to}`);
      const rel = (p: string) => p.slice(share.length + 1);
      return reply.code(201).send({ share, from: rel(r.from), to: rel(r.to), logicalBytes: r.logicalBytes });
    },
  );
}
