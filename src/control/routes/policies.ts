// Protection policies (issue 14, part A): create, list, show, assign/unassign a VM or a group, remove, and
// prune (retention, or with dryRun what it would remove and why). The policy service validates
// everything itself (cron, keep, lock against --max-lock); these routes only type the bodies.

import type { FastifyInstance } from 'fastify';
import { vmError } from '../../errors.js';
import { checkPolicyName, DEFAULT_MAX_LOCK_MS, type NewPolicy, validateNewPolicy } from '../../policy/policies.js';
import type { PolicyService } from '../../policy/policy-service.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody } from '../schemas.js';
import type { RouteDeps } from './deps.js';

const policyName = { type: 'string', title: 'policy name', minLength: 1, maxLength: 63, description: "1-63 letters, digits, '.', '_' or '-', starting with a letter or digit." } as const;
const params = { type: 'object', required: ['name'], properties: { name: policyName } } as const;
const noSuchPolicy = { description: 'No such policy (or VM).', ...errorBody };

const policyView = {
  type: 'object',
  required: ['name', 'backup', 'keep', 'lock', 'lockMs', 'vms', 'createdAt', 'nextRuns'],
  properties: {
    name: policyName,
    backup: { type: 'string', description: 'Cron expression (5 fields, or 6 with seconds), in the appliance\'s local time zone.' },
    keep: { type: 'string', description: "Retention rules, e.g. 'hourly=24,daily=14'; 'all' when none (everything is kept)." },
    lock: { type: 'string', description: "Retention lock every new point gets, e.g. '7d'; 'none'." },
    lockMs: { type: 'number' },
    workflow: { type: 'string' },
    vms: { type: 'array', items: { type: 'string' }, description: 'VMs assigned with --vm.' },
    groups: {
      type: 'array',
      description: 'VM groups assigned with --group and the VMs each holds now (one group backup per run).',
      items: { type: 'object', required: ['name', 'members'], properties: { name: { type: 'string' }, members: { type: 'array', items: { type: 'string' } }, problem: { type: 'string' } } },
    },
    createdAt: { type: 'string', format: 'date-time' },
    nextRuns: { type: 'array', items: { type: 'string', format: 'date-time' }, description: 'The next three scheduled times.' },
    clones: { type: 'array', items: { type: 'string' }, description: "Clone copies of the newest points: 'daily 02:00 -> site-b' (issue 14)." },
    dr: { type: 'string', description: "The appliance's disaster-recovery copy: 'daily 03:00 -> dr-1' (issue 14)." },
  },
} as const;

const runView = {
  type: 'object',
  required: ['at', 'policy', 'vm', 'event'],
  properties: {
    at: { type: 'string' },
    policy: { type: 'string' },
    vm: { type: 'string', description: "The VM, or 'group NAME' for a group's run." },
    group: { type: 'string', description: "The group, for a group's run." },
    event: { type: 'string', enum: ['started', 'succeeded', 'failed', 'skipped', 'pruned', 'locked'] },
    due: { type: 'string' },
    job: { type: 'string' },
    point: { type: 'string' },
    detail: { type: 'string' },
  },
} as const;

const policyDetail = {
  type: 'object',
  required: [...policyView.required, 'points', 'runs', 'queued', 'running'],
  properties: {
    ...policyView.properties,
    points: {
      type: 'array',
      items: {
        type: 'object',
        required: ['vm', 'share', 'points'],
        properties: {
          vm: { type: 'string' },
          share: { type: 'string' },
          problem: { type: 'string' },
          points: {
            type: 'array',
            items: {
              type: 'object',
              required: ['point', 'created', 'locked'],
              properties: {
                point: { type: 'string' },
                created: { type: 'string' },
                lockedUntil: { type: 'string' },
                locked: { type: 'boolean' },
                copies: {
                  type: 'array',
                  description: 'Verified copies of the point on destinations.',
                  items: { type: 'object', properties: { destination: { type: 'string' }, kind: { type: 'string' }, verifiedAt: { type: 'string' } } },
                },
              },
            },
          },
        },
      },
    },
    runs: { type: 'array', items: runView, description: 'The last 50 events of this policy, oldest first (persisted across restarts).' },
    queued: { type: 'array', items: { type: 'object', properties: { vm: { type: 'string' }, due: { type: 'string' } } } },
    running: { type: 'array', items: { type: 'object', properties: { vm: { type: 'string' }, job: { type: 'string' } } } },
  },
} as const;

