// The guest-file catalog (issue 15): builds as jobs, status, search across points and VMs, a
// file's versions, and single-file restore as a byte stream.

import type { FastifyInstance } from 'fastify';
import { vmError } from '../../errors.js';
import type { CatalogApi } from '../catalog-api.js';
import type { JobRunner } from '../jobs.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody, jobStarted, pointName, shareName, snapshotName, vmName } from '../schemas.js';

const notFound = { description: 'No such VM, share, point or file.', ...errorBody };
const str = (title: string, description: string) => ({ type: 'string', title, minLength: 1, maxLength: 4096, description }) as const;

const findHit = {
  type: 'object',
  required: ['vm', 'share', 'point', 'image', 'volume', 'path', 'type', 'size', 'mtime'],
  properties: {
    vm: { type: ['string', 'null'], description: 'The VM whose share holds the point, if any.' },
    share: { type: 'string' },
    point: { type: 'string' },
    image: { type: 'string', description: 'The disk image file in the point, e.g. vda.raw.' },
    volume: { type: 'string', description: "The partition or logical volume: 'p1', 'lvm-vg0-root', 'disk'." },
    path: { type: 'string' },
    type: { type: 'string', enum: ['file', 'dir', 'symlink', 'other'] },
    size: { type: 'number' },
    mtime: { type: 'string', format: 'date-time' },
  },
} as const;

const versionHit = {
  type: 'object',
  required: ['vm', 'share', 'point', 'image', 'volume', 'path', 'size', 'mtime', 'change'],
  properties: {
    ...findHit.properties,
    change: { type: ['string', 'null'], enum: ['new', 'size', 'mtime', 'content', null], description: 'What changed since the previous point holding the file; null: nothing.' },
  },
} as const;

const statusItem = {
  type: 'object',
  required: ['vm', 'share', 'point', 'created', 'state'],
  properties: {
    vm: { type: ['string', 'null'] },
    share: { type: 'string' },
    point: { type: 'string' },
    created: { type: 'string', format: 'date-time' },
    state: { type: 'string', enum: ['cataloged', 'failed', 'none'] },
    files: { type: 'number' },
    built: { type: 'string' },
    error: { type: 'string' },
    images: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          path: { type: 'string' },
          format: { type: ['string', 'null'] },
          note: { type: ['string', 'null'] },
          volumes: {
            type: 'array',
            items: {
              type: 'object',
              properties: { name: { type: 'string' }, fs: { type: 'string' }, files: { type: 'number' }, note: { type: ['string', 'null'] }, reusedFrom: { type: ['string', 'null'] } },
            },
          },
        },
      },
    },
  },
} as const;

