// Every segment a file version names: its tree nodes and its data segments, found by walking
// the nodes (data segments are never read). What a replication token may fetch by fingerprint
// is scoped by it (control/replicas.ts): the segments of the points it was given.

import { isZeroFp } from '../codec/fingerprint.js';
import { childFp, type Node } from './node.js';
import type { FileVersion } from './version.js';

/**
 * Calls `visit` for the root and every node and non-zero data segment below it. A node shared
 * within the version is visited once per reference (trees of VM images share few). The Buffers
 * are views into decoded nodes: copy one to keep it. Reads nodes through `reader` (verified,
 * as every read); a damaged node throws its read error.
 */
export async function forEachSegment(reader: { node(fp: Buffer): Promise<Node> }, version: FileVersion, visit: (fp: Buffer, kind: 'node' | 'data') => void): Promise<void> {
  if (version.height === 0) {
    if (!isZeroFp(version.root)) visit(version.root, 'data');
    return;
  }
  const walk = async (fp: Buffer): Promise<void> => {
    visit(fp, 'node');
    const node = await reader.node(fp);
    for (let i = 0; i < node.count; i++) {
      const c = childFp(node, i);
      if (node.level > 1) await walk(c);
      else if (!isZeroFp(c)) visit(c, 'data');
    }
  };
  await walk(version.root);
}
