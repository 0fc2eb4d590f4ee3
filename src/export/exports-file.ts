// <data>/exports.json: which shares are exported over which protocol, to which clients. The
// appliance's only record of exports; the servers' configs are generated from it at every
// start and change, so editing those by hand is pointless (they are overwritten).
//
// Format (version 1), written atomically (temporary file, fsync, rename, fsync of the directory):
//   { "version": 1,
//     "nfs": [{ "share": "vms", "clients": ["10.0.0.0/24"], "exportId": 1, "enabledAt": ISO }],
//     "smb": [{ "share": "vms", "clients": ["10.0.0.0/24"], "enabledAt": ISO }],
//     "smbUser": "root",                       (optional: the SMB account, once a password is set)
//     "nextExportId": 2 }                      (optional: ids are never reused)
// exportId is ganesha's Export_Id: kept for the share's life, because NFS file handles carry it
// and a changed id would make every handle a client holds stale. A newer version is refused.

import fs from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, vmError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic-file.js';

export const EXPORTS_FILE = 'exports.json';
export const EXPORTS_VERSION = 1;

export type Protocol = 'nfs' | 'smb';
export const PROTOCOLS: readonly Protocol[] = ['nfs', 'smb'];

export interface ExportEntry {
  share: string;
  clients: string[];
  /** NFS only: ganesha's Export_Id (1..65535), fixed for the export's life. */
  exportId?: number;
  enabledAt: string;
}

export interface ExportsRecord {
  nfs: ExportEntry[];
  smb: ExportEntry[];
  smbUser?: string;
  /** The next NFS Export_Id to hand out: ids are never reused, so a handle from an export that
   * was disabled never resolves in another share's export. */
  nextExportId?: number;
}

export async function readExports(dataDir: string): Promise<ExportsRecord> {
  const file = path.join(dataDir, EXPORTS_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { nfs: [], smb: [] };
    throw fromSystemError(err, `reading ${file}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw vmError('CORRUPT_RECORD', `${file} is not valid JSON (${(err as Error).message}); fix or remove it (exports are then disabled)`);
  }
  return decode(raw, file);
}

function decode(raw: unknown, file: string): ExportsRecord {
  const bad = (why: string) => vmError('CORRUPT_RECORD', `${file}: ${why}`);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('not an object');
  const r = raw as Record<string, unknown>;
  if (typeof r.version !== 'number') throw bad('no version');
  if (r.version > EXPORTS_VERSION) throw vmError('UNSUPPORTED_FORMAT', `${file} has version ${r.version}; this appliance reads up to ${EXPORTS_VERSION}`);
  const list = (key: Protocol): ExportEntry[] => {
    const v = r[key] ?? [];
    if (!Array.isArray(v)) throw bad(`${key} is not a list`);
    return v.map((e, i) => {
      const o = e as Record<string, unknown>;
      if (o === null || typeof o !== 'object' || typeof o.share !== 'string' || !Array.isArray(o.clients) || !o.clients.every((c) => typeof c === 'string') || typeof o.enabledAt !== 'string') {
        throw bad(`${key}[${i}] is malformed`);
      }
      if (key === 'nfs' && !(Number.isInteger(o.exportId) && (o.exportId as number) >= 1 && (o.exportId as number) <= 65535)) throw bad(`${key}[${i}] has no valid exportId`);
      const entry: ExportEntry = { share: o.share, clients: [...(o.clients as string[])], enabledAt: o.enabledAt };
      if (key === 'nfs') entry.exportId = o.exportId as number;
      return entry;
    });
  };
  const out: ExportsRecord = { nfs: list('nfs'), smb: list('smb') };
  if (r.smbUser !== undefined) {
    if (typeof r.smbUser !== 'string') throw bad('smbUser is not a string');
    out.smbUser = r.smbUser;
  }
  if (r.nextExportId !== undefined) {
    if (!Number.isInteger(r.nextExportId)) throw bad('nextExportId is not an integer');
    out.nextExportId = r.nextExportId as number;
  }
  return out;
}

export async function writeExports(dataDir: string, rec: ExportsRecord): Promise<void> {
  const file = path.join(dataDir, EXPORTS_FILE);
  const body: Record<string, unknown> = { version: EXPORTS_VERSION, nfs: rec.nfs, smb: rec.smb };
  if (rec.smbUser !== undefined) body.smbUser = rec.smbUser;
  if (rec.nextExportId !== undefined) body.nextExportId = rec.nextExportId;
  await writeFileAtomic(file, JSON.stringify(body, null, 2) + '\n');
}
