// Store maintenance started as jobs: the request returns 202 with the job id at once; progress
// and the result are read from /jobs/{id}.

import type { FastifyInstance, FastifyReply } from 'fastify';
import { validateName } from '../../namespace/names.js';
import { vmError } from '../../errors.js';
import type { JobKind, JobBody } from '../jobs.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody, jobStarted, noOptionsBody, shareName, snapshotName } from '../schemas.js';
import type { VerifyTarget } from '../services.js';
import type { RouteDeps } from './deps.js';

const started = { description: 'Started; poll /api/v1/jobs/{job}.', ...jobStarted };
const busy = { description: 'A conflicting job is running; error.job is its id.', ...errorBody };

export async function maintenanceRoutes(app: FastifyInstance, { services, jobs }: RouteDeps): Promise<void> {
  const start = (reply: FastifyReply, kind: JobKind, target: string, body: JobBody) => {
    const job = jobs.start(kind, target, body);
    return reply.code(202).header('location', `${app.prefix}/jobs/${job.id}`).send({ job: job.id });
  };

  app.post(
    '/gc',
    {
      schema: routeSchema({
        operationId: 'startGc',
        summary: 'Start garbage collection (one at a time)',
        tags: ['jobs'],
        body: noOptionsBody,
        bodyOptional: true,
        response: { 202: started, ...commonErrors, 409: busy },
      }),
    },
    async (_request, reply) => start(reply, 'gc', 'store', (ctx) => services.gc(ctx)),
  );

  app.post<{ Body: VerifyTarget | undefined }>(
    '/verify',
    {
      schema: routeSchema({
        operationId: 'startVerify',
        summary: 'Start verification of the whole store, one share, or one snapshot',
        tags: ['jobs'],
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            share: shareName,
            snapshot: { ...snapshotName, description: `Needs share. ${snapshotName.description}` },
            full: { type: 'boolean', title: 'full flag', description: 'Re-read and re-hash every segment.' },
            repair: { type: 'boolean', title: 'repair flag', description: 'Repair damaged segments from clone or DR copies of the points that reach them, then verify again.' },
          },
        },
        bodyOptional: true,
        response: { 202: started, ...commonErrors, 404: { description: 'No such share or snapshot.', ...errorBody }, 409: busy },
      }),
    },
    async (request, reply) => {
      const target: VerifyTarget = { ...request.body };
      let label = 'store';
      if (target.snapshot !== undefined && target.share === undefined) {
        throw vmError('INVALID_ARGUMENT', 'snapshot needs share: verify {"share": "vms", "snapshot": "nightly"}');
      }
      if (target.share !== undefined) {
        validateName('share', target.share);
        if (target.snapshot !== undefined) {
          validateName('snapshot', target.snapshot);
          await services.getSnapshot(target.share, target.snapshot);
          label = `snapshot ${target.share}/${target.snapshot}`;
        } else {
          await services.getShare(target.share);
          label = `share ${target.share}`;
        }
      }
      if (target.full === true) label += ' (full)';
      if (target.repair === true) label += ' (repair)';
      return start(reply, 'verify', label, (ctx) => services.verify(ctx, target));
    },
  );

  app.post(
    '/index/rebuild',
    {
      schema: routeSchema({
        operationId: 'startIndexRebuild',
        summary: 'Start rebuilding the segment index from the containers',
        tags: ['jobs'],
        body: noOptionsBody,
        bodyOptional: true,
        response: { 202: started, ...commonErrors, 409: busy },
      }),
    },
    async (_request, reply) => start(reply, 'index-rebuild', 'store', (ctx) => services.rebuildIndex(ctx)),
  );
}
