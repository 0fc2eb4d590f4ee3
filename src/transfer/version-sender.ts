// Sending a file version this appliance already stores to another appliance (clone copies,
// issue 14): fingerprint-first like an agent, but without reading or cutting the file. The
// version's segment tree already names its data segments (fingerprint, length) and zero runs,
// in file order, so the sender walks the tree's leaves, asks which segments the receiver lacks,
// reads only those from the store (re-hashed on read, as every read is), sends them, then the
// recipe: the leaves in order. When both stores cut with the same parameters, every leaf
// starts at a cut of the receiver's stream too, so the receiver pushes each segment as a leaf
// and builds the same tree (the same root fingerprint: the copy is checked by comparing roots).
// A receiver with other parameters gets the file's bytes through the ordinary sender instead.
//
// Memory: one batch (at most BATCH_LEAVES leaves, segments read and sent READ_BATCH at a time).

import { vmError } from '../errors.js';
import { encodePayload } from '../store/codec/codec.js';
import { Codec } from '../store/container/format.js';
import type { FileVersion, SegmentStore } from '../store/store.js';
import type { TransferConnection } from './client.js';
import { decodeQueryReply, encodeQuery, encodeRecipe, encodeSegments, LIMITS, PROTOCOL_VERSION, type RecipeEntry, SegmentCodec, type SentSegment } from './frames.js';
import type { FinishReply, OpenReply } from './messages.js';
import { TRANSFER_PREFIX } from './messages.js';
import { type ReadSource, sendFile, type SendReport, type SendTarget } from './sender.js';

/** Leaves per query/recipe round. */
const BATCH_LEAVES = LIMITS.queryCount;
/** Missing segments read from the store at a time. */
const READ_BATCH = 256;
/** Payload bytes per segments frame. */
const FRAME_BYTES = 4 * 1024 * 1024;
/** Waits before each retry of a broken send (ms), as the agent's sender. */
const RETRIES = [200, 1000, 3000, 10_000];

export interface VersionSendReport extends SendReport {
  /** 'tree': leaves sent as they are stored; 'bytes': re-cut (the receiver's parameters differ). */
  mode: 'tree' | 'bytes';
}

interface Leaf {
  fp: Buffer;
  len: number;
  zero: boolean;
  start: number;
}

/** Sends `version` into `target.share`/`target.path` on the receiver; returns what crossed. */
export async function sendVersion(
  conn: TransferConnection,
  store: SegmentStore,
  version: FileVersion,
  target: Omit<SendTarget, 'size' | 'ranges'>,
  opts: { signal?: AbortSignal } = {},
): Promise<VersionSendReport> {
  const hello = await conn.json<{ protocol: number; chunker: { algorithm: string; minSize: number; avgSize: number; maxSize: number } }>('GET', `${TRANSFER_PREFIX}/hello`, undefined, opts.signal);
  const mine = store.chunker;
  const same = hello.chunker.algorithm === 'fastcdc-gear-v1' && hello.chunker.minSize === mine.minSize && hello.chunker.avgSize === mine.avgSize && hello.chunker.maxSize === mine.maxSize;
  if (!same) {
    const source: ReadSource = {
      size: version.size,
      read: (offset, length) => store.read(version, offset, length),
      dataRanges: async (offset, length) => {
        const out: Array<{ offset: number; length: number; zero: boolean }> = [];
        for await (const p of store.view(version).leaves(offset, offset + length)) out.push({ offset: p.start, length: p.entry.len, zero: p.entry.zero });
        return out;
      },
    };
    return { ...(await sendFile(conn, source, { ...target, size: version.size }, opts)), mode: 'bytes' };
  }
  const wire0 = conn.wireBytes;
  const report: VersionSendReport = { bytesRead: 0, bytesSent: 0, fingerprintBytes: 0, segments: 0, segmentsSent: 0, segmentBytesSent: 0, zeroBytes: 0, mode: 'tree' };
  for (let attempt = 0; ; attempt++) {
    try {
      await sendOnce(conn, store, version, target, report, opts.signal);
      break;
    } catch (err) {
      const e = err as { details?: { transport?: boolean; status?: number } };
      const transient = e?.details?.transport === true || e?.details?.status === 502 || e?.details?.status === 503;
      if (target.taskId === undefined || attempt >= RETRIES.length || !transient || opts.signal?.aborted) {
        report.bytesSent = conn.wireBytes - wire0;
        throw err;
      }
      await new Promise((r) => setTimeout(r, RETRIES[attempt]));
    }
  }
  report.bytesSent = conn.wireBytes - wire0;
  return report;
}

