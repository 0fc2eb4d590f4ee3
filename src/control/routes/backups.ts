// Backups and restores of a VM: started as jobs (202 with the job id; progress in bytes, cancel
// with DELETE /jobs/{id}), and the list of restore points.

import type { FastifyInstance, FastifyReply } from 'fastify';
import { checkVmName } from '../../backup/vm-registry.js';
import { vmError } from '../../errors.js';
import type { JobBody, JobKind } from '../jobs.js';
import { routeSchema } from '../openapi.js';
import { checkRestoreTarget } from '../restore-target.js';
import { backupBody, backupRecord, commonErrors, errorBody, jobStarted, restoreBody } from '../schemas.js';
import type { BackupRequest, RestoreRequest } from '../services.js';
import type { RouteDeps } from './deps.js';
import { noSuchVm, vmParams, vmResource } from './vms.js';

const started = { description: 'Started; poll /api/v1/jobs/{job}.', ...jobStarted };

export async function backupRoutes(app: FastifyInstance, { services, jobs }: RouteDeps): Promise<void> {
  const start = (reply: FastifyReply, kind: JobKind, target: string, resource: string, body: JobBody) => {
    const job = jobs.start(kind, target, body, { resource });
    return reply.code(202).header('location', `${app.prefix}/jobs/${job.id}`).send({ job: job.id });
  };

  app.get<{ Params: { name: string } }>(
    '/vms/:name/backups',
    {
      schema: routeSchema({
        operationId: 'listBackups',
        summary: "A VM's restore points, oldest first",
        tags: ['backups'],
        params: vmParams,
        response: {
          200: { type: 'object', required: ['backups'], properties: { backups: { type: 'array', items: backupRecord } } },
          400: commonErrors[400],
          401: commonErrors[401],
          404: noSuchVm,
        },
      }),
    },
    async (request) => {
      checkVmName(request.params.name);
      return { backups: await services.listBackups(request.params.name) };
    },
  );

  app.post<{ Params: { name: string }; Body: BackupRequest }>(
    '/vms/:name/backups',
    {
      schema: routeSchema({
        operationId: 'startBackup',
        summary: 'Start a backup of a VM (a job; one at a time per VM). Incremental when the previous checkpoint allows, unless full is set',
        tags: ['backups'],
        params: vmParams,
        body: backupBody,
        bodyOptional: true,
        response: {
          202: started,
          ...commonErrors,
          400: { description: 'Malformed request, or an unknown workflow.', ...errorBody },
          404: noSuchVm,
          409: { description: 'A backup of this VM is running; error.job is its id.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      const name = request.params.name;
      checkVmName(name);
      const req: BackupRequest = { ...request.body };
      await services.checkBackup(name, req);
      const label = `vm ${name}${req.workflow === undefined ? '' : ` (${req.workflow})`}${req.full === true ? ' (full)' : ''}`;
      return start(reply, 'backup', label, vmResource(name), (ctx) => services.backupVm(ctx, name, req));
    },
  );

  app.post<{ Params: { name: string }; Body: RestoreRequest }>(
    '/vms/:name/restores',
    {
      schema: routeSchema({
        operationId: 'startRestore',
        summary: "Start writing a restore point's disks into a directory of the appliance host (a job)",
        tags: ['backups'],
        params: vmParams,
        body: restoreBody,
        response: {
          202: started,
          ...commonErrors,
          404: { description: 'No such VM or restore point.', ...errorBody },
          409: { description: 'A restore into that directory is running; error.job is its id.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      const name = request.params.name;
      checkVmName(name);
      if (request.body.inPlace === true) {
        if (request.body.to !== undefined || request.body.format !== undefined) {
          throw vmError('INVALID_ARGUMENT', 'an in-place restore writes over the VM\'s own disk files in their own format: give no to or format with inPlace');
        }
        const req: RestoreRequest = { inPlace: true, ...(request.body.point !== undefined ? { point: request.body.point } : {}) };
        await services.checkRestore(name, req);
        const label = `vm ${name}${req.point === undefined ? '' : ` point ${req.point}`} in place`;
        return start(reply, 'restore', label, `vm:${name}`, (ctx) => services.restoreVm(ctx, name, req));
      }
      if (request.body.to === undefined) throw vmError('INVALID_ARGUMENT', 'a restore needs "to" (a target directory on the appliance host) or "inPlace": true');
      const req: RestoreRequest = { ...request.body, to: checkRestoreTarget(request.body.to) };
      await services.checkRestore(name, req);
      const label = `vm ${name}${req.point === undefined ? '' : ` point ${req.point}`} -> ${req.to}`;
      return start(reply, 'restore', label, `dir:${req.to}`, (ctx) => services.restoreVm(ctx, name, req));
    },
  );
}
