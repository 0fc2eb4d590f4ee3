// Instant recovery (issue 14): start a VM from a clone of its restore point on the mount (a job of
// kind `recover`), list the recovered VMs, migrate one to production storage (a job of kind
// `recover`, progress in bytes from QEMU's query-block-jobs), stop one, release a migrated one.

import type { FastifyInstance, FastifyReply } from 'fastify';
import { checkVmName } from '../../backup/vm-registry.js';
import { vmError } from '../../errors.js';
import { validateName } from '../../namespace/names.js';
import type { JobBody } from '../jobs.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody, jobStarted } from '../schemas.js';
import type { MigrateRequest, RecoverRequest, RecoveryControl } from '../services.js';
import type { RouteDeps } from './deps.js';
import { vmParams } from './vms.js';

const started = { description: 'Started; poll /api/v1/jobs/{job}.', ...jobStarted };
const recoveryName = { type: 'string', title: 'recovery name', minLength: 1, description: 'The recovery, also the name of its clone share.' } as const;
const recoveryParams = { type: 'object', required: ['name'], properties: { name: recoveryName } } as const;

export const recoveryView = {
  type: 'object',
  required: ['name', 'vm', 'point', 'clone', 'state', 'pid', 'qmp', 'qga', 'console', 'startedAt', 'disks', 'notes'],
  properties: {
    name: { type: 'string' },
    vm: { type: 'string' },
    point: { type: 'string' },
    clone: { type: 'string', description: 'The writable clone share the VM runs from (until migrated).' },
    state: { type: 'string', enum: ['running', 'migrated', 'stopped'] },
    pid: { type: ['integer', 'null'], description: "QEMU's process id while it runs." },
    qmp: { type: 'string', description: "The VM's QMP monitor (unix:...)." },
    qga: { type: 'string', description: "The VM's guest-agent channel (unix:...)." },
    console: { type: 'string', description: 'The serial console log file.' },
    startedAt: { type: 'string' },
    disks: { type: 'array', items: { type: 'object', required: ['device', 'file'], properties: { device: { type: 'string' }, file: { type: 'string' } } } },
    notes: { type: 'array', items: { type: 'string' }, description: 'What was started differently from vm.json (NICs on user networking, TCG).' },
    migratedTo: { type: 'string' },
    migratedAt: { type: 'string' },
  },
} as const;

const recoverBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    point: { type: 'string', title: 'restore point', minLength: 1, description: 'Default: the newest restore point.' },
    name: { ...recoveryName, description: 'Default: <vm>-recovery.' },
  },
} as const;

const migrateBody = {
  type: 'object',
  required: ['to'],
  additionalProperties: false,
  properties: {
    to: { type: 'string', title: 'target directory', minLength: 1, description: 'Absolute directory on the appliance host (production storage) for <device>.<format>.' },
    format: { type: 'string', title: 'format', enum: ['raw', 'qcow2'], description: 'Default qcow2.' },
  },
} as const;

const dropBody = {
  type: 'object',
  additionalProperties: false,
  properties: { dropClone: { type: 'boolean', description: 'Remove the clone share too (default: keep it).' } },
} as const;

/** The job resource a recovery holds: one job at a time per recovery name. */
export function recoveryResource(name: string): string {
  return `recovery:${name}`;
}

