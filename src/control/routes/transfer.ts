// The HTTP edge of the transfer protocol (src/transfer/PROTOCOL.md): thin, as every route is.
// Session messages are JSON; fingerprints, segments and recipes are binary frames under their
// own media type, with a body limit of one frame. Agent tokens may call these routes.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { vmError } from '../../errors.js';
import { FRAME_CONTENT_TYPE, LIMITS } from '../../transfer/frames.js';
import type { OpenRequest } from '../../transfer/messages.js';
import type { TransferCaller, TransferReceiver } from '../../transfer/receiver.js';
import { frameBodyParser, releaseFrameBody } from '../frame-body.js';
import { routeSchema } from '../openapi.js';
import { commonErrors, errorBody } from '../schemas.js';

const sessionId = { type: 'string', minLength: 1, maxLength: 64, pattern: '^[0-9a-f]+$' } as const;
// Replication tokens (clone copies from another appliance, issue 14) send through these too.
const agentRoute = { agent: true, replication: true } as const;
const notFound = { 404: { description: 'No such session (finished, expired, or another caller\'s).', ...errorBody } } as const;
const binary = { description: 'A binary frame (PROTOCOL.md).', type: 'string', format: 'binary' } as const;
const loose = { type: 'object', additionalProperties: true } as const;

function callerOf(request: FastifyRequest): TransferCaller {
  const c = request.caller;
  if (c?.kind === 'admin') return { kind: 'admin' };
  if (c?.kind === 'agent') return { kind: 'agent', name: c.name, trusted: c.trusted, ...(c.replication ? { replication: true } : {}) };
  throw vmError('UNAUTHORIZED', 'a valid API token is required');
}

function frameBody(request: FastifyRequest): Buffer {
  if (!Buffer.isBuffer(request.body)) throw vmError('INVALID_ARGUMENT', `send the frame as ${FRAME_CONTENT_TYPE}`);
  return request.body;
}

/** Runs a frame route, then gives the frame's buffer back (the receiver keeps no view of it once it answered). */
async function withFrame<T>(request: FastifyRequest, fn: (frame: Buffer) => Promise<T>): Promise<T> {
  try {
    return await fn(frameBody(request));
  } finally {
    releaseFrameBody(request.body);
  }
}

