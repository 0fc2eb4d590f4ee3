// The VM image set copied through the namespace the way `cp --sparse=always` copies it
// through the mount: 128 KiB writes (FUSE's largest), all-zero blocks skipped as holes, the size
// set at the end, an existing target truncated first. Used by the vmset bench to tell the
// namespace's own cost from the mount's.

import fs from 'node:fs';
import type { Namespace } from '../../src/namespace/namespace.js';

const WRITE = 128 * 1024;

/** Copies a local file to `dest` (a namespace path) as cp --sparse=always does. */
export async function copySparse(ns: Namespace, file: string, dest: string): Promise<void> {
  const exists = await ns.fs.getattr(dest).then(
    () => true,
    () => false,
  );
  if (exists) await ns.fs.truncate(dest, 0);
  const fh = exists ? await ns.fs.open(dest, 1) : await ns.fs.create(dest, 0o644);
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.allocUnsafe(WRITE);
    const zero = Buffer.alloc(WRITE);
    for (let at = 0; at < size; at += WRITE) {
      const n = fs.readSync(fd, buf, 0, Math.min(WRITE, size - at), at);
      const b = buf.subarray(0, n);
      if (b.compare(zero, 0, n) === 0) continue;
      await ns.write(fh, at, b);
    }
    await ns.fs.ftruncate(fh, size);
    await ns.fs.flush(fh);
  } finally {
    fs.closeSync(fd);
    await ns.fs.release(fh);
  }
}
