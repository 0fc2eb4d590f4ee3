// Per-VM backup state: the restore points' records and the checkpoint (dirty bitmap) the next
// incremental starts from. One JSON file per VM in `<data>/backups/<vm>.json`.
//
// Why the data directory and not a hidden file in the share: a file in the share would be part of
// every snapshot (so of every restore point and every restore) and visible and writable through
// the mount; the records describe the points, they are not part of them. Like jobs.json they are
// the appliance's own state. Why JSON: a few hundred records per VM at most, read whole, and an
// operator can read it.
//
// Format (version 1):
//   { "version": 1, "vm": NAME, "checkpoint": { "name": BITMAP, "point": SNAPSHOT } | null,
//     "records": [BackupRecord, ...] }   // oldest first
// Written to a temporary file, fsynced, renamed over, directory fsynced: a crash leaves the old
// or the new file, never half of one. A newer version is refused (UNSUPPORTED_FORMAT).

import fs from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, vmError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic-file.js';

export const RECORDS_VERSION = 1;

export interface DiskRecord {
  device: string;
  sizeBytes: number;
  bytesRead: number;
  kind: 'full' | 'incremental';
  fullReason?: string;
}

export interface BackupRecord {
  vm: string;
  /** Snapshot name, UTC, e.g. 2026-12-05T12-00-00Z. */
  point: string;
  kind: 'full' | 'incremental';
  startedAt: string;
  durationMs: number;
  bytesRead: number;
  bytesWritten: number;
  freezeMs: number | null;
  disks: DiskRecord[];
  workflow: string;
}

export interface Checkpoint {
  /** The persistent dirty bitmap's name on every disk. */
  name: string;
  /** The restore point it was taken at: an incremental starts from this snapshot's files. */
  point: string;
}

export interface VmBackupState {
  version: number;
  vm: string;
  checkpoint: Checkpoint | null;
  records: BackupRecord[];
}

export class BackupRecords {
  private readonly dir: string;

  constructor(dataDir: string) {
    this.dir = path.join(dataDir, 'backups');
  }

  private file(vm: string): string {
    return path.join(this.dir, `${vm}.json`);
  }

  async read(vm: string): Promise<VmBackupState> {
    let text: string;
    try {
      text = await fs.readFile(this.file(vm), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: RECORDS_VERSION, vm, checkpoint: null, records: [] };
      throw fromSystemError(err, `reading the backup records of ${vm}`);
    }
    let v: VmBackupState;
    try {
      v = JSON.parse(text) as VmBackupState;
    } catch (err) {
      throw vmError('CORRUPT_RECORD', `${this.file(vm)} is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof v?.version !== 'number' || !Array.isArray(v.records)) throw vmError('CORRUPT_RECORD', `${this.file(vm)} is not a backup records file`);
    if (v.version > RECORDS_VERSION) {
      throw vmError('UNSUPPORTED_FORMAT', `${this.file(vm)} has format version ${v.version}; this appliance reads up to ${RECORDS_VERSION}`);
    }
    return v;
  }

  async write(state: VmBackupState): Promise<void> {
    await writeFileAtomic(this.file(state.vm), JSON.stringify({ ...state, version: RECORDS_VERSION }, null, 1) + '\n', `writing the backup records of ${state.vm}`, { mkdir: true });
  }
}
