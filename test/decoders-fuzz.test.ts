// Property-based fuzzing of every TypeScript decoder of on-disk bytes (helpers/fuzz.ts says
// what is checked): container header, record header, table, trailer and whole-container
// scans; tree nodes; file versions; LZ4 payloads by both codec paths; the segment index
// entry; the store's msgpack records (counters, checkpoint, registry, last GC); store.json;
// bloom.bin; the namespace's inode, volume, directory-entry and u32 records.
// Bounded: VMVAULT_FUZZ_MS per target (default 1500 ms); set it higher for a long pass.

import t from 'tap';
import { crc32 } from 'node:zlib';
import { type ErrorCode } from '../src/errors.js';
import {
  decodeHeader,
  decodeTable,
  decodeTrailer,
  encodeHeader,
  encodeTable,
  encodeTrailer,
  readRecordHeader,
  Codec,
  type RecordMeta,
  writeRecordHeader,
  RECORD_HEADER_BYTES,
  TRAILER_BYTES,
  HEADER_BYTES,
} from '../src/store/container/format.js';
import { scanBytes } from '../src/store/container/files.js';
import { decodeNode, encodeNode, type Entry } from '../src/store/tree/node.js';
import { decodeVersion, encodeVersion, type FileVersion } from '../src/store/tree/version.js';
import { decodeLocation, encodeLocation, type Location } from '../src/store/index/segment-index.js';
import { parseBloom } from '../src/store/index/bloom-file.js';
import { parseConfig } from '../src/store/store-config.js';
import {
  decodeCheckpoint,
  decodeContainerRecord,
  decodeCounters,
  decodeGcRecord,
  encodeCheckpoint,
  encodeContainerRecord,
  encodeCounters,
  encodeGcRecord,
} from '../src/store/meta-records.js';
import { decodePayload, encodePayload, LengthMismatch, uncompressPayload } from '../src/store/codec/codec.js';
import { fingerprint } from '../src/store/codec/fingerprint.js';
import { nativeCodec } from '../src/store/native.js';
import {
  decodeEntry,
  decodeInode,
  decodeU32,
  decodeVolume,
  encodeEntry,
  encodeInode,
  encodeU32,
  encodeVolume,
  type Inode,
  NodeType,
  type Volume,
} from '../src/namespace/records.js';
import { ZERO_FP } from '../src/store/codec/fingerprint.js';
import { fuzz, type FuzzTarget } from './helpers/fuzz.js';
import { Rng } from './helpers/data.js';

const hexOf = (b: Uint8Array) => Buffer.from(b).toString('hex');
const u32 = (rng: Rng) => rng.next();
const safeInt = (rng: Rng, max = Number.MAX_SAFE_INTEGER) => Math.floor((rng.next() * 0x200000 + (rng.next() >>> 11)) % (max + 1));
const FP = (rng: Rng) => rng.bytes(32);
const MAX_SEG = 1 << 24;

function recordMeta(rng: Rng, offset: number): RecordMeta {
  return { fp: FP(rng), offset, storedLen: rng.int(MAX_SEG + 1), rawLen: rng.int(MAX_SEG + 1), kind: rng.int(2), codec: rng.int(2) };
}
const viewMeta = (r: Omit<RecordMeta, 'offset'> & { offset?: number }) => ({ ...r, fp: hexOf(r.fp) });

const containerHeader: FuzzTarget<null, ReturnType<typeof decodeHeader>> = {
  name: 'container header',
  gen(rng) {
    const id = u32(rng);
    const createdMs = safeInt(rng, 2 ** 45);
    return { bytes: encodeHeader(id, createdMs), ctx: null, expect: { id, version: 1, createdMs } };
  },
  decode: (b) => decodeHeader(b, 'fuzz'),
  view: (v) => v,
  check: (v) => (v.version < 1 ? `version ${v.version}` : undefined),
  codes: ['CORRUPT_CONTAINER', 'UNSUPPORTED_FORMAT'],
  // Field-level JSON damage: a field missing, of the wrong type or out of range.
  hostile(rng) {
    const c: Record<string, unknown> = configOf(rng);
    const bad = rng.pick<unknown>([null, -1, 2, 1.5, 'x', [], {}, true, 2 ** 60, { minSize: 'a' }, undefined]);
    if (rng.int(2) === 0) c[rng.pick(['format', 'id', 'created', 'chunker'])] = bad;
    else (c.chunker as Record<string, unknown>)[rng.pick(['minSize', 'avgSize', 'maxSize'])] = bad;
    return Buffer.from(rng.int(10) === 0 ? JSON.stringify(rng.pick([null, 1, 'x', []])) : JSON.stringify(c));
  },
};

