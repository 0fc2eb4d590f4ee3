// The record of clone copies (issue 14, roster contract): which restore point has a verified
// copy on which destination, in <data>/copies.json, and a SegmentSource over each copy for the
// best-copy restore and the repair of damaged segments.
//
// Format (version 1): { "version": 1, "copies": [CopyRecord, ...] }, at most MAX_RECORDS (the
// oldest go first), written atomically (json-file.ts). A record is added only after the copy
// verified on its destination; a re-run that found the point there already refreshes it.

import path from 'node:path';
import { vmError } from '../errors.js';
import { TransferConnection } from '../transfer/client.js';
import { decodeQueryReply, decodeSegments, FRAME_HEADER_BYTES, LIMITS, SegmentCodec, type SentSegment } from '../transfer/frames.js';
import { openArchivePoint, openArchiveSource } from './archive.js';
import type { PointFile, PointSource } from '../backup/restore.js';
import { ReadRescue } from '../namespace/damage.js';
import type { Namespace } from '../namespace/namespace.js';
import type { DestinationRegistry } from './destinations.js';
import { Serial, readVersioned, writeAtomic } from './json-file.js';
import type { SegmentSource } from './segment-source.js';

export const COPIES_VERSION = 1;
const MAX_RECORDS = 100_000;

export interface CopyRecord {
  vm: string;
  share: string;
  point: string;
  destination: string;
  kind: 'appliance' | 'dir';
  /** When the copy was made (or found there). */
  at: string;
  verifiedAt?: string;
  bytesSent?: number;
}

export class CopyRecords {
  private copies: CopyRecord[] = [];
  private readonly serial = new Serial();
  private constructor(readonly file: string) {}

  static async open(dataDir: string): Promise<CopyRecords> {
    const r = new CopyRecords(path.join(dataDir, 'copies.json'));
    const v = await readVersioned(r.file, COPIES_VERSION, 'copies');
    if (v !== undefined) {
      if (!Array.isArray(v.copies)) throw vmError('CORRUPT_RECORD', `${r.file}: copies is not a list`);
      for (const [i, c] of (v.copies as CopyRecord[]).entries()) {
        if (typeof c?.vm !== 'string' || typeof c.point !== 'string' || typeof c.destination !== 'string' || (c.kind !== 'appliance' && c.kind !== 'dir')) {
          throw vmError('CORRUPT_RECORD', `${r.file}: copy ${i} is malformed`);
        }
      }
      r.copies = v.copies as CopyRecord[];
    }
    return r;
  }

  /** Adds (or refreshes) the record of a verified copy. */
  record(c: CopyRecord): Promise<void> {
    return this.serial.run(async () => {
      const next = this.copies.filter((x) => !(x.vm === c.vm && x.point === c.point && x.destination === c.destination));
      next.push({ ...c });
      while (next.length > MAX_RECORDS) next.shift();
      await writeAtomic(this.file, { version: COPIES_VERSION, copies: next });
      this.copies = next;
    });
  }

  /** Every copy of a VM's points (all VMs without `vm`). */
  list(vm?: string): CopyRecord[] {
    return this.copies.filter((c) => vm === undefined || c.vm === vm).map((c) => ({ ...c }));
  }

  /** Roster contract: the copies of one point. */
  copiesOf(vm: string, point: string): { destination: string; kind: 'appliance' | 'dir'; verifiedAt?: string }[] {
    return this.copies
      .filter((c) => c.vm === vm && c.point === point)
      .map((c) => ({ destination: c.destination, kind: c.kind, ...(c.verifiedAt ? { verifiedAt: c.verifiedAt } : {}) }));
  }
}

/** Roster contract: a SegmentSource over the copy of `vm`'s `point` on `destination`. */
export async function openSource(destinations: DestinationRegistry, records: CopyRecords, destination: string, vm: string, point: string): Promise<SegmentSource> {
  const d = destinations.get(destination);
  if (!records.copiesOf(vm, point).some((c) => c.destination === destination)) {
    throw vmError('NOT_FOUND', `destination ${destination} holds no recorded copy of ${vm} point ${point}`, { destination });
  }
  if (d.kind === 'dir') return openArchiveSource(d.path, `archive ${d.name}`);
  const conn = await TransferConnection.open({ url: d.url, token: d.token, ...(d.pin ? { pinSha256: d.pin } : {}) });
  let batchRoute = true;
  const source: SegmentSource = {
    name: `clone ${d.name}`,
    async fetch(fp: Buffer): Promise<Buffer | null> {
      try {
        return await conn.request('GET', `/api/v1/replicas/segments/${fp.toString('hex')}`);
      } catch (err) {
        if ((err as { code?: string }).code === 'NOT_FOUND') return null;
        throw err;
      }
    },
    async fetchMany(fps: Buffer[]): Promise<Array<Buffer | null>> {
      if (!batchRoute) return Promise.all(fps.map((fp) => source.fetch(fp)));
      const out: Array<Buffer | null> = new Array(fps.length).fill(null);
      // An answer may cover only a prefix of what was asked (its bytes are bounded): ask again from there.
      for (let from = 0; from < fps.length; ) {
        const ask = fps.slice(from, from + REPLICA_SEGMENTS_PER_REQUEST);
        const body = Buffer.from(JSON.stringify({ fingerprints: ask.map((fp) => fp.toString('hex')) }));
        let answer: Buffer;
        try {
          answer = await conn.request('POST', '/api/v1/replicas/segments', body, 'application/json');
        } catch (err) {
          // An appliance from before the batch route (it never answers 404 itself): one by one.
          if ((err as { details?: { status?: number } }).details?.status !== 404) throw err;
          batchRoute = false;
          return Promise.all(fps.map((fp) => source.fetch(fp)));
        }
        const { absent, segments } = decodeSegmentsAnswer(answer, ask.length);
        const byFp = new Map(segments.map((x) => [x.fp.toString('latin1'), x.payload]));
        absent.forEach((gone, k) => {
          if (!gone) out[from + k] = byFp.get(ask[k].toString('latin1')) ?? null;
        });
        from += absent.length;
      }
      return out;
    },
    close: () => conn.close(),
  };
  return source;
}

