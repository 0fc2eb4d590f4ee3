// Agent tokens (agent-tokens.ts): made, listed and revoked by the admin token only. The token
// itself is in the answer to create and nowhere else, ever.

import type { FastifyInstance } from 'fastify';
import type { AgentTokens } from '../agent-tokens.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody } from '../schemas.js';

const agentName = { type: 'string', minLength: 1, maxLength: 64 } as const;
const tokenInfo = {
  type: 'object',
  required: ['name', 'trusted', 'created'],
  properties: { name: { type: 'string' }, trusted: { type: 'boolean' }, created: { type: 'string' }, scope: { type: 'string' } },
} as const;

export async function agentTokenRoutes(app: FastifyInstance, tokens: AgentTokens): Promise<void> {
  app.post<{ Body: { name: string; trusted?: boolean; scope?: 'agent' | 'replication' } }>(
    '/agents/tokens',
    {
      schema: routeSchema({
        operationId: 'createAgentToken',
        summary: 'Make an agent token (shown once); trusted agents get store-wide dedup answers',
        tags: ['agents'],
        body: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: agentName, trusted: { type: 'boolean' }, scope: { type: 'string', enum: ['agent', 'replication'], description: "'replication': a token another appliance uses to send clone copies here (issue 14)." } } },
        response: {
          201: { type: 'object', required: ['name', 'token', 'trusted'], properties: { name: { type: 'string' }, token: { type: 'string' }, trusted: { type: 'boolean' }, scope: { type: 'string' } } },
          ...commonErrors,
          409: { description: 'A token of that name exists.', ...errorBody },
        },
      }),
    },
    async (request, reply) => reply.code(201).send(await tokens.create(request.body.name, { trusted: request.body.trusted, scope: request.body.scope })),
  );
  app.get(
    '/agents/tokens',
    {
      schema: routeSchema({
        operationId: 'listAgentTokens',
        summary: 'Agent tokens by name (never the tokens themselves)',
        tags: ['agents'],
        response: { 200: { type: 'array', items: tokenInfo }, ...commonErrors },
      }),
    },
    async () => tokens.list(),
  );
  app.delete<{ Params: { name: string } }>(
    '/agents/tokens/:name',
    {
      schema: routeSchema({
        operationId: 'revokeAgentToken',
        summary: 'Revoke an agent token: refused from the next request on',
        tags: ['agents'],
        params: { type: 'object', required: ['name'], properties: { name: agentName } },
        response: { 204: { description: 'Revoked.', type: 'null' }, ...commonErrors, 404: { description: 'No such token.', ...errorBody } },
      }),
    },
    async (request, reply) => {
      await tokens.revoke(request.params.name);
      return reply.code(204).send();
    },
  );
}
