import type { FastifyInstance } from 'fastify';
import { validateName } from '../../namespace/names.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody, shareName, shareSummary, snapshotName, snapshotSummary } from '../schemas.js';
import type { RouteDeps } from './deps.js';

const shareParams = { type: 'object', required: ['share'], properties: { share: shareName } } as const;
const snapParams = { type: 'object', required: ['share', 'snap'], properties: { share: shareName, snap: snapshotName } } as const;
const nameBody = (what: object) =>
  ({ type: 'object', required: ['name'], additionalProperties: false, properties: { name: what } }) as const;
const notFound = { description: 'No such share or snapshot.', ...errorBody };

type SnapParams = { share: string; snap: string };

export async function snapshotRoutes(app: FastifyInstance, { services }: RouteDeps): Promise<void> {
  app.get<{ Params: { share: string } }>(
    '/shares/:share/snapshots',
    {
      schema: routeSchema({
        operationId: 'listSnapshots',
        summary: "List a share's snapshots",
        tags: ['snapshots'],
        params: shareParams,
        response: {
          200: { type: 'object', required: ['snapshots'], properties: { snapshots: { type: 'array', items: snapshotSummary } } },
          400: commonErrors[400],
          401: commonErrors[401],
          404: notFound,
        },
      }),
    },
    async (request) => {
      validateName('share', request.params.share);
      return { snapshots: await services.listSnapshots(request.params.share) };
    },
  );

  app.post<{ Params: { share: string }; Body: { name: string } }>(
    '/shares/:share/snapshots',
    {
      schema: routeSchema({
        operationId: 'createSnapshot',
        summary: 'Take a read-only, point-in-time snapshot, seen at <share>/.snapshots/<name>/',
        tags: ['snapshots'],
        params: shareParams,
        body: nameBody(snapshotName),
        response: { 201: { description: 'Created.', ...snapshotSummary }, ...commonErrors, 404: notFound, 409: { description: 'A snapshot with that name exists.', ...errorBody } },
      }),
    },
    async (request, reply) => {
      const { share } = request.params;
      validateName('share', share);
      validateName('snapshot', request.body.name);
      const snap = await services.createSnapshot(share, request.body.name);
      return reply
        .code(201)
        .header('location', `${app.prefix}/shares/${encodeURIComponent(share)}/snapshots/${encodeURIComponent(snap.name)}`)
        .send(snap);
    },
  );

  app.get<{ Params: SnapParams }>(
    '/shares/:share/snapshots/:snap',
    {
      schema: routeSchema({
        operationId: 'getSnapshot',
        summary: 'One snapshot',
        tags: ['snapshots'],
        params: snapParams,
        response: { 200: snapshotSummary, 400: commonErrors[400], 401: commonErrors[401], 404: notFound },
      }),
    },
    async (request) => {
      validateSnapParams(request.params);
      return services.getSnapshot(request.params.share, request.params.snap);
    },
  );

  app.delete<{ Params: SnapParams }>(
    '/shares/:share/snapshots/:snap',
    {
      schema: routeSchema({
        operationId: 'deleteSnapshot',
        summary: 'Delete a snapshot (its space returns at the next GC)',
        tags: ['snapshots'],
        params: snapParams,
        response: {
          204: { description: 'Deleted.' },
          ...commonErrors,
          404: notFound,
          423: { description: 'The snapshot is under a retention lock (LOCKED); the message says when it ends. Nothing lifts it early.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      validateSnapParams(request.params);
      await services.deleteSnapshot(request.params.share, request.params.snap);
      return reply.code(204).send();
    },
  );

  app.post<{ Params: SnapParams; Body: { name: string } }>(
    '/shares/:share/snapshots/:snap/clone',
    {
      schema: routeSchema({
        operationId: 'cloneSnapshot',
        summary: 'Make a new writable share from a snapshot, sharing every segment',
        tags: ['snapshots'],
        params: snapParams,
        body: nameBody({ ...shareName, title: 'new share name', description: `Name of the new share. ${shareName.description}` }),
        response: { 201: { description: 'The new share.', ...shareSummary }, ...commonErrors, 404: notFound, 409: { description: 'A share with that name exists.', ...errorBody } },
      }),
    },
    async (request, reply) => {
      validateSnapParams(request.params);
      validateName('share', request.body.name);
      const share = await services.cloneSnapshot(request.params.share, request.params.snap, request.body.name);
      return reply.code(201).header('location', `${app.prefix}/shares/${encodeURIComponent(share.name)}`).send(share);
    },
  );
}

function validateSnapParams(p: SnapParams): void {
  validateName('share', p.share);
  validateName('snapshot', p.snap);
}
