// Identity of a byte range of a stored file, without exposing the store: a digest of the data
// entries of its segment tree that cover the range (fingerprints and where they start relative
// to the range). Equal identities mean equal bytes in the range, because each entry's bytes
// are named by its fingerprint. Unequal identities may still hold equal bytes (segment
// boundaries moved); a caller only loses a shortcut then. The catalog uses it to skip walking a
// partition whose bytes did not change since the previous restore point.

import { createHash } from 'node:crypto';
import type { Namespace } from './namespace.js';

/**
 * The identity of [from, to) of the file open as `fh`, or undefined when the file has
 * changes not yet committed (its bytes are not one stored version).
 */
export async function rangeIdentity(ns: Namespace, fh: number, from: number, to: number): Promise<string | undefined> {
  const file = ns.fs.handle(fh).file;
  if (file.hasChanges || file.size !== file.base.size) return undefined;
  const h = createHash('sha256');
  const pos = Buffer.alloc(16);
  pos.writeDoubleLE(from, 0);
  pos.writeDoubleLE(to, 8);
  h.update(pos);
  for await (const p of ns.store.view(file.base).leaves(from, to)) {
    pos.writeDoubleLE(p.start - from, 0);
    pos.writeDoubleLE(p.entry.len, 8);
    h.update(pos);
    h.update(p.entry.zero ? Buffer.from([0]) : p.entry.fp);
  }
  return h.digest('hex');
}
