// The agent pool's routes (issue 12): an admin lists the agents; an agent (with an agent token,
// or the admin token) registers, heartbeats, long-polls for tasks and reports progress and
// results. Every body from an agent is untrusted: schemas bound every field, the pool checks
// again (public methods validate).
//
// Who may act as an agent: the first agent token that registers a name owns it (the pool keeps
// which); later calls for that name must come from the same token, or the admin token. So one
// agent token cannot take another agent's tasks or report results for it.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type AgentPool, MAX_STREAMS } from '../../backup/agent-pool.js';
import { vmError } from '../../errors.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody } from '../schemas.js';
import type { RouteDeps } from './deps.js';

const agentNameSchema = { type: 'string', title: 'agent name', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' } as const;
const taskIdSchema = { type: 'string', title: 'task id', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9-]+$' } as const;
const nameParams = { type: 'object', required: ['name'], properties: { name: agentNameSchema } } as const;
const taskParams = { type: 'object', required: ['name', 'id'], properties: { name: agentNameSchema, id: taskIdSchema } } as const;
const count = { type: 'integer', minimum: 0 } as const;
const shortString = (max: number) => ({ type: 'string', minLength: 1, maxLength: max }) as const;

const reportSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    bytesRead: count,
    bytesSent: count,
    fingerprintBytes: count,
    segments: count,
    segmentsSent: count,
    segmentBytesSent: count,
    zeroBytes: count,
  },
} as const;

const registerBody = {
  type: 'object',
  required: ['name', 'version', 'hostname', 'addresses', 'streams', 'reach'],
  additionalProperties: false,
  properties: {
    name: agentNameSchema,
    version: { type: 'string', maxLength: 64 },
    hostname: { type: 'string', maxLength: 255 },
    addresses: { type: 'array', maxItems: 32, items: shortString(256) },
    streams: { type: 'integer', minimum: 1, maximum: MAX_STREAMS },
    reach: { type: 'array', maxItems: 64, items: shortString(1024), description: "Source address prefixes it can reach ('unix:/run/qemu/', 'tcp:10.1.', '*')." },
    requests: { type: 'array', maxItems: 64, items: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,63}$' }, description: 'Host request kinds it handles (issue 13: discover, qmp-open, ...).' },
  },
} as const;

const hostRequestSchema = {
  type: 'object',
  required: ['v', 'id', 'kind', 'args', 'timeoutMs'],
  properties: { v: { type: 'integer' }, id: { type: 'string' }, kind: { type: 'string' }, args: {}, timeoutMs: count },
} as const;

const taskSchema = {
  type: 'object',
  required: ['v', 'id', 'vm', 'device', 'source', 'target', 'incremental'],
  properties: {
    v: { type: 'integer' },
    id: { type: 'string' },
    vm: { type: 'string' },
    device: { type: 'string' },
    source: {
      type: 'object',
      required: ['kind'],
      properties: { kind: { type: 'string' }, address: { type: 'string' }, exportName: { type: 'string' }, dirtyContext: { type: 'string' }, path: { type: 'string' } },
    },
    target: { type: 'object', required: ['share', 'path', 'size'], properties: { share: { type: 'string' }, path: { type: 'string' }, size: count } },
    incremental: { type: 'boolean' },
  },
} as const;

const agentView = {
  type: 'object',
  required: ['name', 'version', 'hostname', 'addresses', 'remoteAddress', 'state', 'streams', 'reach', 'tasksRunning', 'tasks', 'lastSeen', 'registeredAt', 'bytesRead', 'bytesSent', 'bytesSaved', 'tasksDone', 'tasksFailed'],
  properties: {
    name: { type: 'string' },
    version: { type: 'string' },
    hostname: { type: 'string' },
    addresses: { type: 'array', items: { type: 'string' } },
    remoteAddress: { type: 'string', description: 'Where its requests come from, as the appliance sees it.' },
    state: { type: 'string', enum: ['live', 'lost'] },
    streams: count,
    reach: { type: 'array', items: { type: 'string' } },
    requests: { type: 'array', items: { type: 'string' }, description: 'Host request kinds it handles (issue 13).' },
    tasksRunning: count,
    tasks: { type: 'array', items: { type: 'string' } },
    lastSeen: { type: 'string', format: 'date-time' },
    registeredAt: { type: 'string', format: 'date-time' },
    bytesRead: count,
    bytesSent: { ...count, description: 'Bytes on the wire for its tasks, both ways.' },
    bytesSaved: { ...count, description: 'Bytes read that did not cross the wire (duplicates, zeros).' },
    tasksDone: count,
    tasksFailed: count,
  },
} as const;

