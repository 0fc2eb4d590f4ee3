// The policy layer's small state files (policies.json, policy-runs.json, policy-clock.json):
// JSON with a format version, written to a temporary file, fsynced, renamed over, the directory
// fsynced, so a crash leaves the old or the new file, never half of one. A version above the
// reader's is UNSUPPORTED_FORMAT; a file that does not parse is CORRUPT_RECORD naming it.

import fs from 'node:fs/promises';
import { fromSystemError, vmError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic-file.js';

export async function readVersioned(file: string, version: number, what: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(err, `reading ${file}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw vmError('CORRUPT_RECORD', `${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v) || typeof (v as { version?: unknown }).version !== 'number') {
    throw vmError('CORRUPT_RECORD', `${file} is not a ${what} file (no version)`);
  }
  const got = (v as { version: number }).version;
  if (got > version) throw vmError('UNSUPPORTED_FORMAT', `${file} has format version ${got}; this appliance reads up to ${version}`);
  return v as Record<string, unknown>;
}

export async function writeAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value, null, 1) + '\n', `writing ${file}`, { mkdir: true });
}

/** Runs writes of one file one after another (the last one wins, none is torn). */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => {});
    return next;
  }
}