const recordHeader: FuzzTarget<null, ReturnType<typeof readRecordHeader>> = {
  name: 'record header',
  gen(rng) {
    const m = recordMeta(rng, 0);
    const b = Buffer.alloc(RECORD_HEADER_BYTES);
    writeRecordHeader(b, 0, m);
    const { offset: _o, ...rest } = m;
    return { bytes: b, ctx: null, expect: viewMeta(rest) };
  },
  decode: (b) => readRecordHeader(b, 0),
  view: (v) => (v ? viewMeta(v) : v),
  check: (v) => (v && (v.kind > 1 || v.codec > 1) ? `kind ${v.kind} codec ${v.codec}` : undefined),
  codes: [],
};

const table: FuzzTarget<null, RecordMeta[]> = {
  name: 'container table',
  gen(rng) {
    const rs = Array.from({ length: rng.int(20) }, (_, i) => recordMeta(rng, HEADER_BYTES + i * 100));
    return { bytes: encodeTable(rs), ctx: null, expect: rs.map(viewMeta) };
  },
  decode: (b) => decodeTable(b, 'fuzz'),
  view: (v) => v.map(viewMeta),
  check: (v) => v.find((r) => r.kind > 1 || r.codec > 1 || r.rawLen > MAX_SEG || r.storedLen > MAX_SEG) && 'entry out of range',
  codes: ['CORRUPT_CONTAINER'],
};

/** A container image: header, records with real payloads, table, trailer (sealed or not). */
function containerImage(rng: Rng, id: number): { bytes: Buffer; records: RecordMeta[]; sealed: boolean } {
  const parts: Buffer[] = [encodeHeader(id, 1_700_000_000_000)];
  const records: RecordMeta[] = [];
  let at = HEADER_BYTES;
  for (let i = rng.int(6); i > 0; i--) {
    const raw = rng.bytes(rng.int(300));
    const fp = fingerprint(raw);
    const h = Buffer.alloc(RECORD_HEADER_BYTES);
    const m: RecordMeta = { fp, offset: at, storedLen: raw.length, rawLen: raw.length, kind: 0, codec: 0 };
    writeRecordHeader(h, 0, m);
    parts.push(h, raw);
    records.push(m);
    at += RECORD_HEADER_BYTES + raw.length;
  }
  const sealed = rng.int(4) !== 0;
  if (sealed) {
    const tbl = encodeTable(records);
    parts.push(tbl, encodeTrailer(records.length, at, tbl));
  }
  return { bytes: Buffer.concat(parts), records, sealed };
}

const trailer: FuzzTarget<null, ReturnType<typeof decodeTrailer>> = {
  name: 'container trailer',
  gen(rng) {
    const img = containerImage(rng, 3);
    const tableOffset = img.records.length ? img.records[img.records.length - 1].offset + RECORD_HEADER_BYTES + img.records[img.records.length - 1].storedLen : HEADER_BYTES;
    const tbl = encodeTable(img.records);
    return {
      bytes: img.sealed ? img.bytes : Buffer.concat([img.bytes, tbl, encodeTrailer(img.records.length, tableOffset, tbl)]),
      ctx: null,
      expect: { count: img.records.length, tableOffset, tableCrc: crc32(tbl) },
    };
  },
  decode: (b) => decodeTrailer(b.subarray(Math.max(0, b.length - TRAILER_BYTES)), b.length),
  view: (v) => v,
  check: (v, b) => (v && v.tableOffset + v.count * 48 + TRAILER_BYTES !== b.length ? 'trailer does not end the file' : undefined),
  codes: [],
};

const scan: FuzzTarget<null, ReturnType<typeof scanBytes>> = {
  name: 'container scan',
  gen(rng) {
    const img = containerImage(rng, 7);
    return { bytes: img.bytes, ctx: null, expect: { records: img.records.map(viewMeta), sealed: img.sealed } };
  },
  decode: (b) => scanBytes(b, 7),
  view: (v) => ({ records: v.records.map(viewMeta), sealed: v.sealed }),
  check(v, b) {
    for (const r of v.records) if (r.offset + RECORD_HEADER_BYTES + r.storedLen > b.length) return `record at ${r.offset} runs past the end`;
    if (v.end > b.length) return `end ${v.end} past the file`;
    return undefined;
  },
  codes: [],
};

