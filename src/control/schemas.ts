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
  properties: {
    share: { type: 'string' },
    name: { type: 'string' },
    created: isoTime,
    files: count,
    logicalBytes: bytes,
    lockedUntil: { ...isoTime, description: 'The end of its retention lock (absent: never locked); until then nothing can delete it. May lie in the past.' },
  },
} as const;

// The figures an operator reads. Each description is the figure's definition, and the code
// computes exactly that (appliance-services.ts, store/store.ts, store/gc/gc.ts,
// store/verify/verify.ts); test/numbers.test.ts checks them against a real store.
// "Segment" means a stored segment: a data segment or a tree node; all-zero runs are never
// stored and are counted by no segment figure.

export const statsReport = {
  type: 'object',
  required: [
    'logicalBytes', 'ingestedBytes', 'uniqueBytes', 'storedBytes', 'dedupRatio', 'compressionRatio', 'totalRatio',
    'segments', 'containers', 'reclaimableBytes', 'deadBytesKept', 'lastGcAt', 'shares', 'snapshots',
  ],
  properties: {
    logicalBytes: { ...bytes, description: 'Sum of the sizes (as stat shows them, holes included) of every file in every share and every snapshot: what users keep.' },
    ingestedBytes: { ...bytes, description: 'Bytes writers have handed to the store since it was made, every version and zero run included (a file rewritten twice counts twice).' },
    uniqueBytes: { ...bytes, description: 'Plain (uncompressed) size of the segments in the index: every distinct segment on disk, live or dead until a GC removes it.' },
    storedBytes: { ...bytes, description: 'Bytes of the container files on disk (headers, records and tables), the open container included: the disk space data takes, LevelDB excluded.' },
    dedupRatio: { type: 'number', description: 'logicalBytes / uniqueBytes: what deduplication and zero runs save (0 when nothing is stored).' },
    compressionRatio: { type: 'number', description: 'uniqueBytes / storedBytes: what compression saves, net of container overhead (0 when nothing is stored). dedupRatio x compressionRatio = totalRatio.' },
    totalRatio: { type: 'number', description: 'logicalBytes / storedBytes (0 when nothing is stored).' },
    segments: { ...count, description: 'Segments in the index (data segments and tree nodes, live or dead until a GC removes them): what a full verify of the store checks.' },
    containers: { ...count, description: 'Sealed container files (the one being written is not counted).' },
    reclaimableBytes: {
      type: ['number', 'null'],
      description: 'Net bytes the next `gc` would free, as of the last GC run (lastGcAt): 0 right after a real run, which freed them; what a dry run found otherwise. Not updated by deletes since then. null before any GC.',
    },
    deadBytesKept: {
      type: ['number', 'null'],
      description: 'Bytes of dead segments the last GC run left on disk because their containers are mostly live (not worth rewriting); freed by a later GC once enough of their container dies. null before any GC.',
    },
    lastGcAt: { type: ['string', 'null'], format: 'date-time', description: 'When the last GC run (or dry run) ended; null before any.' },
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

/** The result of a `gc` job (GET /jobs/{id} `result`). Published in the OpenAPI components. */
export const gcResult = {
  type: 'object',
  required: ['reclaimedBytes', 'copiedBytes', 'deadBytes', 'deadBytesKept', 'containersRemoved', 'containersRewritten', 'liveSegments', 'deadSegments'],
  properties: {
    reclaimedBytes: { ...bytes, description: 'Net bytes freed on disk: container files removed, minus the bytes their live segments took again when copied forward. storedBytes drops by this much.' },
    copiedBytes: { ...bytes, description: 'Bytes written copying live segments forward out of mostly-dead containers.' },
    deadBytes: { ...bytes, description: 'Bytes of dead segments found (in containers sealed before the run), freed or kept.' },
    deadBytesKept: { ...bytes, description: 'Of deadBytes, those left on disk in containers that are mostly live (see stats deadBytesKept).' },
    containersRemoved: { ...count, description: 'Container files removed that held no live segment.' },
    containersRewritten: { ...count, description: 'Container files removed after their live segments were copied forward.' },
    containersHeld: {
      ...count,
      description: 'Containers left out of this run because a write still in progress (a commit, a backup, an agent send) may have stored segments in them that no file names yet; a later run sweeps them. Absent in results of runs before it existed.',
    },
    liveSegments: { ...count, description: 'Segments found live in the containers swept.' },
    deadSegments: { ...count, description: 'Segments found dead in the containers swept (freed or kept).' },
  },
} as const;

/** The result of a `verify` job. Published in the OpenAPI components. */
export const verifyResult = {
  type: 'object',
  required: ['target', 'containers', 'segmentsChecked', 'referencedSegments', 'bytesRead', 'problems'],
  properties: {
    target: { type: 'string', description: 'What was verified: "store", "share NAME" or "snapshot SHARE/NAME".' },
    containers: {
      ...count,
      description: 'Container files checked. Store: every sealed container, read whole. Share or snapshot: the containers holding its segments (read in full mode; in quick mode their presence is checked).',
    },
    segmentsChecked: {
      ...count,
      description: 'Distinct segments checked. Store: every segment record in the containers (live or dead; equals stats segments when the index is consistent), re-hashed in full mode. Share or snapshot: the distinct segments its files reach, read and re-hashed in full mode, looked up in the index in quick mode.',
    },
    referencedSegments: { ...count, description: 'Distinct segments (data and tree nodes) that the verified files reach; each is checked to be in the index and its container.' },
    bytesRead: { ...bytes, description: 'Bytes read from container files. 0 for a quick verify of a share or snapshot, which reads only the index.' },
    full: { type: 'boolean', description: 'Whether segments were read and re-hashed (full) or only their presence checked (quick).' },
    problems: { type: 'array', items: { type: 'object' } },
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
    result: { description: 'What the job found or did, once succeeded; its shape depends on the kind: GcResult, VerifyResult, BackupRecord or RestoreResult (components.schemas), or the index rebuild report.' },
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

// VM backup (issue 11). Addresses and names are only typed here; their rules live in
// backup/vm-registry.ts, reached through the services, so every door refuses with the same words.

export const vmName = { type: 'string', title: 'VM name', minLength: 1, description: `VM name, also its share's default name: ${NAME_RULES}.` } as const;
const socketAddress = (what: string) =>
  ({ type: 'string', title: `${what} address`, minLength: 1, description: `${what} socket: "unix:/absolute/path" or "tcp:host:port" (IPv6 host in brackets).` }) as const;
export const workflowName = {
  type: 'string',
  title: 'workflow name',
  minLength: 1,
  description: 'A workflow of workflows.yaml (defaults: app-consistent, crash-consistent).',
} as const;
export const pointName = { type: 'string', title: 'restore point', minLength: 1, description: 'A restore point (snapshot name, UTC time), as GET /vms/{name}/backups lists them.' } as const;

export const newVmBody = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: vmName,
    qmp: { ...socketAddress('QMP'), description: 'The QMP socket: "unix:/absolute/path" or "tcp:host:port" (required unless fromCluster).' },
    qga: { ...socketAddress('guest agent'), description: 'Guest agent socket (needed for app-consistent backups): "unix:/absolute/path" or "tcp:host:port".' },
    pg: { type: 'string', title: 'PostgreSQL URL', minLength: 1, description: 'postgres://user[:password]@host[:port]/database, for quiesce-database. Shown with the password as ***.' },
    share: { ...shareName, description: `Share the backups go to (default: the VM's name). ${NAME_RULES}.` },
    workflow: { ...workflowName, description: 'The workflow a backup runs when none is named.' },
    agent: { type: 'string', title: 'agent name', minLength: 1, maxLength: 64, description: 'The external agent (vmvault agent --name) that copies the disks; default: the appliance itself.' },
    script: {
      type: 'string',
      title: 'script',
      minLength: 1,
      description: "Absolute path of an executable on the appliance host that the built-in script plug-in runs for this VM's workflow actions (protocol: src/plugins/script/PROTOCOL.md). Must exist and be executable.",
    },
    host: { type: 'string', title: 'host name', minLength: 1, maxLength: 64, description: "The host (vmvault host add) whose agent relays its QMP (then a UNIX socket on that host) and copies its disks." },
    uuid: { type: 'string', title: 'VM uuid', minLength: 36, maxLength: 36, description: "QEMU's -uuid: the VM is recognised by it after a move (default: what the host's agent discovers)." },
    fromCluster: { type: 'boolean', description: 'Take host, qmp and uuid from the cluster map: the VM of this name on one of the hosts.' },
  },
} as const;

export const vmDisk = {
  type: 'object',
  required: ['device', 'format', 'sizeBytes'],
  properties: {
    device: { type: 'string', description: 'Guest device ("vda"); the backup file is <device>.raw.' },
    format: { type: 'string', description: "Format of the VM's own image (qcow2, raw)." },
    sizeBytes: bytes,
    file: { type: 'string', description: "The VM's image file." },
  },
} as const;

export const backupRecord = {
  type: 'object',
  required: ['vm', 'point', 'kind', 'startedAt', 'durationMs', 'bytesRead', 'bytesWritten', 'freezeMs', 'disks', 'workflow'],
  properties: {
    vm: { type: 'string' },
    point: { type: 'string', description: 'The restore point: a snapshot of the VM\'s share named by its UTC time (2026-12-05T12-00-00Z).' },
    kind: { type: 'string', enum: ['full', 'incremental'], description: 'incremental when every disk read only the extents changed since the previous point.' },
    startedAt: isoTime,
    durationMs: { ...bytes, description: 'From the start of the workflow to the snapshot.' },
    bytesRead: { ...bytes, description: 'Bytes read from QEMU over NBD (holes and zeros are not read).' },
    bytesWritten: { ...bytes, description: "Bytes written into the share's files (before dedup)." },
    freezeMs: { type: ['number', 'null'], description: "How long the guest's file systems were frozen; null when not frozen." },
    disks: {
      type: 'array',
      items: {
        type: 'object',
        required: ['device', 'sizeBytes', 'bytesRead', 'kind'],
        properties: {
          device: { type: 'string' },
          sizeBytes: bytes,
          bytesRead: bytes,
          kind: { type: 'string', enum: ['full', 'incremental'] },
          fullReason: { type: 'string', description: 'Why this disk was copied in full when an incremental was asked (bitmap missing, disk resized, ...).' },
        },
      },
    },
    workflow: { type: 'string' },
  },
} as const;

export const vmView = {
  type: 'object',
  required: ['name', 'share', 'qmp', 'createdAt', 'state', 'disks', 'lastBackup'],
  properties: {
    name: { type: 'string' },
    share: { type: 'string' },
    qmp: { type: 'string' },
    qga: { type: 'string' },
    pg: { type: 'string', description: 'With any password shown as ***.' },
    workflow: { type: 'string' },
    agent: { type: 'string', description: 'The external agent that copies the disks.' },
    script: { type: 'string', description: 'The executable the script plug-in runs for this VM.' },
    host: { type: 'string', description: 'The host whose agent relays its QMP (issue 13).' },
    uuid: { type: 'string', description: "QEMU's uuid of the VM." },
    formerHosts: { type: 'array', items: { type: 'string' }, description: 'Hosts it ran on before it moved whose scratch folder the next backup clears (issue 13); absent when none.' },
    createdAt: isoTime,
    state: { type: 'string', description: 'QEMU\'s run state ("running", "paused", ...) or "unreachable" when QMP does not answer in time.' },
    stateDetail: { type: 'string', description: 'Why the VM is unreachable.' },
    disks: { type: 'array', items: vmDisk, description: 'Empty when unreachable.' },
    lastBackup: { anyOf: [{ type: 'null' }, backupRecord] },
  },
} as const;

export const backupBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    workflow: { ...workflowName, description: "Default: the VM's workflow, else app-consistent." },
    full: { type: 'boolean', title: 'full flag', description: 'Copy every allocated byte even when an incremental is possible.' },
  },
} as const;