/** What POST /replicas/segments may ask at once (control/routes/replicas.ts's limit). */
const REPLICA_SEGMENTS_PER_REQUEST = 512;

/**
 * The answer of POST /replicas/segments (transfer/PROTOCOL.md, "Segments by fingerprint"): a
 * QueryReply frame over a prefix of the fingerprints asked (bit set: not there), then a Segments
 * frame with the others' plain bytes, in order. Untrusted: lengths are checked by the frame
 * decoders, and every segment's bytes are re-hashed by the caller (ReadRescue).
 */
export function decodeSegmentsAnswer(buf: Buffer, asked: number): { absent: boolean[]; segments: SentSegment[] } {
  if (buf.length < FRAME_HEADER_BYTES) throw vmError('INVALID_ARGUMENT', `a segments answer of ${buf.length} bytes is too short`);
  const first = FRAME_HEADER_BYTES + buf.readUInt32LE(12);
  if (first > buf.length) throw vmError('INVALID_ARGUMENT', 'the segments answer is truncated');
  const count = buf.readUInt32LE(8);
  if (count === 0 || count > asked) throw vmError('INVALID_ARGUMENT', `the segments answer covers ${count} of the ${asked} asked`);
  const absent = decodeQueryReply(buf.subarray(0, first), count);
  const segments = decodeSegments(buf.subarray(first), LIMITS.segmentBytes);
  if (segments.length !== absent.filter((a) => !a).length) throw vmError('INVALID_ARGUMENT', `the segments answer holds ${segments.length} segments where its reply says ${absent.filter((a) => !a).length}`);
  for (const x of segments) if (x.codec !== SegmentCodec.Raw) throw vmError('INVALID_ARGUMENT', 'the segments answer holds a compressed segment (raw expected)');
  return { absent, segments };
}

/**
 * Roster contract, for a point the primary no longer holds: the point as `destination` holds it.
 * An archive reads its recipes (archive.ts). A clone appliance describes the point's files (their
 * segment-tree roots); each is read through this store's own tree reader with the clone as the
 * rescue: every node and segment this store still holds (other points share most of them) is
 * read here, the rest is asked of the clone in batches and re-hashed. Nothing is written here.
 */
export async function openPoint(destinations: DestinationRegistry, records: CopyRecords, ns: Namespace, destination: string, vm: string, point: string): Promise<PointSource> {
  const d = destinations.get(destination);
  const rec = records.list(vm).find((c) => c.point === point && c.destination === destination);
  if (!rec) throw vmError('NOT_FOUND', `destination ${destination} holds no recorded copy of ${vm} point ${point}`, { destination });
  if (d.kind === 'dir') return openArchivePoint(d.path, rec.share, point, `archive ${d.name}`);
  const segments = await openSource(destinations, records, destination, vm, point);
  try {
    const conn = await TransferConnection.open({ url: d.url, token: d.token, ...(d.pin ? { pinSha256: d.pin } : {}) });
    let desc: { files: Array<{ path: string; size: number; root: string; height: number }> };
    try {
      desc = await conn.json('GET', `/api/v1/replicas/shares/${encodeURIComponent(rec.share)}/snapshots/${encodeURIComponent(point)}`);
    } finally {
      await conn.close();
    }
    // One rescue for the whole point: a node or segment fetched once serves every file. Nothing
    // is kept for a repair (there is no primary point to repair).
    const rescue = new ReadRescue([segments], { keepBytes: 0 });
    return {
      name: segments.name,
      files: async () => desc.files.map((f) => ({ path: f.path, size: f.size })),
      async open(filePath: string): Promise<PointFile> {
        const f = desc.files.find((x) => x.path === filePath);
        if (!f) throw vmError('NOT_FOUND', `point ${rec.share}/${point} of ${segments.name} has no file ${filePath}`);
        if (!/^[0-9a-f]{64}$/.test(f.root) || !Number.isInteger(f.height) || f.height < 0 || !Number.isSafeInteger(f.size) || f.size < 0) {
          throw vmError('INVALID_ARGUMENT', `${segments.name} describes ${filePath} with a malformed root`);
        }
        const version = { root: Buffer.from(f.root, 'hex'), height: f.height, size: f.size };
        return {
          size: f.size,
          async dataRanges() {
            const out: Array<{ start: number; end: number }> = [];
            for await (const { entry, start } of ns.store.view(version, rescue).leaves(0, f.size)) {
              if (entry.zero) continue;
              const last = out[out.length - 1];
              const end = Math.min(f.size, start + entry.len);
              if (last && last.end === start) last.end = end;
              else out.push({ start, end });
            }
            return out;
          },
          read: (pos, len) => ns.store.read(version, pos, len, rescue),
          close: async () => {},
        };
      },
      close: () => segments.close(),
    };
  } catch (err) {
    await segments.close().catch(() => {});
    throw err;
  }
}