const node: FuzzTarget<null, ReturnType<typeof decodeNode>> = {
  name: 'tree node',
  gen(rng) {
    const level = rng.range(1, 4);
    const entries: Entry[] = Array.from({ length: rng.range(1, 40) }, () => ({ fp: FP(rng), len: safeInt(rng, 2 ** 40), zero: false }));
    const sizes = entries.map((e) => e.len);
    return { bytes: encodeNode(level, entries), ctx: null, expect: { level, fps: entries.map((e) => hexOf(e.fp)), sizes } };
  },
  decode: (b) => decodeNode(b, 'fuzz'),
  view: (n) => ({
    level: n.level,
    fps: Array.from({ length: n.count }, (_, i) => hexOf(n.fps.subarray(i * 32, i * 32 + 32))),
    sizes: Array.from({ length: n.count }, (_, i) => n.starts[i + 1] - n.starts[i]),
  }),
  check(n) {
    if (n.level < 1 || n.count < 1 || n.fps.length !== n.count * 32 || n.starts.length !== n.count + 1) return 'shape';
    for (let i = 0; i < n.count; i++) if (!(n.starts[i + 1] >= n.starts[i])) return 'starts not monotonic';
    if (n.starts[n.count] > Number.MAX_SAFE_INTEGER) return 'size past 2^53';
    return undefined;
  },
  codes: ['CORRUPT_SEGMENT', 'UNSUPPORTED_FORMAT'],
};

function fileVersion(rng: Rng): FileVersion {
  return { root: FP(rng), size: safeInt(rng), height: rng.int(6) };
}
const viewVersion = (v: FileVersion) => ({ root: hexOf(v.root), size: v.size, height: v.height });

const version: FuzzTarget<null, FileVersion> = {
  name: 'file version',
  gen(rng) {
    const v = fileVersion(rng);
    return { bytes: encodeVersion(v), ctx: null, expect: viewVersion(v) };
  },
  decode: (b) => decodeVersion(b, 'fuzz'),
  view: viewVersion,
  check: (v) => (v.size > Number.MAX_SAFE_INTEGER ? 'size past 2^53' : undefined),
  codes: ['CORRUPT_RECORD'],
};

function payloadTarget(impl: 'native' | 'js'): FuzzTarget<{ rawLen: number; fp: Buffer }, Buffer> {
  return {
    name: `LZ4 payload (${impl})`,
    gen(rng) {
      for (;;) {
        const word = rng.bytes(rng.range(1, 8));
        const raw = Buffer.alloc(rng.range(16, 4000));
        for (let i = 0; i < raw.length; i++) raw[i] = rng.int(5) === 0 ? rng.next() & 0xff : word[i % word.length];
        const enc = encodePayload(raw);
        if (enc.codec === Codec.Lz4) return { bytes: Buffer.from(enc.payload), ctx: { rawLen: raw.length, fp: fingerprint(raw) }, expect: hexOf(raw) };
      }
    },
    decode: (b, ctx) => decodePayload(b, Codec.Lz4, ctx.rawLen, ctx.fp, { cid: 1, offset: 64 }, impl),
    view: (v) => hexOf(v),
    check: (v, _b, ctx) => (v.length !== ctx.rawLen || !fingerprint(v).equals(ctx.fp) ? 'unverified bytes returned' : undefined),
    codes: ['CORRUPT_SEGMENT'],
  };
}

const location: FuzzTarget<null, Location> = {
  name: 'segment index entry',
  gen(rng) {
    const l: Location = { cid: u32(rng), offset: u32(rng), storedLen: rng.int(MAX_SEG + 1), rawLen: rng.int(MAX_SEG + 1), kind: rng.int(2), codec: rng.int(2) };
    return { bytes: encodeLocation(l), ctx: null, expect: l };
  },
  decode: (b) => decodeLocation(b),
  view: (v) => v,
  check: (l) => (l.kind > 1 || l.codec > 1 || l.rawLen > MAX_SEG ? 'out of range' : undefined),
  codes: ['CORRUPT_RECORD'],
};

