// The receiving side of clone copies (issue 14, control/replicas.ts): routes another appliance
// calls with a replication token (or the admin token) around its transfer sessions: make the
// target share, snapshot it as the point with the point's lock, describe and verify a snapshot,
// and serve a segment by fingerprint (a copy used for best-copy restore and repair).

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { vmError } from '../../errors.js';
import { encodeQueryReply, encodeSegments, FRAME_CONTENT_TYPE, LIMITS, SegmentCodec } from '../../transfer/frames.js';
import { routeSchema } from '../openapi.js';
import type { ReplicaCaller, ReplicaService } from '../replicas.js';
import { commonErrors, errorBody, shareName, snapshotName } from '../schemas.js';

const replication = { replication: true } as const;
const loose = { type: 'object', additionalProperties: true } as const;
const forbidden = { 403: { description: 'The share is not a clone target of this replication token.', ...errorBody } } as const;
const notFound = { 404: { description: 'No such share or snapshot.', ...errorBody } } as const;

function callerOf(request: FastifyRequest): ReplicaCaller {
  const c = request.caller;
  if (c?.kind === 'admin') return { admin: true };
  if (c?.kind === 'agent' && c.replication === true) return { admin: false, name: c.name };
  throw vmError('FORBIDDEN', 'a replication token (vmvault agent token create NAME --replication) or the admin token is needed');
}

export async function replicaRoutes(app: FastifyInstance, replicas: ReplicaService): Promise<void> {
  app.post<{ Body: { share: string } }>(
    '/replicas/shares',
    {
      config: replication,
      schema: routeSchema({
        operationId: 'claimReplicaShare',
        summary: 'Make a share as a clone target of the calling replication token (or confirm it owns it)',
        tags: ['replicas'],
        body: { type: 'object', required: ['share'], additionalProperties: false, properties: { share: shareName } },
        response: { 200: loose, ...commonErrors, ...forbidden },
      }),
    },
    async (request) => replicas.claim(callerOf(request), request.body.share),
  );

  app.get<{ Params: { share: string } }>(
    '/replicas/shares/:share/snapshots',
    {
      config: replication,
      schema: routeSchema({
        operationId: 'listReplicaSnapshots',
        summary: "A clone target's snapshots (the points cloned so far) and their locks",
        tags: ['replicas'],
        params: { type: 'object', required: ['share'], properties: { share: shareName } },
        response: { 200: loose, ...commonErrors, ...forbidden, ...notFound },
      }),
    },
    async (request) => ({ snapshots: await replicas.list(callerOf(request), request.params.share) }),
  );

  app.post<{ Params: { share: string }; Body: { name: string; lockedUntil?: string; files?: string[] } }>(
    '/replicas/shares/:share/snapshots',
    {
      config: replication,
      schema: routeSchema({
        operationId: 'snapshotReplica',
        summary: 'Snapshot a clone target as the point just sent, with its retention lock (idempotent)',
        tags: ['replicas'],
        params: { type: 'object', required: ['share'], properties: { share: shareName } },
        body: {
          type: 'object',
          required: ['name'],
          additionalProperties: false,
          properties: {
            name: snapshotName,
            lockedUntil: { type: 'string', maxLength: 64, description: 'ISO 8601: the point\'s lock end; enforced here too.' },
            files: { type: 'array', maxItems: 65536, items: { type: 'string', minLength: 1, maxLength: 4096 }, description: "The point's file paths: any other file of the share (an earlier point's) is removed before the snapshot." },
          },
        },
        response: { 200: loose, ...commonErrors, ...forbidden, ...notFound },
      }),
    },
    async (request) => replicas.snapshot(callerOf(request), request.params.share, request.body.name, request.body.lockedUntil, request.body.files),
  );

  app.get<{ Params: { share: string; snap: string }; Querystring: { verify?: 'quick' | 'full' } }>(
    '/replicas/shares/:share/snapshots/:snap',
    {
      config: replication,
      schema: routeSchema({
        operationId: 'describeReplica',
        summary: "A cloned point's files and segment-tree roots; ?verify=quick checks every segment is here, ?verify=full re-reads and re-hashes them",
        tags: ['replicas'],
        params: { type: 'object', required: ['share', 'snap'], properties: { share: shareName, snap: snapshotName } },
        querystring: { type: 'object', additionalProperties: false, properties: { verify: { type: 'string', enum: ['quick', 'full'], description: 'quick: every segment the trees name is in the store (the roots then prove the content); full: read and re-hash them all.' } } },
        response: { 200: loose, ...commonErrors, ...forbidden, ...notFound },
      }),
    },
    async (request) => replicas.describe(callerOf(request), request.params.share, request.params.snap, request.query.verify),
  );

  app.get<{ Params: { fp: string } }>(
    '/replicas/segments/:fp',
    {
      config: replication,
      schema: routeSchema({
        operationId: 'getReplicaSegment',
        summary: "A segment's plain bytes by fingerprint (re-hashed when read here; the caller checks them again)",
        tags: ['replicas'],
        params: { type: 'object', required: ['fp'], properties: { fp: { type: 'string', pattern: '^[0-9a-f]{64}$' } } },
        response: { 200: { description: 'The plain bytes.', type: 'string', format: 'binary' }, ...commonErrors, ...forbidden, 404: { description: 'This store lacks the segment.', ...errorBody } },
      }),
    },
    async (request, reply) => {
      const got = await replicas.segment(callerOf(request), request.params.fp);
      if (got === null) throw vmError('NOT_FOUND', `segment ${request.params.fp.slice(0, 16)} is not here`);
      return reply.type('application/octet-stream').send(got);
    },
  );

  app.post<{ Body: { fingerprints: string[] } }>(
    '/replicas/segments',
    {
      config: replication,
      schema: routeSchema({
        operationId: 'getReplicaSegments',
        summary: 'Several segments by fingerprint in one answer (best-copy restore and repair on the sending appliance): a QueryReply frame (bit set: not here) then a Segments frame',
        tags: ['replicas'],
        body: {
          type: 'object',
          required: ['fingerprints'],
          additionalProperties: false,
          properties: { fingerprints: { type: 'array', minItems: 1, maxItems: SEGMENTS_PER_REQUEST, items: { type: 'string', pattern: '^[0-9a-f]{64}$' } } },
        },
        response: { 200: { description: 'Two frames (transfer/PROTOCOL.md, "Segments by fingerprint"): which of a prefix of the list are absent, then the plain bytes of the others.', type: 'string', format: 'binary' }, ...commonErrors, ...forbidden },
      }),
    },
    async (request, reply) => {
      const got = await replicas.segments(callerOf(request), request.body.fingerprints, ANSWER_BYTES);
      const held = got.flatMap((b, i) => (b ? [{ fp: Buffer.from(request.body.fingerprints[i], 'hex'), len: b.length, codec: SegmentCodec.Raw, payload: b }] : []));
      const frames = Buffer.concat([encodeQueryReply(got.map((b) => b === null)), encodeSegments(held)]);
      return reply.type(FRAME_CONTENT_TYPE).send(frames);
    },
  );
}

/** Fingerprints one POST /replicas/segments may ask for. */
export const SEGMENTS_PER_REQUEST = LIMITS.segmentCount;
/** Segment bytes one answer carries at most (the rest of the list is asked again). */
const ANSWER_BYTES = 32 * 1024 * 1024;
