// Exports of shares to hypervisors over NFS and SMB (issue 16): list, enable, disable, and the
// SMB account's password. The appliance's src/export/ does the work; absent (a control plane
// without export servers), the list is empty and every change answers NOT_SUPPORTED.

import type { FastifyInstance } from 'fastify';
import { vmError } from '../../errors.js';
import { validateName } from '../../namespace/names.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody, shareName } from '../schemas.js';
import type { ExportControl, ExportProtocol } from '../services.js';
import type { RouteDeps } from './deps.js';

const exportView = {
  type: 'object',
  required: ['protocol', 'share', 'clients', 'url', 'state', 'enabledAt'],
  properties: {
    protocol: { type: 'string', enum: ['nfs', 'smb'] },
    share: { type: 'string' },
    clients: { type: 'array', items: { type: 'string' }, description: 'CIDR networks allowed to use the export.' },
    url: { type: 'string', description: 'nfs://HOST:PORT/<share> or smb://HOST:PORT/<share>.' },
    state: {
      type: 'string',
      enum: ['active', 'starting', 'down', 'unavailable'],
      description: 'active: served; starting: its server is (re)starting; down: its server is not running (detail says why); unavailable: cannot be served in this configuration.',
    },
    detail: { type: 'string' },
    enabledAt: { type: 'string', format: 'date-time' },
  },
} as const;

const protocolParam = { type: 'string', title: 'protocol', enum: ['nfs', 'smb'], description: 'nfs or smb.' } as const;
const exportParams = { type: 'object', required: ['protocol', 'share'], properties: { protocol: protocolParam, share: shareName } } as const;

function control(exports: ExportControl | undefined): ExportControl {
  if (exports === undefined) throw vmError('NOT_SUPPORTED', 'this appliance does not serve exports');
  return exports;
}

export async function exportRoutes(app: FastifyInstance, { services }: RouteDeps): Promise<void> {
  app.get(
    '/exports',
    {
      schema: routeSchema({
        operationId: 'listExports',
        summary: 'Every NFS and SMB export with its URL, clients and state',
        tags: ['exports'],
        response: { 200: { type: 'object', required: ['exports'], properties: { exports: { type: 'array', items: exportView } } }, 401: commonErrors[401] },
      }),
    },
    // Without export servers there are no exports: an empty list, not an error.
    async () => ({ exports: services.exports === undefined ? [] : await services.exports.list() }),
  );

  app.post<{ Params: { protocol: ExportProtocol; share: string }; Body: { clients?: string[] } }>(
    '/exports/:protocol/:share',
    {
      schema: routeSchema({
        operationId: 'enableExport',
        summary: 'Export a share over NFS or SMB to a client allow-list (default: this host only); the server is reconfigured before the answer',
        tags: ['exports'],
        params: exportParams,
        bodyOptional: true,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: { clients: { type: 'array', items: { type: 'string' }, maxItems: 64, description: 'CIDR networks, e.g. ["10.0.0.0/24", "192.0.2.7"].' } },
        },
        response: {
          201: { description: 'Exported.', ...exportView },
          ...commonErrors,
          404: { description: 'No such share.', ...errorBody },
          409: { description: 'The share is already exported over that protocol.', ...errorBody },
          501: { description: 'No export servers here.', ...errorBody },
        },
      }),
    },
    async (request, reply) => {
      validateName('share', request.params.share);
      const view = await control(services.exports).enable(request.params.protocol, request.params.share, request.body?.clients);
      return reply.code(201).send(view);
    },
  );

  app.delete<{ Params: { protocol: ExportProtocol; share: string } }>(
    '/exports/:protocol/:share',
    {
      schema: routeSchema({
        operationId: 'disableExport',
        summary: 'Stop exporting a share over NFS or SMB (the server is reconfigured, or stopped when nothing is left)',
        tags: ['exports'],
        params: exportParams,
        response: { 204: { description: 'No longer exported.' }, ...commonErrors, 404: { description: 'The share is not exported over that protocol.', ...errorBody }, 501: { description: 'No export servers here.', ...errorBody } },
      }),
    },
    async (request, reply) => {
      validateName('share', request.params.share);
      await control(services.exports).disable(request.params.protocol, request.params.share);
      return reply.code(204).send();
    },
  );

  app.put<{ Body: { user?: string; password: string } }>(
    '/exports/smb/password',
    {
      schema: routeSchema({
        operationId: 'setSmbPassword',
        summary: "Set the SMB account's password (a local Unix user, default root); kept only as Samba's hash, never logged",
        tags: ['exports'],
        body: {
          type: 'object',
          required: ['password'],
          additionalProperties: false,
          properties: {
            user: { type: 'string', minLength: 1, maxLength: 32, description: 'The local Unix user SMB clients log in as (default: the current one, else root).' },
            password: { type: 'string', minLength: 8, maxLength: 256, writeOnly: true },
          },
        },
        response: {
          200: { type: 'object', required: ['user'], properties: { user: { type: 'string' } } },
          ...commonErrors,
          501: { description: 'No export servers here.', ...errorBody },
        },
      }),
    },
    async (request) => control(services.exports).setSmbPassword(request.body.user, request.body.password),
  );
}