function countersOf(rng: Rng) {
  return { ingestedBytes: safeInt(rng), zeroBytes: safeInt(rng), segments: safeInt(rng, 2 ** 40), nodeSegments: rng.next(), rawBytes: safeInt(rng), payloadBytes: safeInt(rng), containers: rng.next(), containerBytes: safeInt(rng) };
}
const counters: FuzzTarget<null, ReturnType<typeof decodeCounters>> = {
  name: 'store counters',
  gen(rng) {
    const c = countersOf(rng);
    return { bytes: encodeCounters(c), ctx: null, expect: c };
  },
  decode: (b) => decodeCounters(b),
  view: (v) => v,
  check: (v) => (Object.values(v).every((x) => Number.isSafeInteger(x) && x >= 0) ? undefined : 'a counter is not a count'),
  codes: ['CORRUPT_RECORD'],
  fields: (rng) => countersOf(rng),
};

const checkpoint: FuzzTarget<null, ReturnType<typeof decodeCheckpoint>> = {
  name: 'store checkpoint',
  gen(rng) {
    const c = { nextCid: rng.range(1, 2 ** 31), openCids: Array.from({ length: rng.int(5) }, () => rng.next()) };
    return { bytes: encodeCheckpoint(c), ctx: null, expect: c };
  },
  decode: (b) => decodeCheckpoint(b),
  view: (v) => v,
  check: (v) => (v.nextCid >= 1 && v.openCids.every((x) => Number.isInteger(x) && x >= 0) ? undefined : 'bad checkpoint'),
  codes: ['CORRUPT_RECORD'],
  fields: (rng) => ({ nextCid: rng.range(1, 100), openCids: [rng.int(9)] }),
};

const registry: FuzzTarget<null, ReturnType<typeof decodeContainerRecord>> = {
  name: 'container registry entry',
  gen(rng) {
    const r = { size: rng.next(), records: rng.int(100000) };
    return { bytes: encodeContainerRecord(r), ctx: null, expect: r };
  },
  decode: (b) => decodeContainerRecord(b, 1),
  view: (v) => v,
  codes: ['CORRUPT_RECORD'],
  fields: (rng) => ({ size: rng.next(), records: rng.int(9) }),
};

const gcRecord: FuzzTarget<null, ReturnType<typeof decodeGcRecord>> = {
  name: 'last GC record',
  gen(rng) {
    const g = { at: safeInt(rng, 2 ** 45), reclaimableBytes: safeInt(rng), reclaimedBytes: safeInt(rng), dryRun: rng.int(2) === 1 };
    return { bytes: encodeGcRecord(g), ctx: null, expect: g };
  },
  decode: (b) => decodeGcRecord(b),
  view: (v) => v,
  codes: ['CORRUPT_RECORD'],
  fields: (rng) => ({ at: rng.next(), reclaimableBytes: 1, reclaimedBytes: 2, dryRun: false }),
};

function configOf(rng: Rng) {
  const avg = 2 ** rng.range(8, 22);
  return { format: 1, id: `id-${rng.next()}`, created: new Date(rng.next() * 1000).toISOString(), chunker: { minSize: rng.range(64, avg - 1), avgSize: avg, maxSize: rng.range(avg + 1, 1 << 24) } };
}
const storeJson: FuzzTarget<null, ReturnType<typeof parseConfig>> = {
  name: 'store.json',
  gen(rng) {
    const c = configOf(rng);
    return { bytes: Buffer.from(JSON.stringify(c, null, 2) + '\n'), ctx: null, expect: c };
  },
  decode: (b) => parseConfig(b.toString('utf8'), 'fuzz/store.json'),
  view: (v) => v,
  check: (v) => (v.format === 1 && typeof v.id === 'string' && v.chunker.avgSize > v.chunker.minSize ? undefined : 'bad config'),
  codes: ['CORRUPT_CONTAINER', 'UNSUPPORTED_FORMAT'],
};
/** bloom.bin bytes, laid out from FORMAT.md (not through saveBloom). */
const bloom: FuzzTarget<null, ReturnType<typeof parseBloom>> = {
  name: 'bloom.bin',
  gen(rng) {
    const log2Bits = rng.range(5, 12);
    const probes = rng.range(1, 12);
    const count = rng.int(5000);
    const h = Buffer.alloc(32);
    h.write('VVBLOOM\n', 0, 'latin1');
    h.writeUInt32LE(1, 8);
    h.writeUInt32LE(log2Bits, 12);
    h.writeUInt32LE(probes, 16);
    h.writeDoubleLE(count, 24);
    const bits = rng.bytes(2 ** log2Bits / 8);
    return { bytes: Buffer.concat([h, bits]), ctx: null, expect: { log2Bits, probes, count, bits: hexOf(bits) } };
  },
  decode: (b) => parseBloom(b),
  view: (v) => (v ? { log2Bits: v.shape.log2Bits, probes: v.shape.probes, count: v.count, bits: hexOf(new Uint8Array(v.shape.sab)) } : v),
  check: (v, b) => (v && (v.shape.probes > 32 || v.shape.sab.byteLength !== b.length - 32 || !Number.isFinite(v.count)) ? 'bad shape' : undefined),
  codes: [],
};

