// Hosts and the cluster map (issue 13): the hypervisor hosts reached through their agents, and
// the map of every host's VMs (state, disks, I/O load; an unreachable host with its reason).

import type { FastifyInstance } from 'fastify';
import { vmError } from '../../errors.js';
import type { HostsControl } from '../hosts-control.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody } from '../schemas.js';

const name = { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' } as const;
const count = { type: 'integer', minimum: 0 } as const;

const hostView = {
  type: 'object',
  required: ['name', 'agent', 'createdAt', 'agentState', 'vms'],
  properties: {
    name: { type: 'string' },
    agent: { type: 'string', description: 'The agent running on the host (vmvault agent --name).' },
    createdAt: { type: 'string', format: 'date-time' },
    agentState: { type: 'string', enum: ['live', 'lost', 'unregistered'] },
    vms: { type: 'array', items: { type: 'string' }, description: 'VMs registered on this host.' },
  },
} as const;

const clusterVm = {
  type: 'object',
  required: ['name', 'uuid', 'state', 'qmp', 'disks', 'load'],
  properties: {
    name: { type: 'string' },
    uuid: { type: 'string' },
    state: { type: 'string', description: "QEMU's run state; 'unknown' on an unreachable host." },
    qmp: { type: 'string' },
    disks: {
      type: 'array',
      items: {
        type: 'object',
        required: ['device', 'file', 'format', 'sizeBytes', 'dirtyBytes'],
        properties: { device: { type: 'string' }, file: { type: 'string' }, format: { type: 'string' }, sizeBytes: count, dirtyBytes: count },
      },
    },
    load: {
      type: 'object',
      required: ['dirtyBytes'],
      properties: { wrBytesPerSec: { ...count, description: 'Bytes written per second between two block-stats samples.' }, dirtyBytes: { ...count, description: "Dirty bytes of the disks' bitmaps." } },
    },
    registered: { type: 'string', description: 'The vmvault VM registered for it.' },
    ha: { type: 'object', additionalProperties: true, description: 'High availability (the Pacemaker plug-in).' },
  },
} as const;

const clusterView = {
  type: 'object',
  required: ['takenAt', 'ms', 'hosts'],
  properties: {
    takenAt: { type: 'string', format: 'date-time' },
    ms: count,
    hosts: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name', 'agent', 'state', 'vms', 'failed', 'problems', 'ms'],
        properties: {
          name: { type: 'string' },
          agent: { type: 'string' },
          state: { type: 'string', enum: ['ok', 'unreachable'] },
          reason: { type: 'string' },
          hostname: { type: 'string' },
          vms: { type: 'array', items: clusterVm },
          failed: { type: 'array', items: { type: 'object', required: ['qmp', 'error'], properties: { qmp: { type: 'string' }, error: { type: 'string' } } } },
          problems: { type: 'array', items: { type: 'string' } },
          ms: count,
        },
      },
    },
  },
} as const;

export async function hostRoutes(app: FastifyInstance, hosts: HostsControl | undefined): Promise<void> {
  const h = (): HostsControl => {
    if (hosts === undefined) throw vmError('NOT_SUPPORTED', 'this appliance keeps no host list');
    return hosts;
  };

  app.get(
    '/hosts',
    {
      schema: routeSchema({
        operationId: 'listHosts',
        summary: 'The hypervisor hosts, each reached through its agent',
        tags: ['hosts'],
        response: { 200: { type: 'object', required: ['hosts'], properties: { hosts: { type: 'array', items: hostView } } }, ...commonErrors },
      }),
    },
    // Without a host list there are no hosts (as /agents lists none without a pool).
    async () => ({ hosts: hosts === undefined ? [] : await hosts.listHosts() }),
  );

  app.post<{ Body: { name: string; agent: string } }>(
    '/hosts',
    {
      schema: routeSchema({
        operationId: 'addHost',
        summary: 'Add a host, reached through the agent running on it',
        tags: ['hosts'],
        body: { type: 'object', required: ['name', 'agent'], additionalProperties: false, properties: { name, agent: name } },
        response: { 201: hostView, ...commonErrors, 409: { description: 'The name or the agent is taken.', ...errorBody } },
      }),
    },
    async (request, reply) => reply.code(201).send(await h().addHost(request.body)),
  );

  app.delete<{ Params: { name: string } }>(
    '/hosts/:name',
    {
      schema: routeSchema({
        operationId: 'removeHost',
        summary: 'Remove a host (refused while VMs are registered on it)',
        tags: ['hosts'],
        params: { type: 'object', required: ['name'], properties: { name } },
        response: { 204: { description: 'Removed.' }, ...commonErrors, 404: { description: 'No such host.', ...errorBody }, 409: { description: 'VMs are registered on it.', ...errorBody } },
      }),
    },
    async (request, reply) => {
      await h().removeHost(request.params.name);
      return reply.code(204).send();
    },
  );

  app.get<{ Querystring: { sampleMs?: number } }>(
    '/cluster',
    {
      schema: routeSchema({
        operationId: 'getCluster',
        summary: "The cluster map: every host's VMs (state, disks, I/O load), all hosts asked at once; an unreachable host with its reason",
        tags: ['hosts'],
        querystring: { type: 'object', additionalProperties: false, properties: { sampleMs: { type: 'integer', minimum: 0, maximum: 10_000, description: 'Take two block-stats samples this far apart for the write rate.' } } },
        response: { 200: clusterView, ...commonErrors },
      }),
    },
    async (request) => (hosts === undefined ? { takenAt: new Date().toISOString(), ms: 0, hosts: [] } : hosts.cluster(request.query.sampleMs !== undefined ? { sampleMs: request.query.sampleMs } : {})),
  );
}
