// The page-cache state a timed step starts from, made the same for every contender
// (bench:backup, bench:agent): its source read once into the page cache, and no dirty pages of
// earlier steps (a qcow2 just written, an earlier store) left to write back while it runs.

import fs from 'node:fs';
import { run } from './fuse-appliance.js';

const MiB = 1024 * 1024;

/** Reads the first `limit` bytes of a file (all of it by default) once, into the page cache. */
export function preRead(file: string, limit = fs.statSync(file).size): void {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(8 * MiB);
  try {
    for (let at = 0; at < limit; at += buf.length) fs.readSync(fd, buf, 0, Math.min(buf.length, limit - at), at);
  } finally {
    fs.closeSync(fd);
  }
}

/** preRead, then `sync`: the source cached and nothing of earlier steps left to write back. */
export async function settle(file: string): Promise<void> {
  preRead(file);
  await run('sync', []);
}
