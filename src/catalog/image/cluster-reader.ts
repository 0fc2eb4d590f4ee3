// Shared read loop for cluster/grain-mapped formats: a read is cut at cluster boundaries and each
// piece is served by the format's mapping (data at a host offset, compressed, or zeros).

import type { ByteSource } from '../source.js';
import { vmError } from '../../errors.js';

export type ClusterMap =
  | { kind: 'zero' }
  | { kind: 'data'; hostOffset: number }
  | { kind: 'compressed'; cluster: Buffer };

export function clusterRead(
  src: ByteSource,
  size: number,
  clusterSize: number,
  map: (cluster: number) => Promise<ClusterMap>,
): (offset: number, length: number) => Promise<Buffer> {
  return async (offset, length) => {
    const end = Math.min(size, offset + length);
    if (end <= offset) return Buffer.alloc(0);
    const out = Buffer.alloc(end - offset);
    let pos = offset;
    // Adjacent data clusters that are adjacent on the host too are read in one call.
    let runHost = -1, runOut = 0, runLen = 0;
    const flush = async () => {
      if (runLen > 0) {
        const b = await src.read(runHost, runLen);
        if (b.length < runLen) {
          throw vmError('CORRUPT_RECORD', `image data at byte ${runHost + b.length} lies past the end of the file (${src.size} bytes): truncated`);
        }
        b.copy(out, runOut);
      }
      runLen = 0;
    };
    while (pos < end) {
      const cluster = Math.floor(pos / clusterSize);
      const inCluster = pos - cluster * clusterSize;
      const n = Math.min(clusterSize - inCluster, end - pos);
      const m = await map(cluster);
      if (m.kind === 'data') {
        const host = m.hostOffset + inCluster;
        if (runLen > 0 && runHost + runLen === host) runLen += n;
        else {
          await flush();
          runHost = host; runOut = pos - offset; runLen = n;
        }
      } else {
        await flush();
        if (m.kind === 'compressed') m.cluster.copy(out, pos - offset, inCluster, inCluster + n);
      }
      pos += n;
    }
    await flush();
    return out;
  };
}
