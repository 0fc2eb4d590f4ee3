// VM groups (issue 13): create, list, show (with the VMs a pattern or host resolves to now),
// remove; and a group backup, a job of kind group-backup whose result holds each VM's outcome.

import type { FastifyInstance } from 'fastify';
import { COPY_ORDERS, MAX_PARALLEL } from '../../backup/group-backup.js';
import { checkGroupName, checkNewGroup } from '../../backup/groups.js';
import { vmError } from '../../errors.js';
import type { GroupBackupRequest, GroupControl, NewGroupRequest } from '../group-types.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody, jobStarted, vmName, workflowName } from '../schemas.js';
import type { RouteDeps } from './deps.js';

const groupName = { type: 'string', title: 'group name', minLength: 1, description: 'Group name: the share name rules.' } as const;
const params = { type: 'object', required: ['name'], properties: { name: groupName } } as const;
const noSuchGroup = { description: 'No such group.', ...errorBody };

const groupView = {
  type: 'object',
  required: ['name', 'createdAt', 'members', 'missing'],
  properties: {
    name: groupName,
    vms: { type: 'array', items: vmName },
    pattern: { type: 'string', description: "A glob over VM names ('*', '?'), resolved at each run." },
    host: { type: 'string', description: 'Every VM on this host, resolved at each run.' },
    createdAt: { type: 'string', format: 'date-time' },
    members: { type: 'array', items: { type: 'string' }, description: 'The registered VMs the group holds now.' },
    missing: { type: 'array', items: { type: 'string' }, description: 'Listed VMs not registered.' },
  },
} as const;

const newGroupBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: groupName,
    vms: { type: 'array', items: vmName, minItems: 1 },
    pattern: { type: 'string', minLength: 1, maxLength: 256 },
    host: { type: 'string', minLength: 1, maxLength: 64 },
  },
} as const;

const groupBackupBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    workflow: workflowName,
    full: { type: 'boolean' },
    parallel: { type: 'integer', minimum: 1, maximum: MAX_PARALLEL, description: 'Copies at once (default 2).' },
    order: { type: 'string', enum: [...COPY_ORDERS], description: 'Copy order (default busiest: the highest write load first).' },
  },
} as const;

/**
 * Without group services (an appliance without VM backup): no group exists, and input is checked
 * as the real registry checks it, so bad input is still a 400.
 */
const missing = async (name: string): Promise<never> => {
  checkGroupName(name);
  throw vmError('NOT_FOUND', `no group ${JSON.stringify(name)}: this appliance runs without VM backup`, { group: name });
};
const noGroups: GroupControl = {
  list: async () => [],
  get: missing,
  create: async (req) => {
    checkNewGroup(req);
    throw vmError('NOT_SUPPORTED', 'this appliance runs without VM backup, so without VM groups');
  },
  remove: missing,
  checkBackup: missing,
  backup: (_ctx, name) => missing(name),
};

function control(groups: GroupControl | undefined): GroupControl {
  return groups ?? noGroups;
}

/** The job resource a backup of group `name` holds. */
export function groupResource(name: string): string {
  return `group:${name}`;
}

export async function groupRoutes(app: FastifyInstance, { jobs, groups }: RouteDeps & { groups?: GroupControl }): Promise<void> {
  app.get(
    '/groups',
    { schema: routeSchema({ operationId: 'listGroups', summary: 'List VM groups with the VMs each holds now', tags: ['groups'], response: { 200: { type: 'object', required: ['groups'], properties: { groups: { type: 'array', items: groupView } } }, 401: commonErrors[401] } }) },
    async () => ({ groups: await control(groups).list() }),
  );

  app.post<{ Body: NewGroupRequest }>(
    '/groups',
    {
      schema: routeSchema({
        operationId: 'createGroup',
        summary: 'Create a VM group: a list of VMs, a name pattern, or a host (exactly one)',
        tags: ['groups'],
        body: newGroupBody,
        response: { 201: { description: 'Created.', ...groupView }, ...commonErrors, 409: { description: 'A group of that name exists.', ...errorBody } },
      }),
    },
    async (request, reply) => {
      checkGroupName(request.body.name);
      const g = await control(groups).create(request.body);
      return reply.code(201).header('location', `${app.prefix}/groups/${encodeURIComponent(g.name)}`).send(g);
    },
  );

  app.get<{ Params: { name: string } }>(
    '/groups/:name',
    { schema: routeSchema({ operationId: 'getGroup', summary: 'One group and the VMs it holds now', tags: ['groups'], params, response: { 200: groupView, 400: commonErrors[400], 401: commonErrors[401], 404: noSuchGroup } }) },
    async (request) => {
      checkGroupName(request.params.name);
      return control(groups).get(request.params.name);
    },
  );

  app.delete<{ Params: { name: string } }>(
    '/groups/:name',
    { schema: routeSchema({ operationId: 'removeGroup', summary: 'Remove a group (its VMs and their points stay; refused while a policy names it)', tags: ['groups'], params, response: { 204: { description: 'Removed.' }, ...commonErrors, 404: noSuchGroup, 409: { description: 'A policy names the group; the message says which.', ...errorBody } } }) },
    async (request, reply) => {
      checkGroupName(request.params.name);
      await control(groups).remove(request.params.name);
      return reply.code(204).send();
    },
  );

  app.post<{ Params: { name: string }; Body: GroupBackupRequest }>(
    '/groups/:name/backups',
    {
      schema: routeSchema({
        operationId: 'startGroupBackup',
        summary: 'Back up every VM of a group at one moment, then copy busiest-first (a job of kind group-backup)',
        tags: ['groups', 'backups'],
        params,
        body: groupBackupBody,
        bodyOptional: true,
        response: {
          202: { description: 'Started; poll /api/v1/jobs/{job}; its result lists each VM.', ...jobStarted },
          ...commonErrors,
          400: { description: 'Malformed request, an empty group, bad parallel or order, or an unknown workflow.', ...errorBody },
          404: noSuchGroup,
          409: { description: 'A backup of this group is running.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      const name = request.params.name;
      checkGroupName(name);
      const req: GroupBackupRequest = { ...request.body };
      const g = control(groups);
      await g.checkBackup(name, req);
      const label = `group ${name}${req.workflow === undefined ? '' : ` (${req.workflow})`}${req.full === true ? ' (full)' : ''}`;
      const job = jobs.start('group-backup', label, (ctx) => g.backup(ctx, name, req), { resource: groupResource(name) });
      return reply.code(202).header('location', `${app.prefix}/jobs/${job.id}`).send({ job: job.id });
    },
  );
}
