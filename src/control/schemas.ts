// JSON Schemas shared by the routes. Fastify validates requests and serializes responses with
// them, and openapi.ts publishes them, so the document cannot drift from what is enforced.
// Names are only typed here: their rules live in namespace/names.ts, which the handlers call,
// so a bad name gets the same message from HTTP as from any other door.

import { MAX_NAME_BYTES, MAX_PATH_BYTES } from '../namespace/names.js';
import { JOB_KINDS, JOB_STATES } from './jobs.js';
import { PROGRESS_UNITS } from './services.js';

const NAME_RULES = `1 to ${MAX_NAME_BYTES} bytes of UTF-8; no '/', NUL or control characters; not starting with '.'`;

// `title` names a field in error messages (validation-message.ts): "the share name must not be empty".
export const shareName = { type: 'string', title: 'share name', minLength: 1, description: `Share name: ${NAME_RULES}.` } as const;
export const snapshotName = { type: 'string', title: 'snapshot name', minLength: 1, description: `Snapshot name: ${NAME_RULES}.` } as const;
export const pathInShare = {
  type: 'string',
  title: 'path',
  minLength: 1,
  description: `A path inside the share, relative ("dir/file.vmdk"): no '..', '.' or empty components, no NUL, not under .snapshots/, at most ${MAX_PATH_BYTES} bytes.`,
} as const;

export const sourceSharePath = {
  type: 'string',
  title: 'source',
  minLength: 1,
  description: `What to copy: "<share>/<path>", or out of a snapshot "<share>/${'.snapshots'}/<snapshot>/<path>" (or "<share>/.snapshots/<snapshot>" for all of it). A file or a directory.`,
} as const;
export const targetSharePath = {
  type: 'string',
  title: 'target',
  minLength: 1,
  description: 'Where the copy goes: "<share>/<path>", in any share; it must not exist yet, its parent must.',
} as const;

export const jobId = { type: 'string', title: 'job id', pattern: '^[0-9a-f]{12}$', description: 'Job id (12 hex digits).' } as const;

export const errorBody = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', description: 'A code from errors.ts, or INTERNAL for a server bug.' },
        message: { type: 'string' },
        job: { type: 'string', description: 'For CONFLICT from a job start: the id of the job in the way.' },
      },
      additionalProperties: true,
    },
  },
} as const;

const isoTime = { type: 'string', format: 'date-time' } as const;
const count = { type: 'integer', minimum: 0 } as const;
const bytes = { type: 'number', minimum: 0 } as const;

export const shareSummary = {
  type: 'object',
  required: ['name', 'created', 'files', 'logicalBytes', 'snapshots'],
  properties: {
    name: { type: 'string' },
    created: isoTime,
    files: count,
    logicalBytes: bytes,
    snapshots: count,
    origin: {
      type: 'object',
      description: 'For a clone: the share and snapshot it was made from.',
      required: ['share'],
      properties: { share: { type: 'string' }, snapshot: { type: 'string' } },
    },
  },
} as const;

export const snapshotSummary = {
  type: 'object',
  required: ['share', 'name', 'created', 'files', 'logicalBytes'],
  properties: { share: { type: 'string' }, name: { type: 'string' }, created: isoTime, files: count, logicalBytes: bytes },
} as const;

export const statsReport = {
  type: 'object',
  required: [
    'logicalBytes', 'ingestedBytes', 'uniqueBytes', 'storedBytes', 'dedupRatio', 'compressionRatio', 'totalRatio',
    'segments', 'containers', 'reclaimableBytes', 'shares', 'snapshots',
  ],
  properties: {
    logicalBytes: { ...bytes, description: 'Sum of live file sizes in every share and snapshot.' },
    ingestedBytes: { ...bytes, description: 'Bytes ever written into the store.' },
    uniqueBytes: { ...bytes, description: 'Plain size of the distinct segments kept.' },
    storedBytes: { ...bytes, description: 'Bytes the containers take on disk.' },
    dedupRatio: { type: 'number', description: 'logical / unique' },
    compressionRatio: { type: 'number', description: 'unique / stored' },
    totalRatio: { type: 'number', description: 'logical / stored' },
    segments: count,
    containers: count,
    reclaimableBytes: { type: ['number', 'null'], description: 'What a GC would free, as of its last mark; null before any.' },
    shares: count,
    snapshots: count,
  },
} as const;

export const fastcopyResult = {
  type: 'object',
  required: ['from', 'to', 'type', 'files', 'directories', 'logicalBytes'],
  properties: {
    from: { type: 'string' },
    to: { type: 'string' },
    type: { type: 'string', enum: ['file', 'directory', 'symlink'] },
    files: { ...count, description: 'Regular files made (hard links inside the tree counted once).' },
    directories: { ...count, description: 'Directories made, the copied directory included.' },
    logicalBytes: { ...bytes, description: 'Sum of the sizes of the files made; stored bytes do not grow.' },
  },
} as const;

export const jobView = {
  type: 'object',
  required: ['id', 'kind', 'target', 'state', 'progress', 'rate', 'etaSeconds', 'createdAt', 'startedAt', 'endedAt', 'cancelRequested', 'error', 'log'],
  properties: {
    id: { type: 'string' },
    kind: { type: 'string', enum: [...JOB_KINDS] },
    target: { type: 'string' },
    state: { type: 'string', enum: [...JOB_STATES] },
    progress: {
      type: 'object',
      required: ['done', 'total', 'unit'],
      properties: {
        done: bytes,
        total: { ...bytes, description: '0 while unknown' },
        unit: { type: 'string', enum: [...PROGRESS_UNITS], description: 'What done and total count.' },
        phase: { type: 'string', description: 'The step the job is in, in words ("sweeping containers"); absent before the first report.' },
      },
    },
    rate: { type: ['number', 'null'], description: 'Units per second, smoothed.' },
    etaSeconds: { type: ['number', 'null'] },
    createdAt: isoTime,
    startedAt: { type: ['string', 'null'], format: 'date-time' },
    endedAt: { type: ['string', 'null'], format: 'date-time' },
    cancelRequested: { type: 'boolean' },
    result: { description: 'What the job found or did, once succeeded; its shape depends on the kind.' },
    error: {
      type: ['object', 'null'],
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
    },
    log: { type: 'array', items: { type: 'string' } },
  },
} as const;

export const jobStarted = {
  type: 'object',
  required: ['job'],
  properties: { job: { type: 'string', description: 'Id to poll at /api/v1/jobs/{id}.' } },
} as const;

/** For POST routes that take no options yet: no body, or an empty object. */
export const noOptionsBody = { type: 'object', additionalProperties: false, properties: {} } as const;

/** Error responses every authenticated route can give. */
export const commonErrors = {
  400: { description: 'Malformed request: bad JSON, wrong types, bad name.', ...errorBody },
  401: { description: 'Missing or wrong API token.', ...errorBody },
  413: { description: 'Body larger than the limit.', ...errorBody },
  415: { description: 'Body is not application/json.', ...errorBody },
} as const;
