// The DR copy's on-disk format (DR-FORMAT.md beside this file is the spec; a difference between
// the two is a bug in one of them): the manifest, the database records file, and where each
// part lives in a destination directory. Every decoder here returns a valid value or throws
// CORRUPT_COPY (damaged or missing) or UNSUPPORTED_FORMAT (a newer writer), never anything else.

import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, vmError } from '../errors.js';

export const DR_FORMAT = 'vmvault-dr';
/** 2: the database is an append-only log (dr-log.ts) shared by the copies; 1: a records file per copy (still read). */
export const DR_VERSION = 2;
export const MANIFEST_FILE = 'dr-manifest.json';
/** The database records file: magic, records, end marker with the count (DR-FORMAT.md). */
export const DB_MAGIC = Buffer.from('VVDRDB01', 'latin1');
export const DB_END = Buffer.from('VVDREND1', 'latin1');

export interface FileEntry {
  /** Path in the destination, relative, `/`-separated. */
  path: string;
  size: number;
  /** SHA-256 of the file's bytes, lower-case hex. */
  sha256: string;
}

export interface ContainerEntry extends FileEntry {
  id: number;
  /** Sealed containers live in the shared `containers/`; open ones in the copy's own folder. */
  sealed: boolean;
}

export interface StateFileEntry extends FileEntry {
  /** Where the file goes in a restored data directory, relative, `/`-separated. */
  rel: string;
  /** File mode bits (0o600 for tokens). */
  mode: number;
}

export interface ManifestBody {
  format: typeof DR_FORMAT;
  version: number;
  /** This copy's identity: also the name of its folder under copies/. */
  copy: string;
  /** The identity of the store copied (store.json `id`). */
  storeId: string;
  /** When the checkpoint was taken (ISO 8601). */
  takenAt: string;
  /** When the copy was complete (ISO 8601). */
  completedAt: string;
  /** The checkpoint the copy holds (the store's `mcheckpoint` in the database records). */
  checkpoint: { nextCid: number; openCids: number[] };
  appliance: { version: string };
  /** store.json, byte for byte. */
  storeConfig: FileEntry;
  /**
   * Version 1: the copy's records file (`records` in it). Version 2: the database log, `size` its
   * committed length, `sha256` the chained checksum there, plus `live` and `checkpoints` (dr-log.ts).
   */
  database: FileEntry & { records: number; live?: number; checkpoints?: number };
  containers: ContainerEntry[];
  files: StateFileEntry[];
  /** The copy before this one (its id), when there was one. */
  previous?: string;
}

export interface Manifest {
  body: ManifestBody;
  /** SHA-256 of JSON.stringify(body), so a flipped byte in the manifest is caught too. */
  sha256: string;
}

export function sha256Hex(b: Uint8Array | string): string {
  return createHash('sha256').update(b).digest('hex');
}

export function encodeManifest(body: ManifestBody): string {
  const m: Manifest = { body, sha256: sha256Hex(JSON.stringify(body)) };
  return JSON.stringify(m, null, 1) + '\n';
}

/** Reads and checks `<dir>/dr-manifest.json`; NOT_FOUND when there is none (no complete copy). */
export async function readManifest(dir: string): Promise<ManifestBody> {
  const file = path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw vmError('NOT_FOUND', `${dir} holds no complete DR copy (no ${MANIFEST_FILE}); a copy that was cut off is never taken for a whole one`);
    }
    throw fromSystemError(err, `reading ${file}`);
  }
  return decodeManifest(text, file);
}

export function decodeManifest(text: string, file: string): ManifestBody {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw vmError('CORRUPT_COPY', `${file} is damaged: not valid JSON (${(err as Error).message})`);
  }
  const o = m as Partial<Manifest>;
  if (typeof o !== 'object' || o === null || typeof o.body !== 'object' || o.body === null || typeof o.sha256 !== 'string') {
    throw vmError('CORRUPT_COPY', `${file} is damaged: not a DR manifest (body and sha256 expected)`);
  }
  const b = o.body as Partial<ManifestBody>;
  if (b.format !== DR_FORMAT) throw vmError('CORRUPT_COPY', `${file} is not a vmvault DR manifest (format ${JSON.stringify(b.format)})`);
  if (typeof b.version !== 'number') throw vmError('CORRUPT_COPY', `${file} is damaged: no version`);
  if (b.version > DR_VERSION) throw vmError('UNSUPPORTED_FORMAT', `${file} has DR format version ${b.version}; this vmvault reads up to ${DR_VERSION}`);
  if (sha256Hex(JSON.stringify(o.body)) !== o.sha256) throw vmError('CORRUPT_COPY', `${file} is damaged: its checksum does not match its content`);
  const bad = (what: string) => vmError('CORRUPT_COPY', `${file} is damaged: ${what}`);
  if (typeof b.copy !== 'string' || !/^[0-9A-Za-z-]+$/.test(b.copy)) throw bad('copy id');
  if (typeof b.storeId !== 'string' || typeof b.takenAt !== 'string' || typeof b.completedAt !== 'string') throw bad('identity');
  if (!b.checkpoint || !Number.isInteger(b.checkpoint.nextCid) || !Array.isArray(b.checkpoint.openCids)) throw bad('checkpoint');
  checkEntry(b.storeConfig, file, 'storeConfig');
  checkEntry(b.database, file, 'database');
  if (!Number.isInteger(b.database!.records)) throw bad('database record count');
  if (b.version >= 2 && (!Number.isInteger(b.database!.live) || !Number.isInteger(b.database!.checkpoints) || b.database!.checkpoints! < 1)) throw bad('database log entry');
  if (!Array.isArray(b.containers) || !Array.isArray(b.files)) throw bad('containers or files');
  for (const c of b.containers) {
    checkEntry(c, file, 'container');
    if (!Number.isInteger(c.id) || c.id < 1 || typeof c.sealed !== 'boolean') throw bad(`container entry ${JSON.stringify(c)}`);
  }
  for (const f of b.files) {
    checkEntry(f, file, 'file');
    if (!safeRel(f.rel) || !Number.isInteger(f.mode)) throw bad(`file entry ${JSON.stringify(f)}`);
  }
  return b as ManifestBody;
}

