// The protected VMs: register, list (with QEMU's view of each, probed within a bound), forget.

import type { FastifyInstance } from 'fastify';
import { checkVmName } from '../../backup/vm-registry.js';
import { vmError } from '../../errors.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody, newVmBody, vmName, vmView } from '../schemas.js';
import type { NewVmRequest } from '../services.js';
import type { RouteDeps } from './deps.js';

export const vmParams = { type: 'object', required: ['name'], properties: { name: vmName } } as const;
export const noSuchVm = { description: 'No such VM.', ...errorBody };

/** The job resource a backup of VM `name` holds (control/jobs.ts RESOURCE_CONFLICTS). */
export function vmResource(name: string): string {
  return `vm:${name}`;
}

export async function vmRoutes(app: FastifyInstance, { services, jobs }: RouteDeps): Promise<void> {
  app.get(
    '/vms',
    {
      schema: routeSchema({
        operationId: 'listVms',
        summary: 'List protected VMs with their state, disks and last backup (QEMU asked within a few seconds; "unreachable" otherwise)',
        tags: ['vms'],
        response: { 200: { type: 'object', required: ['vms'], properties: { vms: { type: 'array', items: vmView } } }, 401: commonErrors[401] },
      }),
    },
    async () => ({ vms: await services.listVms() }),
  );

  app.post<{ Body: NewVmRequest }>(
    '/vms',
    {
      schema: routeSchema({
        operationId: 'addVm',
        summary: 'Register a VM to protect (nothing is written unless every field is valid)',
        tags: ['vms'],
        body: newVmBody,
        response: {
          201: { description: 'Registered; state and disks as QEMU reports them now.', ...vmView },
          ...commonErrors,
          409: { description: 'A VM with that name, or one using that share, is registered.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      checkVmName(request.body.name);
      const vm = await services.addVm(request.body);
      return reply.code(201).header('location', `${app.prefix}/vms/${encodeURIComponent(vm.name)}`).send(vm);
    },
  );

  app.get<{ Params: { name: string } }>(
    '/vms/:name',
    {
      schema: routeSchema({
        operationId: 'getVm',
        summary: 'One VM: its registration, state and disks from QMP, and its last backup',
        tags: ['vms'],
        params: vmParams,
        response: { 200: vmView, 400: commonErrors[400], 401: commonErrors[401], 404: noSuchVm },
      }),
    },
    async (request) => {
      checkVmName(request.params.name);
      return services.getVm(request.params.name);
    },
  );

  app.delete<{ Params: { name: string } }>(
    '/vms/:name',
    {
      schema: routeSchema({
        operationId: 'removeVm',
        summary: 'Stop protecting a VM; its share and restore points stay (delete them with DELETE /shares/{name})',
        tags: ['vms'],
        params: vmParams,
        response: {
          204: { description: 'Removed.' },
          ...commonErrors,
          404: noSuchVm,
          409: { description: 'A backup of the VM is running; error.job is its id.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      const name = request.params.name;
      checkVmName(name);
      const running = jobs.activeOn(vmResource(name), ['backup']);
      if (running !== undefined) {
        throw vmError('CONFLICT', `backup job ${running.id} of VM ${name} is ${running.state}; wait for it or cancel it (vmvault jobs cancel ${running.id}) before removing the VM`, { job: running.id });
      }
      await services.removeVm(name);
      return reply.code(204).send();
    },
  );
}