async function sendOnce(conn: TransferConnection, store: SegmentStore, version: FileVersion, target: Omit<SendTarget, 'size' | 'ranges'>, report: VersionSendReport, signal: AbortSignal | undefined): Promise<void> {
  const open = await conn.json<OpenReply>(
    'POST',
    `${TRANSFER_PREFIX}/sessions`,
    { protocol: PROTOCOL_VERSION, share: target.share, path: target.path, size: version.size, ...(target.taskId ? { taskId: target.taskId } : {}) },
    signal,
  );
  if (open.protocol !== PROTOCOL_VERSION) throw vmError('NOT_SUPPORTED', `the receiver speaks transfer protocol ${open.protocol}; this sender speaks ${PROTOCOL_VERSION}`);
  const route = `${TRANSFER_PREFIX}/sessions/${open.session}`;
  // A resumed session: its recipe already describes [0, position), which ends at a leaf we sent.
  let position = open.position;
  let batch: Leaf[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    position = await sendBatch(conn, store, route, batch, position, report, signal);
    batch = [];
  };
  if (position < version.size) {
    for await (const p of store.view(version).leaves(position, version.size)) {
      if (signal?.aborted) throw vmError('CANCELLED', 'the send was cancelled');
      let { start } = p;
      let len = p.entry.len;
      if (start < position) {
        // Only a zero run can straddle the resume point (the recipe merged runs); data cannot.
        if (!p.entry.zero) throw vmError('CONFLICT', `the receiver's recipe ends at ${position}, inside a data segment at ${start}`);
        len -= position - start;
        start = position;
      }
      batch.push({ fp: p.entry.fp, len, zero: p.entry.zero, start });
      if (batch.length >= BATCH_LEAVES) await flush();
    }
    await flush();
  }
  await conn.json<FinishReply>('POST', `${route}/finish`, {}, signal);
}

/** Query, segments, recipe for one run of leaves; returns the recipe's new end. */
async function sendBatch(conn: TransferConnection, store: SegmentStore, route: string, leaves: Leaf[], position: number, report: VersionSendReport, signal: AbortSignal | undefined): Promise<number> {
  const uniq = new Map<string, Leaf>();
  for (const l of leaves) if (!l.zero) uniq.set(l.fp.toString('latin1'), l);
  const asked = [...uniq.values()];
  const missing: Leaf[] = [];
  if (asked.length > 0) {
    const q = encodeQuery(asked.map((l) => ({ fp: l.fp, len: l.len })));
    const reply = await conn.frame(`${route}/query`, q, signal);
    report.fingerprintBytes += q.length + reply.length;
    decodeQueryReply(reply, asked.length).forEach((m, j) => {
      if (m) missing.push(asked[j]);
    });
  }
  // Reading and compressing the next part overlaps sending this one (the store's reads and
  // LZ4 on this side, the receiver's re-hash and store on the other): at most two parts of
  // READ_BATCH segments in memory.
  const prepare = async (part: Leaf[]): Promise<SentSegment[]> => {
    const plain = await store.readSegments(part.map((l) => l.fp));
    const out: SentSegment[] = [];
    for (let k = 0; k < part.length; k++) {
      const raw = plain[k];
      if (raw === null) throw vmError('MISSING_SEGMENT', `segment ${part[k].fp.toString('hex').slice(0, 16)} of the file is not in this store; run verify`);
      report.bytesRead += raw.length;
      const enc = encodePayload(raw);
      const payload = Buffer.from(enc.payload.buffer, enc.payload.byteOffset, enc.payload.byteLength);
      out.push({ fp: part[k].fp, len: part[k].len, codec: enc.codec === Codec.Lz4 ? SegmentCodec.Lz4 : SegmentCodec.Raw, payload: Buffer.from(payload) });
    }
    return out;
  };
  let frame: SentSegment[] = [];
  let frameBytes = 0;
  let sending: Promise<void> = Promise.resolve();
  const sendFrame = async () => {
    if (frame.length === 0) return;
    const body = encodeSegments(frame);
    frame = [];
    frameBytes = 0;
    await sending;
    sending = conn.frame(`${route}/segments`, body, signal).then(() => undefined);
    sending.catch(() => {});
  };
  let next = missing.length > 0 ? prepare(missing.slice(0, READ_BATCH)) : undefined;
  for (let i = 0; next !== undefined; i += READ_BATCH) {
    const ready = await next;
    next = i + READ_BATCH < missing.length ? prepare(missing.slice(i + READ_BATCH, i + 2 * READ_BATCH)) : undefined;
    next?.catch(() => {});
    for (const seg of ready) {
      frame.push(seg);
      frameBytes += seg.payload.length;
      report.segmentsSent++;
      report.segmentBytesSent += seg.payload.length;
      if (frameBytes >= FRAME_BYTES || frame.length >= LIMITS.segmentCount) await sendFrame();
    }
  }
  await sendFrame();
  await sending;
  const entries: RecipeEntry[] = [];
  for (const l of leaves) {
    if (l.zero) {
      report.zeroBytes += l.len;
      const last = entries[entries.length - 1];
      if (last?.kind === 'zero') last.len += l.len;
      else entries.push({ kind: 'zero', len: l.len });
    } else {
      report.segments++;
      entries.push({ kind: 'segment', fp: l.fp, len: l.len });
    }
  }
  let from = leaves[0].start;
  if (from < position) throw vmError('INVALID_ARGUMENT', `internal: recipe at ${from} before ${position}`);
  for (let i = 0; i < entries.length; i += LIMITS.recipeCount) {
    const part = entries.slice(i, i + LIMITS.recipeCount);
    await conn.frame(`${route}/recipe`, encodeRecipe(from, part), signal);
    for (const e of part) from += e.len;
  }
  const last = leaves[leaves.length - 1];
  return last.start + last.len;
}