function checkEntry(e: Partial<FileEntry> | undefined, file: string, what: string): void {
  if (!e || typeof e.path !== 'string' || !safeRel(e.path) || !Number.isInteger(e.size) || e.size! < 0 || typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) {
    throw vmError('CORRUPT_COPY', `${file} is damaged: bad ${what} entry ${JSON.stringify(e)}`);
  }
}

/** A relative `/`-separated path that stays inside its root (the manifest is untrusted bytes). */
export function safeRel(p: unknown): p is string {
  if (typeof p !== 'string' || p.length === 0 || p.length > 4096 || p.startsWith('/') || p.includes('\\') || p.includes('\0')) return false;
  return p.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

/** Where a file named by a manifest entry lives. */
export function inCopy(dir: string, rel: string): string {
  return path.join(dir, ...rel.split('/'));
}

// ---- the database records file (version 1: read only; version 2 is dr-log.ts) ------------------

/** Largest key or value a record may have: LevelDB's own values here are far smaller. */
const MAX_FIELD = 64 * 1024 * 1024;

/**
 * Reads a database records file back in batches, checking its structure and its SHA-256 against
 * `expect` at the end (before the last batch is handed out, so a damaged file is never taken whole).
 */
export async function* readRecords(file: string, expect: { sha256: string; records: number }): AsyncGenerator<Array<[Buffer, Buffer]>> {
  const h = await fsp.open(file, 'r').catch((err) => {
    throw (err as NodeJS.ErrnoException).code === 'ENOENT' ? vmError('CORRUPT_COPY', `${file} is missing`) : fromSystemError(err, `opening ${file}`);
  });
  const hash = createHash('sha256');
  const damaged = (what: string) => vmError('CORRUPT_COPY', `${file} is damaged: ${what}`);
  try {
    let buf = Buffer.alloc(0);
    let pos = 0;
    let eof = false;
    const chunk = Buffer.allocUnsafe(1 << 20);
    const need = async (n: number): Promise<boolean> => {
      while (buf.length - pos < n && !eof) {
        const { bytesRead } = await h.read(chunk, 0, chunk.length, null);
        if (bytesRead === 0) {
          eof = true;
          break;
        }
        hash.update(chunk.subarray(0, bytesRead));
        buf = Buffer.concat([buf.subarray(pos), chunk.subarray(0, bytesRead)]);
        pos = 0;
      }
      return buf.length - pos >= n;
    };
    if (!(await need(8)) || !buf.subarray(pos, pos + 8).equals(DB_MAGIC)) throw damaged('bad magic (not a DR database records file)');
    pos += 8;
    let count = 0;
    let batch: Array<[Buffer, Buffer]> = [];
    for (;;) {
      if (!(await need(8))) throw damaged('cut off before its end marker');
      if (buf.subarray(pos, pos + 8).equals(DB_END)) {
        if (!(await need(16))) throw damaged('cut off in its end marker');
        const n = buf.readUInt32LE(pos + 8) + buf.readUInt32LE(pos + 12) * 2 ** 32;
        pos += 16;
        if (await need(1)) throw damaged('bytes after its end marker');
        if (n !== count || n !== expect.records) throw damaged(`${count} records read, its end marker says ${n}, the manifest ${expect.records}`);
        if (hash.digest('hex') !== expect.sha256) throw damaged('its checksum does not match the manifest');
        if (batch.length > 0) yield batch;
        return;
      }
      const kl = buf.readUInt32LE(pos);
      const vl = buf.readUInt32LE(pos + 4);
      if (kl === 0 || kl > MAX_FIELD || vl > MAX_FIELD) throw damaged(`record ${count} has impossible lengths (${kl}, ${vl})`);
      pos += 8;
      if (!(await need(kl + vl))) throw damaged(`cut off in record ${count}`);
      const key = Buffer.from(buf.subarray(pos, pos + kl));
      const value = Buffer.from(buf.subarray(pos + kl, pos + kl + vl));
      pos += kl + vl;
      count++;
      batch.push([key, value]);
      // Hold batches back until the checksum is known? Too much memory for a big index: a
      // restore writes them into a new database it removes if the file turns out damaged.
      if (batch.length >= 1000) {
        yield batch;
        batch = [];
      }
    }
  } finally {
    await h.close();
  }
}
