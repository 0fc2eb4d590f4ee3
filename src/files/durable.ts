// Directories that survive a power cut. A new directory, like a new file, is only an entry in
// its parent, durable once the parent is fsynced (fsync(2)); `mkdir -p` then fsync of the deepest
// directory alone leaves every directory it made volatile: a power cut takes them with all they
// hold. (The store makes its own directories the same way in store/store-config.ts; the store
// layer does not import this one.)

import fs from 'node:fs/promises';
import path from 'node:path';

/** fsync of a directory (the entries made, renamed or removed in it become durable) or a file. */
export async function fsyncPath(p: string): Promise<void> {
  const h = await fs.open(p, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/** `mkdir -p dir`, then every directory it made is made durable in its parent, deepest first. */
export async function mkdirDurable(dir: string): Promise<void> {
  const first = await fs.mkdir(dir, { recursive: true });
  if (first === undefined) return;
  const top = path.resolve(first);
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    await fsyncPath(path.dirname(d));
    if (d === top || d === path.dirname(d)) break;
  }
}
