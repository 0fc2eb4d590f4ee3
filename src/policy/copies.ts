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
import { openArchiveSource } from './archive.js';
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
  return {
    name: `clone ${d.name}`,
    async fetch(fp: Buffer): Promise<Buffer | null> {
      try {
        return await conn.request('GET', `/api/v1/replicas/segments/${fp.toString('hex')}`);
      } catch (err) {
        if ((err as { code?: string }).code === 'NOT_FOUND') return null;
        throw err;
      }
    },
    close: () => conn.close(),
  };
}
