// `vmvault dr restore --from DIR --data NEWDIR`: rebuilds a data directory from a DR copy alone,
// without an appliance. Order (DR-FORMAT.md, "Restore"):
//  1. the target must be missing or empty (a restore never mixes with or overwrites data);
//  2. the whole copy is verified first (dr-verify.ts): any missing or damaged file is named and
//     nothing is written;
//  3. store.json, the containers (sealed and open ones at their store paths), the state files and
//     then the database (the store's writeDatabase, handed in by the composition root) are
//     written, each file re-hashed as it is copied;
//  4. the lock clock's high-water mark is raised to at least the copy's checkpoint time, so a new
//     machine whose clock is behind does not start locks earlier than the old one would have;
//  5. every directory is fsynced; the appliance then starts on NEWDIR (its recovery seals the
//     containers that were open at the checkpoint).
// A failure after step 2 leaves a partial NEWDIR, which the error says to remove.

import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, vmError } from '../errors.js';
import { fsyncPath, mkdirDurable } from '../files/durable.js';
import { inCopy, readRecords } from './dr-format.js';
import { type LogEntry, logState } from './dr-log.js';
import { describeProblems, drVerify, type DrVerifyReport } from './dr-verify.js';
import { readVersioned, writeAtomic } from './json-file.js';
import { CLOCK_VERSION } from './lock-clock.js';

export interface DrRestoreOptions {
  from: string;
  data: string;
  /** The store's writeDatabase (store/database-restore.ts). */
  writeDatabase: (dataDir: string, records: AsyncIterable<Array<[Buffer, Buffer]>>) => Promise<number>;
  progress?: (done: number, total: number, phase: string) => void;
  signal?: AbortSignal;
}

export interface DrRestoreResult {
  from: string;
  data: string;
  copy: string;
  takenAt: string;
  containers: number;
  files: number;
  databaseRecords: number;
  bytes: number;
}

/** `containers/<shard>/<id>.vvc` (store FORMAT.md, "Container paths"). */
export function containerStorePath(id: number): string {
  return `containers/${(id >>> 10).toString(16).padStart(5, '0')}/${id.toString(16).padStart(8, '0')}.vvc`;
}

export async function drRestore(o: DrRestoreOptions): Promise<DrRestoreResult> {
  const from = path.resolve(o.from);
  const data = path.resolve(o.data);
  let existing: string[] | undefined;
  try {
    existing = await fsp.readdir(data);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, `reading the target ${data}`);
  }
  if (existing && existing.length > 0) {
    throw vmError('NOT_EMPTY', `the target ${data} is not empty (${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', ...' : ''}); a DR restore writes only into a new or empty directory`);
  }
  const { manifest: m, report } = await drVerify(from, { signal: o.signal, progress: (d, t) => o.progress?.(d, t, 'verifying the copy') });
  if (report.problems.length > 0) throw damagedCopy(report);

  const total = m.storeConfig.size + m.containers.reduce((n, c) => n + c.size, 0) + m.files.reduce((n, f) => n + f.size, 0) + m.database.size;
  let done = 0;
  const dirs = new Set<string>([data]);
  const put = async (src: string, rel: string, size: number, sha256: string, mode = 0o644) => {
    o.signal?.throwIfAborted();
    const dest = inCopy(data, rel);
    await fsp.mkdir(path.dirname(dest), { recursive: true });
    for (let d = path.dirname(dest); d.startsWith(data); d = path.dirname(d)) dirs.add(d);
    await copyChecked(inCopy(from, src), dest, size, sha256, mode, src);
    done += size;
    o.progress?.(done, total, 'writing the data directory');
  };
  try {
    await mkdirDurable(data);
    await put(m.storeConfig.path, 'store.json', m.storeConfig.size, m.storeConfig.sha256);
    for (const c of m.containers) await put(c.path, containerStorePath(c.id), c.size, c.sha256);
    for (const f of m.files) await put(f.path, f.rel, f.size, f.sha256, f.mode);
    o.progress?.(done, total, 'writing the database');
    const db = inCopy(from, m.database.path);
    // Version 2: the log's state as of the manifest's checkpoint; version 1: the copy's records file.
    const records = await o.writeDatabase(data, m.version >= 2 ? logState(db, m.database as LogEntry) : readRecords(db, m.database));
    done += m.database.size;
    await raiseLockClock(data, Date.parse(m.takenAt));
    for (const d of [...dirs].sort((a, b) => b.length - a.length)) await fsyncPath(d);
    return { from, data, copy: m.copy, takenAt: m.takenAt, containers: m.containers.length, files: m.files.length, databaseRecords: records, bytes: done };
  } catch (err) {
    const e = fromSystemError(err, `restoring ${data} from ${from}`);
    throw vmError(e.code, `${e.message}; ${data} is incomplete: remove it before trying again`, e.details, err);
  }
}

export function damagedCopy(report: DrVerifyReport): Error {
  const lines = describeProblems(report);
  const shown = lines.slice(0, 10).join('; ');
  return vmError('CORRUPT_COPY', `the DR copy ${report.copy} in ${report.from} is damaged: ${shown}${lines.length > 10 ? `; and ${lines.length - 10} more` : ''}`, {
    problems: report.problems,
  });
}

async function copyChecked(src: string, dest: string, size: number, sha256: string, mode: number, rel: string): Promise<void> {
  const hash = createHash('sha256');
  const s = await fsp.open(src, 'r');
  try {
    const d = await fsp.open(dest, 'wx', mode);
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      let off = 0;
      while (off < size) {
        const { bytesRead } = await s.read(buf, 0, Math.min(buf.length, size - off), off);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(0, bytesRead));
        await d.write(buf, 0, bytesRead, off);
        off += bytesRead;
      }
      if (off !== size || hash.digest('hex') !== sha256) throw vmError('CORRUPT_COPY', `${rel} changed while it was restored (checksum or size no longer matches the manifest)`);
      await d.sync();
    } finally {
      await d.close();
    }
  } finally {
    await s.close();
  }
}

async function raiseLockClock(data: string, takenAt: number): Promise<void> {
  if (!Number.isFinite(takenAt)) return;
  const file = path.join(data, 'policy-clock.json');
  const v = await readVersioned(file, CLOCK_VERSION, 'policy clock');
  const hw = typeof v?.highWater === 'number' ? v.highWater : 0;
  if (takenAt > hw) await writeAtomic(file, { version: CLOCK_VERSION, highWater: takenAt });
}

