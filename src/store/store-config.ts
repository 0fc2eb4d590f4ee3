// The store's identity file, `<data>/store.json`: written once at creation, it records the
// format version and the segmenter sizes (boundaries, and so dedup, depend on them forever).

import { randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, vmError } from '../errors.js';
import { type ChunkerParams, DEFAULT_CHUNKER, validateChunkerParams } from './segmenter.js';
import { fsyncDir } from './file-io.js';

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
  let cfg: StoreConfig;
  try {
    cfg = JSON.parse(text) as StoreConfig;
  } catch {
    throw vmError('CORRUPT_CONTAINER', `${file} is not valid JSON; restore it from a backup of the data directory`);
  }
  if (typeof cfg.format !== 'number' || cfg.format > STORE_FORMAT) {
    throw vmError('UNSUPPORTED_FORMAT', `${file}: store format ${cfg.format} is newer than this vmvault reads (${STORE_FORMAT}); upgrade vmvault`);
  }
  validateChunkerParams(cfg.chunker);
  return cfg;
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