const notAgent = { description: 'No such agent, or the task is not its own.', ...errorBody };
const conflict = { description: 'The agent was lost (register again), or the task is no longer its own (drop it).', ...errorBody };
const forbidden = { description: 'The token may not act as this agent.', ...errorBody };

/** The agent token's name the request carries; undefined for the admin token (which may act for any agent). */
function ownerOf(request: FastifyRequest): string | undefined {
  const c = request.caller;
  return c?.kind === 'agent' ? c.name : undefined;
}

export async function agentRoutes(app: FastifyInstance, { agents }: RouteDeps): Promise<void> {
  const pool = (): AgentPool => {
    if (agents === undefined) throw vmError('NOT_SUPPORTED', 'this appliance runs no agent pool');
    return agents;
  };
  const actAs = (request: FastifyRequest, name: string): AgentPool => {
    const p = pool();
    p.checkCaller(name, ownerOf(request));
    return p;
  };

  app.get(
    '/agents',
    {
      schema: routeSchema({
        operationId: 'listAgents',
        summary: 'The external agents: address, version, state (live or lost), tasks running, last seen, bytes sent and saved',
        tags: ['agents'],
        response: { 200: { type: 'object', required: ['agents'], properties: { agents: { type: 'array', items: agentView } } }, 401: commonErrors[401] },
      }),
    },
    async () => ({ agents: agents?.list() ?? [] }),
  );

  app.post<{ Body: Parameters<AgentPool['register']>[0] }>(
    '/agents/register',
    {
      config: { agent: true },
      schema: routeSchema({
        operationId: 'registerAgent',
        summary: 'An agent announces itself (again after a restart or a lost link); answers the heartbeat and poll intervals',
        tags: ['agents'],
        body: registerBody,
        response: {
          200: {
            type: 'object',
            required: ['heartbeatMs', 'lostAfterMs', 'maxPollMs', 'taskVersion'],
            properties: { heartbeatMs: count, lostAfterMs: count, maxPollMs: count, taskVersion: count },
          },
          ...commonErrors,
          403: forbidden,
        },
      }),
    },
    async (request) => pool().register(request.body, request.ip, ownerOf(request)),
  );

  app.post<{ Params: { name: string } }>(
    '/agents/:name/heartbeat',
    {
      config: { agent: true },
      schema: routeSchema({
        operationId: 'agentHeartbeat',
        summary: 'An agent is alive; answers the tasks the appliance counts as its own (it drops any other)',
        tags: ['agents'],
        params: nameParams,
        bodyOptional: true,
        body: { type: 'object', additionalProperties: false, properties: {} },
        response: { 200: { type: 'object', required: ['tasks'], properties: { tasks: { type: 'array', items: { type: 'string' } } } }, ...commonErrors, 403: forbidden, 404: notAgent, 409: conflict },
      }),
    },
    async (request) => actAs(request, request.params.name).heartbeat(request.params.name),
  );

  app.post<{ Params: { name: string }; Body: { waitMs?: number; running?: string[] } }>(
    '/agents/:name/poll',
    {
      config: { agent: true },
      schema: routeSchema({
        operationId: 'agentPoll',
        summary: 'Long-poll for tasks: answers every task of the agent not in running (so a lost answer is handed again), as soon as there is one, or empty after waitMs (capped by the appliance)',
        tags: ['agents'],
        params: nameParams,
        bodyOptional: true,
        body: { type: 'object', additionalProperties: false, properties: { waitMs: { type: 'integer', minimum: 0, maximum: 600_000 }, running: { type: 'array', maxItems: 1024, items: taskIdSchema } } },
        response: {
          200: { type: 'object', required: ['tasks'], properties: { tasks: { type: 'array', items: taskSchema }, requests: { type: 'array', items: hostRequestSchema } } },
          ...commonErrors,
          403: forbidden,
          404: notAgent,
          409: conflict,
        },
      }),
    },
    async (request, reply) => {
      const p = actAs(request, request.params.name);
      // The poll ends when the agent goes away, so a dead connection does not hold its tasks.
      const ac = new AbortController();
      const onClose = () => ac.abort();
      reply.raw.once('close', onClose);
      try {
        // An answer nobody reads loses nothing: the agent's next poll gets the same tasks again.
        const tasks = await p.poll(request.params.name, request.body.waitMs ?? p.maxPollMs, request.body.running ?? [], ac.signal);
        // Host requests (issue 13) are handed once: taken only when the answer is about to be written.
        return { tasks, requests: ac.signal.aborted ? [] : p.takeRequests(request.params.name) };
      } finally {
        reply.raw.off('close', onClose);
      }
    },
  );

  app.post<{ Params: { name: string; id: string }; Body: Parameters<AgentPool['progress']>[2] }>(
    '/agents/:name/tasks/:id/progress',
    {
      config: { agent: true },
      schema: routeSchema({
        operationId: 'agentTaskProgress',
        summary: 'Byte counts of a running task so far',
        tags: ['agents'],
        params: taskParams,
        body: reportSchema,
        response: { 204: { description: 'Noted.' }, ...commonErrors, 403: forbidden, 404: notAgent, 409: conflict },
      }),
    },
    async (request, reply) => {
      actAs(request, request.params.name).progress(request.params.name, request.params.id, request.body);
      return reply.code(204).send();
    },
  );

  app.post<{ Params: { name: string; id: string }; Body: { ok: boolean; error?: string; report?: Parameters<AgentPool['progress']>[2] } }>(
    '/agents/:name/tasks/:id/done',
    {
      config: { agent: true },
      schema: routeSchema({
        operationId: 'agentTaskDone',
        summary: 'The result of a task: ok (the file is whole in the share) or failed with a reason',
        tags: ['agents'],
        params: taskParams,
        body: {
          type: 'object',
          required: ['ok'],
          additionalProperties: false,
          properties: { ok: { type: 'boolean' }, error: { type: 'string', maxLength: 4096 }, report: reportSchema },
        },
        response: { 204: { description: 'Noted.' }, ...commonErrors, 403: forbidden, 404: notAgent, 409: conflict },
      }),
    },
    async (request, reply) => {
      actAs(request, request.params.name).done(request.params.name, request.params.id, request.body);
      return reply.code(204).send();
    },
  );

  app.post<{ Params: { name: string; id: string }; Body: { ok: boolean; result?: unknown; error?: { code?: string; message?: string } } }>(
    '/agents/:name/requests/:id/answer',
    {
      config: { agent: true },
      // A discovery of many VMs, or a large QMP answer (query-named-block-nodes), is some MiB.
      bodyLimit: 16 * 1024 * 1024,
      schema: routeSchema({
        operationId: 'agentRequestAnswer',
        summary: 'The answer to a host request (issue 13): ok with its result, or failed with a code and a reason',
        tags: ['agents'],
        params: taskParams,
        body: {
          type: 'object',
          required: ['ok'],
          additionalProperties: false,
          properties: {
            ok: { type: 'boolean' },
            result: {},
            error: { type: 'object', additionalProperties: false, properties: { code: { type: 'string', maxLength: 64 }, message: { type: 'string', maxLength: 4096 } } },
          },
        },
        response: { 204: { description: 'Noted.' }, ...commonErrors, 403: forbidden, 404: notAgent, 409: conflict },
      }),
    },
    async (request, reply) => {
      actAs(request, request.params.name).answerRequest(request.params.name, request.params.id, request.body);
      return reply.code(204).send();
    },
  );
}