export async function transferRoutes(app: FastifyInstance, receiver: TransferReceiver): Promise<void> {
  await app.register(async (tx) => {
    // Frames are read into reused buffers (frame-body.ts); each frame route gives its buffer back.
    tx.addContentTypeParser(FRAME_CONTENT_TYPE, { bodyLimit: LIMITS.frameBytes }, frameBodyParser(LIMITS.frameBytes));

    tx.get(
      '/transfer/hello',
      {
        config: agentRoute,
        schema: routeSchema({
          operationId: 'transferHello',
          summary: 'The transfer protocol version and the store\'s segmenter parameters',
          tags: ['transfer'],
          response: { 200: loose, ...commonErrors },
        }),
      },
      async () => receiver.hello(),
    );

    tx.post<{ Body: OpenRequest }>(
      '/transfer/sessions',
      {
        config: agentRoute,
        bodyLimit: 16 * 1024 * 1024,
        schema: routeSchema({
          operationId: 'transferOpen',
          summary: 'Open (or resume, by task id) a session sending one file into a share',
          tags: ['transfer'],
          body: {
            type: 'object',
            required: ['protocol', 'share', 'path', 'size'],
            additionalProperties: false,
            properties: {
              protocol: { type: 'integer' },
              share: { type: 'string', minLength: 1, maxLength: 255 },
              path: { type: 'string', minLength: 1, maxLength: 4096 },
              size: { type: 'integer', minimum: 0 },
              taskId: { type: 'string', minLength: 1, maxLength: 128 },
              ranges: {
                type: 'array',
                maxItems: 1_000_000,
                items: { type: 'object', required: ['offset', 'length'], additionalProperties: false, properties: { offset: { type: 'integer', minimum: 0 }, length: { type: 'integer', minimum: 0 } } },
              },
            },
          },
          response: { 200: loose, ...commonErrors, 404: { description: 'No such share.', ...errorBody } },
        }),
      },
      async (request) => receiver.open(callerOf(request), request.body),
    );

    tx.post<{ Params: { id: string }; Body: { from: number } }>(
      '/transfer/sessions/:id/boundaries',
      {
        config: agentRoute,
        schema: routeSchema({
          operationId: 'transferBoundaries',
          summary: 'Segment boundaries of the file\'s old version from an offset (incrementals)',
          tags: ['transfer'],
          params: { type: 'object', required: ['id'], properties: { id: sessionId } },
          body: { type: 'object', required: ['from'], additionalProperties: false, properties: { from: { type: 'integer', minimum: 0 } } },
          response: { 200: loose, ...commonErrors, ...notFound },
        }),
      },
      async (request) => receiver.boundaries(callerOf(request), request.params.id, request.body.from),
    );

    const frameRoute = (name: 'query' | 'segments' | 'recipe', summary: string) => ({
      config: agentRoute,
      bodyLimit: LIMITS.frameBytes,
      schema: routeSchema({
        operationId: `transfer${name[0].toUpperCase()}${name.slice(1)}`,
        summary,
        tags: ['transfer'],
        params: { type: 'object', required: ['id'], properties: { id: sessionId } },
        // Not validated as JSON: the frame decoder checks every byte (frames.ts).
        body: { description: `A binary frame (PROTOCOL.md), sent as ${FRAME_CONTENT_TYPE}.` },
        response: { 200: name === 'query' ? binary : loose, ...commonErrors, ...notFound, 422: { description: 'A segment does not hash to its fingerprint; refused.', ...errorBody } },
      }),
    });

    tx.post<{ Params: { id: string } }>('/transfer/sessions/:id/query', frameRoute('query', 'Which of these (fingerprint, length) pairs the appliance lacks, in the caller\'s scope'), async (request, reply) => {
      const out = await withFrame(request, (frame) => receiver.query(callerOf(request), request.params.id, frame));
      return reply.type(FRAME_CONTENT_TYPE).send(out);
    });
    tx.post<{ Params: { id: string } }>('/transfer/sessions/:id/segments', frameRoute('segments', 'Segments the appliance lacks: re-hashed, then stored'), async (request) =>
      withFrame(request, (frame) => receiver.segments(callerOf(request), request.params.id, frame, request.ip)),
    );
    tx.post<{ Params: { id: string } }>('/transfer/sessions/:id/recipe', frameRoute('recipe', 'The next part of the file, as segments and zero runs in order'), async (request) =>
      withFrame(request, (frame) => receiver.recipe(callerOf(request), request.params.id, frame)),
    );

    tx.post<{ Params: { id: string } }>(
      '/transfer/sessions/:id/finish',
      {
        config: agentRoute,
        schema: routeSchema({
          operationId: 'transferFinish',
          summary: 'Build the file\'s new version and install it at its path (atomic per file)',
          tags: ['transfer'],
          params: { type: 'object', required: ['id'], properties: { id: sessionId } },
          body: { type: 'object', additionalProperties: false, properties: {} },
          bodyOptional: true,
          response: { 200: loose, ...commonErrors, ...notFound, 409: { description: 'The file changed meanwhile, or is open for writing.', ...errorBody } },
        }),
      },
      async (request) => receiver.finish(callerOf(request), request.params.id),
    );

    tx.delete<{ Params: { id: string } }>(
      '/transfer/sessions/:id',
      {
        config: agentRoute,
        schema: routeSchema({
          operationId: 'transferAbort',
          summary: 'Give up a session (the file keeps its content)',
          tags: ['transfer'],
          params: { type: 'object', required: ['id'], properties: { id: sessionId } },
          response: { 204: { description: 'Dropped.', type: 'null' }, ...commonErrors, ...notFound },
        }),
      },
      async (request, reply) => {
        await receiver.abort(callerOf(request), request.params.id);
        return reply.code(204).send();
      },
    );
  });
}