export const restoreBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    point: { ...pointName, description: 'Default: the newest restore point.' },
    to: {
      type: 'string',
      title: 'target',
      minLength: 1,
      description:
        'Absolute directory on the appliance host (the disks are written into it as <device>.raw or <device>.qcow2), or an NBD URI ' +
        '(nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=/PATH) of a writable export at least the disk\'s size: every byte of it up to the disk\'s size is written. ' +
        'A point with several disks names {device} in the URI, and each disk goes to its own export. Required unless inPlace.',
    },
    format: { type: 'string', title: 'format', enum: ['raw', 'qcow2'], description: 'Default raw. Not with an NBD target.' },
    inPlace: {
      type: 'boolean',
      title: 'in place',
      description: 'Restore over the disk files the VM uses (their paths from query-block, else from the point). An HA VM\'s cluster resource is taken offline first and brought back as it was; a running VM is refused. Not with to or format.',
    },

  },
} as const;

/** The result of a `restore` job. */
export const restoreResult = {
  type: 'object',
  required: ['point', 'files'],
  properties: {
    point: { type: 'string' },
    files: { type: 'array', items: { type: 'string' } },
    ha: { type: 'object', properties: { resource: { type: 'string' }, before: { type: 'string' }, after: { type: 'string' } } },
  },
} as const;
