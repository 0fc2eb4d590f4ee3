// The appliance's small state files (the VM registry, backup records, policies, exports, agent
// tokens, job history, the quiesce journal): each is rewritten whole, and a crash or power cut
// must leave the old file or the new one, never half of one and never none. So: the text goes to
// `<file>.tmp` beside it, fsynced; renamed over the file; the directory fsynced, because the
// rename is durable only once the directory is. Each caller serializes its own writes of one
// file (one writer per file), which is why one temporary name per file is enough.

import fs from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError } from '../errors.js';
import { fsyncPath, mkdirDurable } from './durable.js';

export interface AtomicWriteOptions {
  /** Mode of a new file (default 0o600: these files hold tokens and passwords' owners). */
  mode?: number;
  /** Make the directory first if it is missing. */
  mkdir?: boolean;
}

/**
 * Replaces `file` with `text` atomically and durably. A failure is a typed error (NO_SPACE, IO,
 * ...) whose message starts with `what` (default "writing FILE"); the temporary file is removed.
 */
export async function writeFileAtomic(file: string, text: string, what = `writing ${file}`, opts: AtomicWriteOptions = {}): Promise<void> {
  const dir = path.dirname(file);
  const tmp = `${file}.tmp`;
  try {
    if (opts.mkdir) await mkdirDurable(dir);
    const h = await fs.open(tmp, 'w', opts.mode ?? 0o600);
    try {
      await h.writeFile(text);
      await h.sync();
    } finally {
      await h.close();
    }
    await fs.rename(tmp, file);
    await fsyncPath(dir);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => {});
    throw fromSystemError(err, what);
  }
}
