// The LevelDB of a data directory rebuilt from a copy (the DR restore, src/policy/DR-FORMAT.md):
// a new database at `<data>/db` filled with the copy's records in batches, the last batch synced,
// then db/ and the data directory fsynced (as SegmentStore.open does for a new store, since
// LevelDB does not fsync its directory). Refuses a directory that holds a database already.
// The copy has no `mclean` record (it was taken from an open store), so the first open runs
// recovery over the containers the checkpoint names as open, and rebuilds the summary filter.

import { ClassicLevel } from 'classic-level';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, vmError } from '../errors.js';
import { fsyncDir } from './container/file-io.js';
import { metaKey } from './keys.js';

const BATCH_BYTES = 4 * 1024 * 1024;

/** Writes `records` (key order not required) into a new database `<dataDir>/db`; returns how many. */
export async function writeDatabase(dataDir: string, records: AsyncIterable<Array<[Buffer, Buffer]>>): Promise<number> {
  const dir = path.join(dataDir, 'db');
  if (await fsp.stat(dir).then(() => true, () => false)) throw vmError('ALREADY_EXISTS', `${dir} exists already; restore into an empty directory`);
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  try {
    await db.open();
  } catch (err) {
    throw fromSystemError(err, `creating the index database in ${dir}`);
  }
  let n = 0;
  const clean = metaKey('clean');
  try {
    let batch = db.batch();
    let bytes = 0;
    for await (const chunk of records) {
      for (const [k, v] of chunk) {
        // Never restored as clean: recovery must look at the open containers of the copy.
        if (k.equals(clean)) continue;
        batch.put(k, v);
        bytes += k.length + v.length;
        n++;
        if (bytes >= BATCH_BYTES) {
          await batch.write();
          batch = db.batch();
          bytes = 0;
        }
      }
    }
    const write = batch.write as unknown as (opts: { sync: boolean }) => Promise<void>;
    await write.call(batch, { sync: true });
  } catch (err) {
    await db.close().catch(() => {});
    throw fromSystemError(err, `writing the index database in ${dir}`);
  }
  await db.close();
  await fsyncDir(dir);
  await fsyncDir(dataDir);
  return n;
}
