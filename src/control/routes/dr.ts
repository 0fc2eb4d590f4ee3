// The disaster-recovery copy (issue 14): POST /dr/copies starts a `dr-copy` job that copies the
// whole appliance, consistent as of one checkpoint, to a directory destination
// (src/policy/DR-FORMAT.md). Restore and verify of a copy run without an appliance
// (`vmvault dr restore|verify`, src/appliance-dr.ts), so they have no route.

import type { FastifyInstance } from 'fastify';
import path from 'node:path';
import { vmError } from '../../errors.js';
import type { DrCopyResult } from '../../policy/dr-copy.js';
import type { JobRunner } from '../jobs.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody, jobStarted } from '../schemas.js';
import type { JobContext } from '../services.js';

export interface DrControl {
  /** The directory a destination names: an absolute path as it is, a directory destination's path (NOT_FOUND, INVALID_ARGUMENT otherwise). */
  resolve(to: string): string;
  /** Copies the appliance to `to` (an absolute directory path on the appliance host). */
  copy(ctx: JobContext, to: string): Promise<DrCopyResult>;
}

export async function drRoutes(app: FastifyInstance, deps: { dr: DrControl; jobs: JobRunner }): Promise<void> {
  app.post<{ Body: { to: string } }>(
    '/dr/copies',
    {
      schema: routeSchema({
        operationId: 'startDrCopy',
        summary: 'Start a disaster-recovery copy of the whole appliance to a directory (a job)',
        tags: ['jobs'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['to'],
          properties: {
            to: { type: 'string', title: 'destination', minLength: 1, maxLength: 4096, description: "An absolute directory on the appliance host (a removable disk, tape staging), made if missing, or a directory destination's name (vmvault destination add NAME --dir PATH). A complete earlier copy there is reused: only new containers are copied." },
          },
        },
        response: {
          202: { description: 'Started; poll /api/v1/jobs/{job}. Its result: copy, takenAt, containers, containersCopied, containersReused, bytesWritten, bytesTotal.', ...jobStarted },
          ...commonErrors,
          409: { description: 'A DR copy is running already; error.job is its id.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      const asked = request.body.to;
      if (asked.includes('\0') || (!path.isAbsolute(asked) && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(asked))) {
        throw vmError('INVALID_ARGUMENT', `the DR destination must be an absolute directory path or a directory destination's name, not ${JSON.stringify(asked.slice(0, 200))}`);
      }
      const to = deps.dr.resolve(asked);
      const job = deps.jobs.start('dr-copy', `to ${to}`, (ctx) => deps.dr.copy(ctx, to));
      return reply.code(202).header('location', `${app.prefix}/jobs/${job.id}`).send({ job: job.id });
    },
  );
}
