// Destinations and clone copies (issue 14 part B): /destinations (add, list, show, remove,
// verify) and POST /vms/{vm}/clones, which starts a `clone` job copying one restore point to a
// destination. The policy layer's CloneService validates everything; these routes type bodies.
// A destination's token goes in and never comes out (views drop it).

import type { FastifyInstance } from 'fastify';
import type { NewDestination } from '../../policy/destinations.js';
import type { CloneService } from '../../policy/clone-service.js';
import type { JobRunner } from '../jobs.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody, jobStarted, pointName, vmName } from '../schemas.js';

export type CloneApi = CloneService;

const destName = { type: 'string', title: 'destination name', minLength: 1, maxLength: 63, description: "1-63 letters, digits, '.', '_' or '-', starting with a letter or digit." } as const;
const params = { type: 'object', required: ['name'], properties: { name: destName } } as const;
const loose = { type: 'object', additionalProperties: true } as const;
const destView = {
  type: 'object',
  required: ['name', 'kind', 'createdAt'],
  properties: { name: destName, kind: { type: 'string', enum: ['appliance', 'dir'] }, url: { type: 'string' }, pin: { type: 'string' }, path: { type: 'string' }, createdAt: { type: 'string' } },
} as const;
const notFound = { 404: { description: 'No such destination.', ...errorBody } } as const;

export async function cloneRoutes(app: FastifyInstance, { clones, jobs }: { clones: CloneApi; jobs: JobRunner }): Promise<void> {
  app.get(
    '/destinations',
    {
      schema: routeSchema({
        operationId: 'listDestinations',
        summary: 'Destinations of clone copies (tokens are never shown)',
        tags: ['destinations'],
        response: { 200: { type: 'object', required: ['destinations'], properties: { destinations: { type: 'array', items: destView } } }, 401: commonErrors[401] },
      }),
    },
    async () => ({ destinations: clones.listDestinations() }),
  );

  app.post<{ Body: NewDestination }>(
    '/destinations',
    {
      schema: routeSchema({
        operationId: 'addDestination',
        summary: 'Add a destination: another appliance (URL, replication token, optional certificate pin) or a directory',
        tags: ['destinations'],
        body: {
          type: 'object',
          required: ['name'],
          additionalProperties: false,
          properties: {
            name: destName,
            appliance: { type: 'string', maxLength: 2048, description: 'https://HOST:7443' },
            token: { type: 'string', maxLength: 4096, description: "The destination's replication token (kept mode 0600, never shown)." },
            pin: { type: 'string', maxLength: 200, description: "The destination certificate's SHA-256 fingerprint." },
            dir: { type: 'string', maxLength: 4096, description: 'An absolute directory path on this appliance.' },
          },
        },
        response: { 201: { description: 'Added.', ...destView }, ...commonErrors, 409: { description: 'A destination with that name exists.', ...errorBody } },
      }),
    },
    async (request, reply) => {
      const d = await clones.addDestination(request.body);
      return reply.code(201).header('location', `${app.prefix}/destinations/${encodeURIComponent(d.name)}`).send(d);
    },
  );

  app.get<{ Params: { name: string } }>(
    '/destinations/:name',
    {
      schema: routeSchema({
        operationId: 'getDestination',
        summary: 'One destination, the copies it holds and the policies that name it',
        tags: ['destinations'],
        params,
        response: { 200: loose, ...commonErrors, ...notFound },
      }),
    },
    async (request) => clones.showDestination(request.params.name),
  );

  app.delete<{ Params: { name: string } }>(
    '/destinations/:name',
    {
      schema: routeSchema({
        operationId: 'removeDestination',
        summary: 'Remove a destination (refused while a policy names it); the copies there stay',
        tags: ['destinations'],
        params,
        response: { 204: { description: 'Removed.', type: 'null' }, ...commonErrors, ...notFound, 409: { description: 'A policy names it.', ...errorBody } },
      }),
    },
    async (request, reply) => {
      await clones.removeDestination(request.params.name);
      return reply.code(204).send();
    },
  );

  app.post<{ Params: { name: string }; Body: { point?: string } }>(
    '/destinations/:name/verify',
    {
      schema: routeSchema({
        operationId: 'verifyDestination',
        summary: 'Check the copies a destination holds (a directory archive: every segment re-hashed; a flipped byte is named)',
        tags: ['destinations'],
        params,
        body: { type: 'object', additionalProperties: false, properties: { point: pointName } },
        bodyOptional: true,
        response: { 200: loose, ...commonErrors, ...notFound },
      }),
    },
    async (request) => clones.verifyDestination(request.params.name, request.body?.point),
  );

  app.post<{ Params: { vm: string }; Body: { to: string; point?: string } }>(
    '/vms/:vm/clones',
    {
      schema: routeSchema({
        operationId: 'cloneVm',
        summary: "Copy a VM's restore point (newest by default) to a destination, verified there (a clone job)",
        tags: ['destinations'],
        params: { type: 'object', required: ['vm'], properties: { vm: vmName } },
        body: { type: 'object', required: ['to'], additionalProperties: false, properties: { to: destName, point: pointName } },
        response: { 202: { description: 'Started; poll /api/v1/jobs/{job}.', ...jobStarted }, ...commonErrors, 404: { description: 'No such VM, point or destination.', ...errorBody } },
      }),
    },
    async (request, reply) => {
      const { vm } = request.params;
      const { to, point } = request.body;
      await clones.check(vm, to, point);
      const job = jobs.start('clone', `vm ${vm} -> ${to}`, (ctx) => clones.clone(vm, to, point, { signal: ctx.signal, progress: (d, t) => ctx.progress(d, t, 'bytes', 'copying'), log: (l) => ctx.log(l) }), {
        resource: `clone:${vm}:${to}`,
      });
      return reply.code(202).header('location', `${app.prefix}/jobs/${job.id}`).send({ job: job.id });
    },
  );
}
