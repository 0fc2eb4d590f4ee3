// Binary frame bodies (src/transfer/PROTOCOL.md) read into reused buffers. Fastify's buffer
// parser collects a body's chunks and joins them into a fresh buffer per request: for the
// 4-5 MiB segment frames of an agent that is new memory faulted in page by page, then garbage,
// and took ~1.4 s of the appliance's main thread per 460 MiB received (profile in
// tools/PERFORMANCE.md, agentspeed2). Here each chunk is copied as it arrives into a buffer of
// a small pool, sized by Content-Length, and the route gives the buffer back when it is done
// with the frame: the frame decoders copy what outlives a request (fingerprints), and the
// store copies payloads into its container image.
//
// The checks are Fastify's: a body over the route's limit gets 413 (at once if Content-Length
// says so), a body that does not match its Content-Length gets 400; a body without one
// (chunked) is joined as before.

import type { FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';

/** Frames up to this size (every frame the sender makes) come from the pool. */
export const POOLED_FRAME_BYTES = 8 * 1024 * 1024;
const KEEP = 4;
const free: Buffer[] = [];
/** A body handed to a route -> the pooled buffer it is a view of. */
const pooledOf = new WeakMap<Buffer, Buffer>();

function httpError(code: string, message: string, statusCode: number): Error {
  return Object.assign(new RangeError(message), { code, statusCode });
}

function giveBack(buf: Buffer): void {
  if (free.length < KEEP) free.push(buf);
}

/** The route is done with this body (and holds no view of it): its buffer may serve the next one. */
export function releaseFrameBody(body: unknown): void {
  if (!Buffer.isBuffer(body)) return;
  const buf = pooledOf.get(body);
  if (!buf) return;
  pooledOf.delete(body);
  giveBack(buf);
}

/** Buffers in the pool now (tests). */
export function pooledFrameBuffers(): number {
  return free.length;
}

type Done = (err: Error | null, body?: Buffer) => void;

/** A Fastify content-type parser (stream form) for frames of at most `limit` bytes. */
export function frameBodyParser(limit: number): (request: FastifyRequest, payload: Readable, done: Done) => void {
  return (request, payload, done) => {
    const header = request.headers['content-length'];
    const declared = header === undefined ? NaN : Number(header);
    if (declared > limit) {
      done(httpError('FST_ERR_CTP_BODY_TOO_LARGE', 'Request body is too large', 413));
      return;
    }
    const known = Number.isSafeInteger(declared) && declared >= 0;
    let pooled: Buffer | undefined;
    let into: Buffer | undefined;
    const chunks: Buffer[] = [];
    if (known) {
      pooled = declared <= POOLED_FRAME_BYTES ? (free.pop() ?? Buffer.allocUnsafeSlow(POOLED_FRAME_BYTES)) : undefined;
      into = pooled ?? Buffer.allocUnsafe(declared);
    }
    let received = 0;
    let over = false;
    const stop = (): void => {
      payload.removeListener('data', onData);
      payload.removeListener('end', onEnd);
      payload.removeListener('error', onEnd);
    };
    const fail = (err: Error): void => {
      stop();
      if (pooled) giveBack(pooled);
      done(err);
    };
    function onData(chunk: Buffer | string): void {
      if (over) return;
      const c = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      if (received + c.length > limit) {
        over = true;
        fail(httpError('FST_ERR_CTP_BODY_TOO_LARGE', 'Request body is too large', 413));
        return;
      }
      if (into) {
        if (received + c.length > declared) {
          over = true;
          fail(httpError('FST_ERR_CTP_INVALID_CONTENT_LENGTH', 'Request body size did not match Content-Length', 400));
          return;
        }
        c.copy(into, received);
      } else {
        chunks.push(c);
      }
      received += c.length;
    }
    function onEnd(err?: Error): void {
      if (over) return;
      if (err) {
        const e = err as Error & { statusCode?: number };
        if (!(typeof e.statusCode === 'number' && e.statusCode >= 400)) e.statusCode = 400;
        fail(e);
        return;
      }
      stop();
      if (!into) {
        done(null, Buffer.concat(chunks, received));
        return;
      }
      if (received !== declared) {
        if (pooled) giveBack(pooled);
        done(httpError('FST_ERR_CTP_INVALID_CONTENT_LENGTH', 'Request body size did not match Content-Length', 400));
        return;
      }
      const body = into.subarray(0, received);
      if (pooled) pooledOf.set(body, pooled);
      done(null, body);
    }
    payload.on('data', onData);
    payload.on('end', onEnd);
    payload.on('error', onEnd);
    payload.resume();
  };
}