export async function recoveryRoutes(app: FastifyInstance, { services, jobs }: RouteDeps): Promise<void> {
  const recovery = (): RecoveryControl => {
    if (services.recovery === undefined) throw vmError('NOT_SUPPORTED', 'this appliance has no instant recovery (it needs the mount and VM backup)');
    return services.recovery;
  };
  const start = (reply: FastifyReply, target: string, resource: string, body: JobBody) => {
    const job = jobs.start('recover', target, body, { resource });
    return reply.code(202).header('location', `${app.prefix}/jobs/${job.id}`).send({ job: job.id });
  };

  app.get(
    '/recoveries',
    {
      schema: routeSchema({
        operationId: 'listRecoveries',
        summary: 'VMs running from the backup (instant recovery), and migrated ones not yet released',
        tags: ['recoveries'],
        response: { 200: { description: 'Every recovery this appliance supervises.', type: 'object', required: ['recoveries'], properties: { recoveries: { type: 'array', items: recoveryView } } }, 401: commonErrors[401] },
      }),
    },
    // Without instant recovery (no mount or no VM backup) there is simply none: an empty list,
    // as /hosts and /groups answer, not a server error.
    async () => ({ recoveries: services.recovery === undefined ? [] : await services.recovery.list() }),
  );

  app.get<{ Params: { name: string } }>(
    '/recoveries/:name',
    {
      schema: routeSchema({
        operationId: 'getRecovery',
        summary: 'One instant recovery',
        tags: ['recoveries'],
        params: recoveryParams,
        response: { 200: { description: 'The recovery.', ...recoveryView }, 400: commonErrors[400], 401: commonErrors[401], 404: { description: 'No such recovery.', ...errorBody } },
      }),
    },
    async (request) => {
      validateName('share', request.params.name);
      if (services.recovery === undefined) throw vmError('NOT_FOUND', `no recovery named ${JSON.stringify(request.params.name)}: this appliance has no instant recovery (it needs the mount and VM backup)`);
      return services.recovery.get(request.params.name);
    },
  );

  app.post<{ Params: { name: string }; Body: RecoverRequest }>(
    '/vms/:name/recoveries',
    {
      schema: routeSchema({
        operationId: 'startRecovery',
        summary: 'Start the VM from a restore point: a writable clone on the mount and QEMU running from it (a job of kind recover)',
        tags: ['recoveries'],
        params: vmParams,
        body: recoverBody,
        bodyOptional: true,
        response: {
          202: started,
          ...commonErrors,
          404: { description: 'No such VM or restore point.', ...errorBody },
          409: { description: 'The name is in use (a recovery or a share).', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      const vm = request.params.name;
      checkVmName(vm);
      const req: RecoverRequest = { ...request.body };
      // Bad names are the caller's error (400) whether or not this appliance can recover at all.
      if (req.point !== undefined) validateName('snapshot', req.point);
      if (req.name !== undefined) validateName('share', req.name);
      const { point, name } = await recovery().checkRecover(vm, req);
      return start(reply, `vm ${vm} point ${point} as ${name}`, recoveryResource(name), (ctx) => recovery().recover(ctx, vm, { ...req, point, name }));
    },
  );

  app.post<{ Params: { name: string }; Body: MigrateRequest }>(
    '/recoveries/:name/migrate',
    {
      schema: routeSchema({
        operationId: 'migrateRecovery',
        summary: "Move a recovered VM's disks to production storage while it runs (blockdev-mirror, then pivot; a job of kind recover)",
        tags: ['recoveries'],
        params: recoveryParams,
        body: migrateBody,
        response: {
          202: started,
          ...commonErrors,
          404: { description: 'No such recovery.', ...errorBody },
          409: { description: 'A job of this recovery runs, or a target file exists.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      const name = request.params.name;
      validateName('share', name);
      const req: MigrateRequest = { ...request.body };
      await recovery().checkMigrate(name, req);
      return start(reply, `migrate ${name} -> ${req.to}`, recoveryResource(name), (ctx) => recovery().migrate(ctx, name, req));
    },
  );

  const dropResult = {
    type: 'object',
    required: ['name', 'clone'],
    properties: { name: { type: 'string' }, clone: { type: 'string', enum: ['kept', 'dropped'] }, pid: { type: ['integer', 'null'] } },
  } as const;
  for (const verb of ['stop', 'release'] as const) {
    app.post<{ Params: { name: string }; Body: { dropClone?: boolean } }>(
      `/recoveries/:name/${verb}`,
      {
        schema: routeSchema({
          operationId: verb === 'stop' ? 'stopRecovery' : 'releaseRecovery',
          summary:
            verb === 'stop'
              ? 'Stop the recovered VM (QMP quit) and forget the recovery; its clone stays unless dropClone'
              : 'Forget a migrated recovery and leave its VM running on the migrated disks; its clone stays unless dropClone',
          tags: ['recoveries'],
          params: recoveryParams,
          body: dropBody,
          bodyOptional: true,
          response: { 200: { description: 'Done.', ...dropResult }, ...commonErrors, 404: { description: 'No such recovery.', ...errorBody }, 409: { description: 'A job of this recovery runs.', ...errorBody } },
        }),
      },
      async (request) => {
        const name = request.params.name;
        validateName('share', name);
        const running = jobs.activeOn(recoveryResource(name), ['recover']);
        if (running !== undefined) throw vmError('CONFLICT', `job ${running.id} of recovery ${name} is ${running.state}; wait for it or cancel it (vmvault jobs cancel ${running.id})`, { job: running.id });
        const opts = request.body.dropClone === true ? { dropClone: true } : {};
        return verb === 'stop' ? recovery().stop(name, opts) : recovery().release(name, opts);
      },
    );
  }
}