/** '30d', '12h', '90m', '2w' or an ISO 8601 time -> ms since the epoch. */
export function parseSince(s: string, now = Date.now()): number {
  const m = /^(\d+)([mhdw])$/.exec(s);
  if (m) return now - Number(m[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[m[2] as 'm' | 'h' | 'd' | 'w'];
  const t = Date.parse(s);
  if (!/^\d{4}-\d\d-\d\d/.test(s) || Number.isNaN(t)) throw vmError('INVALID_ARGUMENT', `since ${JSON.stringify(s)}: expected a duration such as 30d, 12h, 90m, 2w, or an ISO 8601 time`);
  return t;
}

/** '1500', '10k', '4M', '2G' (powers of 1024) -> bytes. */
export function parseSize(s: string, what: string): number {
  const m = /^(\d+)([kKmMgGtT]?)$/.exec(s);
  if (!m) throw vmError('INVALID_ARGUMENT', `${what} ${JSON.stringify(s)}: expected a byte count such as 1500, 10k, 4M or 2G`);
  return Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase());
}

function oneOf(q: { vm?: string; share?: string }): void {
  if (q.vm !== undefined && q.share !== undefined) throw vmError('INVALID_ARGUMENT', 'name a vm or a share, not both');
}

export async function catalogRoutes(app: FastifyInstance, deps: { catalog: CatalogApi; jobs: JobRunner }): Promise<void> {
  const { catalog, jobs } = deps;

  app.post<{ Body: { vm?: string; share?: string; point?: string; images?: string[] } }>(
    '/catalog/builds',
    {
      schema: routeSchema({
        operationId: 'buildCatalog',
        summary: "Build (or rebuild) a restore point's catalog of guest files (a job)",
        tags: ['catalog'],
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            vm: vmName,
            share: shareName,
            point: snapshotName,
            images: { type: 'array', maxItems: 64, items: str('image', 'An image file of the snapshot, relative to it.') },
          },
        },
        bodyOptional: false,
        response: { 202: { description: 'Started; poll /api/v1/jobs/{job}.', ...jobStarted }, ...commonErrors, 404: notFound },
      }),
    },
    async (request, reply) => {
      const b = request.body;
      oneOf(b);
      if (b.vm === undefined && b.share === undefined) throw vmError('INVALID_ARGUMENT', 'name a vm or a share to catalog');
      const t = await catalog.checkBuild(b);
      const job = jobs.start('catalog', `${t.share} point ${t.point}`, (ctx) => catalog.build(ctx, { ...t, images: b.images }));
      return reply.code(202).header('location', `${app.prefix}/jobs/${job.id}`).send({ job: job.id });
    },
  );

  app.get<{ Querystring: { vm?: string; share?: string } }>(
    '/catalog',
    {
      schema: routeSchema({
        operationId: 'catalogStatus',
        summary: 'Which restore points have a catalog, with their images, volumes, file counts and notes',
        tags: ['catalog'],
        querystring: { type: 'object', additionalProperties: false, properties: { vm: vmName, share: shareName } },
        response: { 200: { type: 'object', required: ['points'], properties: { points: { type: 'array', items: statusItem } } }, ...commonErrors, 404: notFound },
      }),
    },
    async (request) => {
      oneOf(request.query);
      return { points: await catalog.status(request.query) };
    },
  );

  app.get<{ Querystring: { pattern: string; vm?: string; share?: string; since?: string; pathPrefix?: string; minSize?: string; maxSize?: string; limit?: string } }>(
    '/catalog/find',
    {
      schema: routeSchema({
        operationId: 'findFiles',
        summary: 'Every cataloged restore point holding a file whose name matches a pattern (a shell glob: * ? [...])',
        tags: ['catalog'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['pattern'],
          properties: {
            pattern: { type: 'string', minLength: 1, maxLength: 255, description: 'A file name or a glob of one.' },
            vm: vmName,
            share: shareName,
            since: { type: 'string', maxLength: 64, description: 'Only points since: 30d, 12h, 90m, 2w, or an ISO 8601 time.' },
            pathPrefix: { type: 'string', pattern: '^/', maxLength: 4096, description: 'Only paths under this directory (absolute, in the guest).' },
            minSize: { type: 'string', maxLength: 32, description: 'Bytes, or with k, M, G, T.' },
            maxSize: { type: 'string', maxLength: 32, description: 'Bytes, or with k, M, G, T.' },
            limit: { type: 'string', pattern: '^[1-9][0-9]{0,5}$', description: 'At most this many results (default 1000).' },
          },
        },
        response: { 200: { type: 'object', required: ['files'], properties: { files: { type: 'array', items: findHit } } }, ...commonErrors, 404: notFound },
      }),
    },
    async (request) => {
      const q = request.query;
      oneOf(q);
      const files = await catalog.find({
        pattern: q.pattern,
        vm: q.vm,
        share: q.share,
        sinceMs: q.since === undefined ? undefined : parseSince(q.since),
        pathPrefix: q.pathPrefix,
        minSize: q.minSize === undefined ? undefined : parseSize(q.minSize, 'minSize'),
        maxSize: q.maxSize === undefined ? undefined : parseSize(q.maxSize, 'maxSize'),
        limit: q.limit === undefined ? undefined : Number(q.limit),
      });
      return { files };
    },
  );

  app.get<{ Querystring: { path: string; vm?: string; share?: string } }>(
    '/catalog/versions',
    {
      schema: routeSchema({
        operationId: 'fileVersions',
        summary: 'The cataloged points of a VM (or share) holding a file, and what changed at each: size, mtime or extents',
        tags: ['catalog'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['path'],
          properties: { path: { type: 'string', pattern: '^/', maxLength: 4096 }, vm: vmName, share: shareName },
        },
        response: { 200: { type: 'object', required: ['versions'], properties: { versions: { type: 'array', items: versionHit } } }, ...commonErrors, 404: notFound },
      }),
    },
    async (request) => {
      const q = request.query;
      oneOf(q);
      if (q.vm === undefined && q.share === undefined) throw vmError('INVALID_ARGUMENT', 'name a vm or a share');
      return { versions: await catalog.versions(q) };
    },
  );

  const fileQuery = {
    type: 'object',
    additionalProperties: false,
    required: ['path'],
    properties: {
      path: { type: 'string', pattern: '^/', maxLength: 4096, description: 'Absolute path of the file in the guest.' },
      image: str('image', 'The image file of the point (default: the first holding the path).'),
      volume: str('volume', "The volume ('p1', 'lvm-vg0-root'; default: the first holding the path)."),
    },
  } as const;
  const fileResponse = {
    200: { description: "The file's bytes (application/octet-stream)." },
    ...commonErrors,
    404: notFound,
  };
  const send = async (reply: import('fastify').FastifyReply, q: Parameters<CatalogApi['openFile']>[0]) => {
    const f = await catalog.openFile(q);
    return reply
      .header('content-type', 'application/octet-stream')
      .header('content-length', String(f.size))
      .header('content-disposition', `attachment; filename="${f.name.replace(/["\\\r\n]/g, '_')}"`)
      .header('last-modified', new Date(f.mtimeMs).toUTCString())
      .send(f.stream());
  };

  app.get<{ Params: { name: string; point: string }; Querystring: { path: string; image?: string; volume?: string } }>(
    '/vms/:name/points/:point/files',
    {
      schema: routeSchema({
        operationId: 'readVmFile',
        summary: "One file of a VM's restore point, streamed from the store by its cataloged extents ('latest': the newest cataloged point)",
        tags: ['catalog'],
        params: { type: 'object', required: ['name', 'point'], properties: { name: vmName, point: pointName } },
        querystring: fileQuery,
        response: fileResponse,
      }),
    },
    async (request, reply) => send(reply, { vm: request.params.name, point: request.params.point, ...request.query }),
  );

  app.get<{ Params: { name: string; snapshot: string }; Querystring: { path: string; image?: string; volume?: string } }>(
    '/shares/:name/snapshots/:snapshot/files',
    {
      schema: routeSchema({
        operationId: 'readSnapshotFile',
        summary: 'One guest file of a disk image in a snapshot, streamed by its cataloged extents',
        tags: ['catalog'],
        params: { type: 'object', required: ['name', 'snapshot'], properties: { name: shareName, snapshot: snapshotName } },
        querystring: fileQuery,
        response: fileResponse,
      }),
    },
    async (request, reply) => send(reply, { share: request.params.name, point: request.params.snapshot, ...request.query }),
  );
}