function inodeOf(rng: Rng): Inode {
  const type = rng.range(1, 3) as NodeType;
  return {
    ino: safeInt(rng),
    type,
    mode: rng.int(0o10000),
    uid: rng.next(),
    gid: rng.next(),
    nlink: rng.int(1000),
    atime: safeInt(rng, 2 ** 45) - 2 ** 40,
    mtime: safeInt(rng, 2 ** 45),
    ctime: safeInt(rng, 2 ** 45) + 0.5,
    size: safeInt(rng),
    version: type === NodeType.File ? fileVersion(rng) : { root: ZERO_FP, size: 0, height: 0 },
    target: type === NodeType.Symlink ? `target-${rng.next()}` : undefined,
  };
}
const viewInode = (n: Inode) => ({ ...n, version: viewVersion(n.version) });
const inode: FuzzTarget<null, Inode> = {
  name: 'inode record',
  gen(rng) {
    const n = inodeOf(rng);
    return { bytes: encodeInode(n), ctx: null, expect: viewInode(n) };
  },
  decode: (b) => decodeInode(b, 'fuzz'),
  view: viewInode,
  check: (n) => (n.type < 1 || n.type > 3 || !Number.isSafeInteger(n.ino) || !Number.isSafeInteger(n.size) ? 'out of range' : undefined),
  codes: ['CORRUPT_RECORD', 'UNSUPPORTED_FORMAT'],
  fields(rng) {
    const n = inodeOf(rng);
    return { f: 1, i: n.ino, t: n.type, m: n.mode, u: n.uid, g: n.gid, n: n.nlink, a: n.atime, M: n.mtime, c: n.ctime, s: n.size, v: encodeVersion(n.version), l: 'x' };
  },
};

function volumeOf(rng: Rng): Volume {
  const snap = rng.int(2) === 0;
  const v: Volume = { id: rng.next(), kind: snap ? 'snapshot' : 'share', name: `n${rng.next()}`, created: safeInt(rng, 2 ** 45), nextIno: safeInt(rng), files: safeInt(rng), bytes: safeInt(rng) };
  if (snap) v.shareVol = rng.next();
  if (!snap && rng.int(2) === 0) v.origin = { share: 'a', snapshot: `s${rng.int(9)}` };
  return v;
}
const volume: FuzzTarget<null, Volume> = {
  name: 'volume record',
  gen(rng) {
    const v = volumeOf(rng);
    return { bytes: encodeVolume(v), ctx: null, expect: v };
  },
  decode: (b) => decodeVolume(b, 'fuzz'),
  view: (v) => v,
  check: (v) => (v.kind !== 'share' && v.kind !== 'snapshot' ? `kind ${String(v.kind)}` : undefined),
  codes: ['CORRUPT_RECORD', 'UNSUPPORTED_FORMAT'],
  fields: (rng) => ({ f: 1, ...volumeOf(rng) }),
};

const entry: FuzzTarget<null, ReturnType<typeof decodeEntry>> = {
  name: 'directory entry',
  gen(rng) {
    const e = { ino: rng.range(1, 2 ** 40), type: rng.range(1, 3) as NodeType };
    return { bytes: encodeEntry(e), ctx: null, expect: e };
  },
  decode: (b) => decodeEntry(b),
  view: (v) => v,
  check: (e) => (e.ino < 1 || e.type < 1 || e.type > 3 ? 'out of range' : undefined),
  codes: ['CORRUPT_RECORD'],
};

const u32Value: FuzzTarget<null, number> = {
  name: 'u32 value (S, P, N keys)',
  gen(rng) {
    const n = rng.next();
    return { bytes: encodeU32(n), ctx: null, expect: n };
  },
  decode: (b) => decodeU32(b, 'fuzz'),
  view: (v) => v,
  codes: ['CORRUPT_RECORD'],
};

const TARGETS: Array<FuzzTarget<any, any>> = [
  containerHeader,
  recordHeader,
  table,
  trailer,
  scan,
  node,
  version,
  ...(nativeCodec ? [payloadTarget('native')] : []),
  payloadTarget('js'),
  location,
  counters,
  checkpoint,
  registry,
  gcRecord,
  storeJson,
  bloom,
  inode,
  volume,
  entry,
  u32Value,
];

