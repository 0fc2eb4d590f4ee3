// The store's identity file, `<data>/store.json`: written once at creation, it records the
// format version and the segmenter sizes (boundaries, and so dedup, depend on them forever).

import { randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, vmError } from '../errors.js';
import { type ChunkerParams, DEFAULT_CHUNKER, validateChunkerParams } from './segmenter/segmenter.js';
import { fsyncDir } from './container/file-io.js';

export const STORE_FORMAT = 1;
export const CONFIG_FILE = 'store.json';

export interface StoreConfig {
  format: number;
  id: string;
  created: string;
  chunker: ChunkerParams;
}

export async function readConfig(dir: string): Promise<StoreConfig | undefined> {
  const file = path.join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(err, `reading ${file}`);
  }
  return parseConfig(text, file);
}

/** store.json's text, checked field by field (format first: a newer store is refused as such). */
export function parseConfig(text: string, file = CONFIG_FILE): StoreConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw vmError('CORRUPT_CONTAINER', `${file} is not valid JSON; restore it from a backup of the data directory`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw vmError('CORRUPT_CONTAINER', `${file} is not a JSON object; restore it from a backup of the data directory`);
  }
  const w = raw as Record<string, unknown>;
  if (typeof w.format !== 'number' || !Number.isInteger(w.format) || w.format > STORE_FORMAT) {
    throw vmError('UNSUPPORTED_FORMAT', `${file}: store format ${String(w.format).slice(0, 40)} is newer than this vmvault reads (${STORE_FORMAT}) or not a version; upgrade vmvault`);
  }
  if (w.format < 1) throw vmError('CORRUPT_CONTAINER', `${file}: store format ${w.format} is not a version`);
  if (typeof w.id !== 'string' || typeof w.created !== 'string') throw vmError('CORRUPT_CONTAINER', `${file}: id or created is missing`);
  const c = w.chunker;
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw vmError('CORRUPT_CONTAINER', `${file}: chunker is missing`);
  const cw = c as Record<string, unknown>;
  const chunker = { minSize: cw.minSize, avgSize: cw.avgSize, maxSize: cw.maxSize } as ChunkerParams;
  try {
    validateChunkerParams(chunker);
  } catch (err) {
    throw vmError('CORRUPT_CONTAINER', `${file}: ${(err as Error).message}`, undefined, err);
  }
  return { format: w.format, id: w.id, created: w.created, chunker };
}

export async function createConfig(dir: string, chunker: ChunkerParams = DEFAULT_CHUNKER): Promise<StoreConfig> {
  validateChunkerParams(chunker);
  const cfg: StoreConfig = { format: STORE_FORMAT, id: randomUUID(), created: new Date().toISOString(), chunker: { ...chunker } };
  const file = path.join(dir, CONFIG_FILE);
  const tmp = `${file}.tmp`;
  try {
    const first = await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(tmp, JSON.stringify(cfg, null, 2) + '\n', { flag: 'w', mode: 0o644 });
    const h = await fsp.open(tmp, 'r');
    await h.sync();
    await h.close();
    await fsp.rename(tmp, file);
    await fsyncDir(dir);
    // Every directory made here is an entry in its parent, durable only once the parent is
    // fsynced: without this a power cut takes the whole new store (config, db/) with it.
    if (first !== undefined) {
      for (let d = dir; ; d = path.dirname(d)) {
        await fsyncDir(path.dirname(d));
        if (d === path.resolve(first) || d === path.dirname(d)) break;
      }
    }
  } catch (err) {
    throw fromSystemError(err, `creating the store in ${dir}`);
  }
  return cfg;
}