const pruneResult = {
  type: 'object',
  required: ['policy', 'dryRun', 'vms'],
  properties: {
    policy: { type: 'string' },
    dryRun: { type: 'boolean' },
    vms: {
      type: 'array',
      items: {
        type: 'object',
        required: ['vm', 'marks', 'removed', 'failed'],
        properties: {
          vm: { type: 'string' },
          marks: {
            type: 'array',
            items: { type: 'object', required: ['point', 'keep', 'reason'], properties: { point: { type: 'string' }, time: { type: 'number' }, keep: { type: 'boolean' }, reason: { type: 'string' } } },
          },
          removed: { type: 'array', items: { type: 'string' } },
          failed: { type: 'array', items: { type: 'object', properties: { point: { type: 'string' }, error: { type: 'string' } } } },
        },
      },
    },
  },
} as const;

const assignBody = {
  type: 'object',
  additionalProperties: false,
  properties: { vm: { type: 'string', title: 'VM name', minLength: 1 }, group: { type: 'string', title: 'group name', minLength: 1 } },
} as const;

export async function policyRoutes(app: FastifyInstance, { policies }: RouteDeps): Promise<void> {
  const svc = (): PolicyService => policies ?? (noPolicies as unknown as PolicyService);

  app.get(
    '/policies',
    {
      schema: routeSchema({
        operationId: 'listPolicies',
        summary: 'List protection policies with their next scheduled runs',
        tags: ['policies'],
        response: { 200: { type: 'object', required: ['policies'], properties: { policies: { type: 'array', items: policyView } } }, 401: commonErrors[401] },
      }),
    },
    async () => ({ policies: svc().list() }),
  );

  app.post<{ Body: NewPolicy }>(
    '/policies',
    {
      schema: routeSchema({
        operationId: 'createPolicy',
        summary: 'Create a policy: a backup schedule (cron), GFS retention, a retention lock for every new point',
        tags: ['policies'],
        body: {
          type: 'object',
          required: ['name', 'backup'],
          additionalProperties: false,
          properties: {
            name: policyName,
            backup: { type: 'string', title: 'backup schedule', minLength: 1, description: "Cron, e.g. '0 */4 * * *' (local time)." },
            keep: { type: 'string', title: 'keep rules', description: "e.g. 'hourly=24,daily=14,weekly=8,monthly=12,yearly=3,last=2'; absent: keep everything." },
            lock: { type: 'string', title: 'lock duration', description: "e.g. '7d', '12h', '1y'; at most the appliance's --max-lock. Absent: no lock." },
            workflow: { type: 'string', title: 'workflow name', minLength: 1 },
            clone: {
              title: 'clone copies',
              description: "'daily 02:00 -> site-b' or '0 2 * * * -> site-b'; one or a list.",
              anyOf: [{ type: 'string', minLength: 1, maxLength: 300 }, { type: 'array', maxItems: 16, items: { type: 'string', minLength: 1, maxLength: 300 } }],
            },
            dr: {
              type: 'string',
              title: 'DR copy',
              minLength: 1,
              maxLength: 4400,
              description: "'daily 03:00 -> dr-1' (a directory destination) or 'daily 03:00 -> /mnt/dr': a copy of the whole appliance (DR-FORMAT.md).",
            },
          },
        },
        response: {
          201: { description: 'Created.', ...policyView },
          ...commonErrors,
          400: { description: 'Malformed request: an invalid cron, keep or lock string, or a lock longer than the maximum.', ...errorBody },
          409: { description: 'A policy with that name exists.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      const p = await svc().create(request.body);
      return reply.code(201).header('location', `${app.prefix}/policies/${encodeURIComponent(p.name)}`).send(p);
    },
  );

  app.get<{ Params: { name: string } }>(
    '/policies/:name',
    {
      schema: routeSchema({
        operationId: 'getPolicy',
        summary: 'One policy: next runs, the run history, and each VM\'s points with their locks',
        tags: ['policies'],
        params,
        response: { 200: policyDetail, 400: commonErrors[400], 401: commonErrors[401], 404: noSuchPolicy },
      }),
    },
    async (request) => svc().show(request.params.name),
  );

  app.delete<{ Params: { name: string } }>(
    '/policies/:name',
    {
      schema: routeSchema({
        operationId: 'removePolicy',
        summary: 'Remove a policy (refused while points of its VMs are locked; the refusal names them)',
        tags: ['policies'],
        params,
        response: {
          204: { description: 'Removed.', type: 'null' },
          400: commonErrors[400],
          401: commonErrors[401],
          404: noSuchPolicy,
          423: { description: 'Points of its VMs are under a retention lock; the message names them and when the last lock ends.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      await svc().remove(request.params.name);
      return reply.code(204).send();
    },
  );

  for (const verb of ['assign', 'unassign'] as const) {
    app.post<{ Params: { name: string }; Body: { vm?: string; group?: string } }>(
      `/policies/:name/${verb}`,
      {
        schema: routeSchema({
          operationId: `${verb}Policy`,
          summary: verb === 'assign'
              ? 'Assign a VM or a VM group to the policy (a VM is in at most one policy, directly or through a group)'
              : 'Take a VM or a group out of the policy (its points keep their locks)',
          tags: ['policies'],
          params,
          body: assignBody,
          response: {
            200: policyView,
            ...commonErrors,
            400: { description: 'Malformed request: neither or both of vm and group.', ...errorBody },
            404: { description: 'No such policy, VM or group (or, to unassign, not assigned).', ...errorBody },
            409: { description: 'The VM or group is in another policy, or a member of the group already is (the message names both).', ...errorBody },
          },
        }),
      },
      async (request) => (verb === 'assign' ? svc().assign(request.params.name, request.body ?? {}) : svc().unassign(request.params.name, request.body ?? {})),
    );
  }

  app.post<{ Params: { name: string }; Body: { vm?: string; dryRun?: boolean } }>(
    '/policies/:name/prune',
    {
      schema: routeSchema({
        operationId: 'prunePolicy',
        summary: "Apply the policy's retention now (dryRun: only show what would go and why)",
        tags: ['policies'],
        params,
        body: { type: 'object', additionalProperties: false, properties: { vm: { type: 'string', title: 'VM name', minLength: 1 }, dryRun: { type: 'boolean' } } },
        bodyOptional: true,
        response: { 200: pruneResult, ...commonErrors, 404: noSuchPolicy, 409: { description: 'A backup of the VM is running.', ...errorBody } },
      }),
    },
    async (request) => svc().prune(request.params.name, request.body ?? {}),
  );
}

/**
 * Without a policy service (an appliance without VM backup): no policies exist, and input is
 * checked as the real service checks it, so bad input is still a 400 and a valid create says why
 * it cannot be done.
 */
const noPolicies = {
  list: () => [],
  create: async (req: NewPolicy) => {
    validateNewPolicy(req, DEFAULT_MAX_LOCK_MS);
    throw vmError('NOT_SUPPORTED', 'this appliance runs without VM backup, so without policies');
  },
  show: async (name: string) => missing(name),
  remove: async (name: string) => missing(name),
  assign: async (name: string) => missing(name),
  unassign: async (name: string) => missing(name),
  prune: async (name: string) => missing(name),
};

function missing(name: string): never {
  checkPolicyName(name);
  throw vmError('NOT_FOUND', `no policy named ${name} (none yet: vmvault policy create)`, { policy: name });
}
