// The API token: 32 random bytes as hex in `<data>/api-token`, readable by its owner only. Made
// at first start; a person may also write their own there (any printable ASCII, 16..256 chars).

import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, vmError } from '../errors.js';

export const TOKEN_FILE = 'api-token';

const TOKEN_SHAPE = /^[\x21-\x7e]{16,256}$/;

export interface EnsuredToken {
  token: string;
  file: string;
  created: boolean;
}

/** Reads `<dataDir>/api-token`, creating it first if absent. Safe against a concurrent first start. */
export async function ensureToken(dataDir: string): Promise<EnsuredToken> {
  const file = path.join(dataDir, TOKEN_FILE);
  const existing = await readToken(dataDir);
  if (existing !== undefined) {
    await keepPrivate(file);
    return { token: existing, file, created: false };
  }

  const token = randomBytes(32).toString('hex');
  // Written under a private name, then linked into place: a reader never sees a half-written
  // token, and link() fails if another process won the race, whose token we then use.
  const tmp = path.join(dataDir, `.${TOKEN_FILE}.${process.pid}.${randomBytes(4).toString('hex')}`);
  try {
    const fh = await fs.open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(`${token}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await fs.link(tmp, file);
      // The token's name is durable only once its directory is: without this a power cut
      // after the first start can lose it, and the next start makes another one.
      const dir = await fs.open(dataDir, 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const theirs = await readToken(dataDir);
      if (theirs === undefined) throw err;
      return { token: theirs, file, created: false };
    }
  } catch (err) {
    throw fromSystemError(err, `creating the API token ${file}`);
  } finally {
    await fs.rm(tmp, { force: true });
  }
  return { token, file, created: true };
}

// A token file someone copied in with a loose umask would let every local user drive the API.
async function keepPrivate(file: string): Promise<void> {
  try {
    const st = await fs.stat(file);
    if ((st.mode & 0o077) !== 0) await fs.chmod(file, 0o600);
  } catch (err) {
    throw fromSystemError(err, `restricting the API token ${file} to its owner`);
  }
}

/** The token in `<dataDir>/api-token`, or undefined if there is no such file. */
export async function readToken(dataDir: string): Promise<string | undefined> {
  const file = path.join(dataDir, TOKEN_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(err, `reading the API token ${file}`);
  }
  const token = text.trim();
  if (!TOKEN_SHAPE.test(token)) {
    throw vmError('INVALID_ARGUMENT', `${file} does not hold a token (16 to 256 printable ASCII characters, no spaces)`);
  }
  return token;
}
