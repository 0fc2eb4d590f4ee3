// `vmvault dr verify`: checks a DR copy without an appliance. The manifest must parse and match
// its own checksum; every file it names (store.json, every container, the database records, every
// state file) must be there with its size and SHA-256. Each problem names the file and what is
// wrong; nothing is written.

import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import { isVmvaultError } from '../errors.js';
import { type FileEntry, inCopy, type ManifestBody, readManifest } from './dr-format.js';
import { type LogEntry, scanLog } from './dr-log.js';

export interface DrProblem {
  /** The file, relative to the DR directory. */
  path: string;
  /** What it holds: "container 0000002a", "database records", "state file vms.json", "store.json". */
  what: string;
  problem: 'missing' | 'size' | 'checksum' | 'unreadable';
  detail: string;
}

export interface DrVerifyReport {
  from: string;
  copy: string;
  storeId: string;
  takenAt: string;
  containers: number;
  files: number;
  bytesChecked: number;
  problems: DrProblem[];
}

export async function drVerify(from: string, opts: { progress?: (done: number, total: number) => void; signal?: AbortSignal } = {}): Promise<{ manifest: ManifestBody; report: DrVerifyReport }> {
  const m = await readManifest(from);
  const items: Array<{ e: FileEntry; what: string }> = [
    { e: m.storeConfig, what: 'store.json' },
    { e: m.database, what: 'database records' },
    ...m.containers.map((c) => ({ e: c as FileEntry, what: `${c.sealed ? 'container' : 'open container'} ${c.id.toString(16).padStart(8, '0')}` })),
    ...m.files.map((f) => ({ e: f as FileEntry, what: `state file ${f.rel}` })),
  ];
  const total = items.reduce((n, i) => n + i.e.size, 0);
  const problems: DrProblem[] = [];
  let done = 0;
  const buf = Buffer.allocUnsafe(1 << 20);
  for (const { e, what } of items) {
    opts.signal?.throwIfAborted();
    const file = inCopy(from, e.path);
    const p = e === m.database && m.version >= 2 ? await checkLog(file, m.database as LogEntry) : await checkFile(file, e, buf);
    if (p) problems.push({ path: e.path, what, ...p });
    done += e.size;
    opts.progress?.(done, total);
  }
  return {
    manifest: m,
    report: { from, copy: m.copy, storeId: m.storeId, takenAt: m.takenAt, containers: m.containers.length, files: m.files.length, bytesChecked: done, problems },
  };
}

async function checkFile(file: string, e: FileEntry, buf: Buffer): Promise<Pick<DrProblem, 'problem' | 'detail'> | undefined> {
  let h: fsp.FileHandle;
  try {
    h = await fsp.open(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? { problem: 'missing', detail: 'the file is missing' } : { problem: 'unreadable', detail: `cannot open it (${code ?? (err as Error).message})` };
  }
  try {
    const size = (await h.stat()).size;
    if (size !== e.size) return { problem: 'size', detail: `${size} bytes, the manifest says ${e.size}` };
    const hash = createHash('sha256');
    let off = 0;
    while (off < size) {
      const { bytesRead } = await h.read(buf, 0, Math.min(buf.length, size - off), off);
      if (bytesRead === 0) return { problem: 'size', detail: `ended at ${off} bytes` };
      hash.update(buf.subarray(0, bytesRead));
      off += bytesRead;
    }
    const got = hash.digest('hex');
    if (got !== e.sha256) return { problem: 'checksum', detail: `SHA-256 ${got.slice(0, 16)}… does not match the manifest's ${e.sha256.slice(0, 16)}…` };
    return undefined;
  } catch (err) {
    return { problem: 'unreadable', detail: (err as Error).message };
  } finally {
    await h.close();
  }
}

/**
 * A version-2 database log: every frame of its committed prefix checked against the chain (the
 * problem names the frame, its offset and checkpoint); bytes beyond the committed end (a copy cut
 * off before its manifest) are not part of the copy and not a problem.
 */
async function checkLog(file: string, e: LogEntry): Promise<Pick<DrProblem, 'problem' | 'detail'> | undefined> {
  const size = await fsp.stat(file).then((s) => s.size, (err: NodeJS.ErrnoException) => err);
  if (typeof size !== 'number') return size.code === 'ENOENT' ? { problem: 'missing', detail: 'the file is missing' } : { problem: 'unreadable', detail: `cannot open it (${size.code ?? size.message})` };
  if (size < e.size) return { problem: 'size', detail: `${size} bytes, the manifest's checkpoint ends at ${e.size}` };
  try {
    for await (const _ of scanLog(file, e));
    return undefined;
  } catch (err) {
    if (!isVmvaultError(err, 'CORRUPT_COPY')) return { problem: 'unreadable', detail: (err as Error).message };
    return { problem: 'checksum', detail: (err as Error).message.replace(`${file} is damaged: `, '') };
  }
}

/** One line per problem, for messages and the CLI. */
export function describeProblems(r: DrVerifyReport): string[] {
  return r.problems.map((p) => `${p.path} (${p.what}): ${p.detail}`);
}