const summary: string[] = [];
for (const target of TARGETS) {
  t.test(`fuzz: ${target.name}`, async (t) => {
    const r = fuzz(target);
    summary.push(`${target.name}: ${r.runs} hostile inputs (${r.accepted} accepted, ${r.rejected} refused), ${r.roundTrips} round trips`);
    t.comment(summary[summary.length - 1]);
    t.same(r.failures, [], `${target.name}: every input decodes to a valid value or a typed error`);
    // How many depends on the machine's load; at least one round of hostile variants ran.
    t.ok(r.runs >= 16, `${target.name}: ran (${r.runs} inputs)`);
  });
}

t.test('LZ4 payload prefixes: a huge claimed length is refused before anything is allocated', async (t) => {
  // lz4-napi allocates what the prefix claims: 2^31 took 47 s before the prefix check.
  const hostile = Buffer.from([0xff, 0xff, 0xff, 0x7f, 0x10, 0x41]);
  for (const impl of nativeCodec ? (['native', 'js'] as const) : (['js'] as const)) {
    const t0 = performance.now();
    let err: unknown;
    try {
      uncompressPayload(hostile, 1, impl);
    } catch (e) {
      err = e;
    }
    const took = performance.now() - t0;
    t.ok(err instanceof LengthMismatch && err.got === 0x7fffffff, `${impl}: refused as a length mismatch (${(err as Error)?.message})`);
    t.ok(took < 1000, `${impl}: at once (${took.toFixed(1)} ms)`);
  }
});

t.test('records never carry an in-memory extra field into their encoding', async (t) => {
  const rng = new Rng(99);
  const withExtra = <T extends object>(v: T) => Object.assign(Object.create(null), v, { extra: 'leak', cache: [1, 2, 3] }) as T;
  const n = inodeOf(rng);
  t.ok(encodeInode(withExtra(n)).equals(encodeInode(n)), 'inode: same bytes with and without an extra field');
  const v = volumeOf(rng);
  t.ok(encodeVolume(withExtra(v)).equals(encodeVolume(v)), 'volume: same bytes');
  t.notOk('extra' in decodeVolume(encodeVolume(withExtra(v))), 'volume: the extra field is not read back');
  const vo = { ...volumeOf(rng), kind: 'share' as const, origin: withExtra({ share: 'a', snapshot: 'b' }) };
  t.notOk('extra' in decodeVolume(encodeVolume(vo)).origin!, 'volume origin: nested extras do not leak either');
  const c = countersOf(rng);
  t.ok(encodeCounters(withExtra(c)).equals(encodeCounters(c)), 'counters: same bytes');
  const k = { nextCid: 5, openCids: [1, 2] };
  t.ok(encodeCheckpoint(withExtra(k)).equals(encodeCheckpoint(k)), 'checkpoint: same bytes');
  t.ok(encodeContainerRecord(withExtra({ size: 1, records: 2 })).equals(encodeContainerRecord({ size: 1, records: 2 })), 'registry entry: same bytes');
  const g = { at: 1, reclaimableBytes: 2, reclaimedBytes: 3, dryRun: false };
  t.ok(encodeGcRecord(withExtra(g)).equals(encodeGcRecord(g)), 'GC record: same bytes');
  const l: Location = { cid: 1, offset: 64, storedLen: 3, rawLen: 4, kind: 0, codec: 1 };
  t.ok(encodeLocation(withExtra(l)).equals(encodeLocation(l)), 'index entry: same bytes');
  // A directory's inode carries no version, a file's no target, whatever the object holds.
  const dir = { ...inodeOf(rng), type: NodeType.Dir, target: 'stale' };
  t.equal(decodeInode(encodeInode(dir)).target, undefined, 'a directory does not store a symlink target');
});

t.test('typed codes only', async (t) => {
  // Sanity of the harness: a decoder that throws a TypeError is caught.
  const r = fuzz({ ...u32Value, name: 'harness check', decode: (b: Buffer) => b.readUInt32BE(0) } as FuzzTarget<null, number>, 200);
  t.ok(r.failures.some((f) => /RangeError/.test(f)), 'the harness reports an untyped error');
  const codes: ErrorCode[] = ['CORRUPT_RECORD'];
  t.ok(codes.length === 1);
});
