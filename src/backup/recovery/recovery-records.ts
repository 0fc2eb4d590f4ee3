// The record of one instant recovery: `<data>/recover/<name>/recovery.json` (version 1, written
// atomically), beside the QEMU process's own sockets and logs in the same directory:
//
//   qmp.sock      the VM's QMP monitor (the appliance connects for each operation and leaves)
//   qga.sock      its guest agent's virtio-serial channel
//   console.log   its serial console
//   qemu.log      QEMU's stderr
//
// Fields: version, name (also the clone share's name), vm, point, share (the VM's share),
// startedAt (ISO), pid, argv (QEMU's arguments), disks [{device, file, node, fileNode}], notes,
// state ('running' | 'migrated' | 'stopped'), migratedTo? (directory), migratedAt? (ISO).
// A reader refuses another version (UNSUPPORTED_FORMAT) rather than guess.

import fs from 'node:fs/promises';
import path from 'node:path';
import { vmError } from '../../errors.js';
import { writeFileAtomic } from '../../files/atomic-file.js';

export const RECOVERY_VERSION = 1;

export interface RecoveryDisk {
  device: string;
  /** The image file QEMU reads now: on the mount until a migration, in its target after it. */
  file: string;
  node: string;
  fileNode?: string;
}

export interface RecoveryRecord {
  version: number;
  name: string;
  vm: string;
  point: string;
  share: string;
  startedAt: string;
  pid: number;
  argv: string[];
  disks: RecoveryDisk[];
  notes: string[];
  state: 'running' | 'migrated' | 'stopped';
  migratedTo?: string;
  migratedAt?: string;
}

export function recoveryDir(dataDir: string, name: string): string {
  return path.join(dataDir, 'recover', name);
}

export async function writeRecord(dataDir: string, r: RecoveryRecord): Promise<void> {
  await writeFileAtomic(path.join(recoveryDir(dataDir, r.name), 'recovery.json'), JSON.stringify(r, null, 2) + '\n', `writing the recovery record of ${r.name}`);
}

/** Every record under `<data>/recover/`; a directory without a readable record is reported, not fatal. */
export async function readRecords(dataDir: string, log: (l: string) => void): Promise<RecoveryRecord[]> {
  const root = path.join(dataDir, 'recover');
  const names = await fs.readdir(root).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw vmError('IO', `${root}: ${err.message}`);
  });
  const out: RecoveryRecord[] = [];
  for (const n of names) {
    const file = path.join(root, n, 'recovery.json');
    try {
      const r = JSON.parse(await fs.readFile(file, 'utf8')) as RecoveryRecord;
      if (r.version !== RECOVERY_VERSION) throw vmError('UNSUPPORTED_FORMAT', `${file}: version ${String(r.version)}, this appliance reads ${RECOVERY_VERSION}`);
      if (r.name !== n) throw vmError('CORRUPT_RECORD', `${file} names ${JSON.stringify(r.name)}`);
      out.push(r);
    } catch (err) {
      log(`instant recovery ${n}: ${(err as Error).message}; left alone`);
    }
  }
  return out;
}
