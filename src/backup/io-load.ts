// A VM's write load from QEMU's own counters: `query-blockstats` gives, per block backend, the
// bytes the guest has written since QEMU started (stats.wr_bytes). Two samples some time apart
// give the write rate, which is how fast a fleecing scratch image grows while the VM's point is
// held (every first write to a block after the point copies the old block into it).

import type { QmpChannel } from '../plugins/qemu/qmp-channel.js';

export interface WriteSample {
  /** performance.now() when the answer came. */
  at: number;
  /** Bytes written by the guest to all its disks since QEMU started. */
  writeBytes: number;
}

interface BlockStats {
  device?: string;
  qdev?: string;
  stats?: { wr_bytes?: number };
}

export async function sampleWrites(qmp: QmpChannel, timeoutMs?: number): Promise<WriteSample> {
  const list = await qmp.execute<BlockStats[]>('query-blockstats', {}, timeoutMs === undefined ? undefined : { timeoutMs });
  const writeBytes = (list ?? []).reduce((n, b) => n + (typeof b.stats?.wr_bytes === 'number' ? b.stats.wr_bytes : 0), 0);
  return { at: performance.now(), writeBytes };
}

/** Bytes per second between two samples (0 when no time passed or the counter went back: QEMU restarted). */
export function writeRate(a: WriteSample, b: WriteSample): number {
  const dt = (b.at - a.at) / 1000;
  if (dt <= 0 || b.writeBytes < a.writeBytes) return 0;
  return (b.writeBytes - a.writeBytes) / dt;
}

/** The temporary bitmap a load probe adds on each disk (not persistent: gone if QEMU stops). */
export const LOAD_BITMAP = 'vmvault-load-probe';

/**
 * The bytes a VM dirties over a window: a temporary dirty bitmap on each disk's node, added now
 * and read (then removed) by the returned function. Unlike query-blockstats, which counts what
 * the guest's devices wrote, it sees every write through the block layer and counts each block
 * once: exactly what a held point's scratch image would have to take in.
 */
export async function startDirtyProbe(qmp: QmpChannel, nodes: string[]): Promise<() => Promise<{ at: number; dirtyBytes: number; startedAt: number }>> {
  for (const node of nodes) {
    await qmp.execute('block-dirty-bitmap-remove', { node, name: LOAD_BITMAP }).catch(() => {});
    await qmp.execute('block-dirty-bitmap-add', { node, name: LOAD_BITMAP, persistent: false });
  }
  const startedAt = performance.now();
  return async () => {
    const all = await qmp.execute<Array<{ 'node-name': string; 'dirty-bitmaps'?: Array<{ name?: string; count: number }> | null }>>('query-named-block-nodes', { flat: true });
    let dirtyBytes = 0;
    for (const n of all) {
      if (!nodes.includes(n['node-name'])) continue;
      dirtyBytes += (n['dirty-bitmaps'] ?? []).find((b) => b.name === LOAD_BITMAP)?.count ?? 0;
    }
    const at = performance.now();
    for (const node of nodes) await qmp.execute('block-dirty-bitmap-remove', { node, name: LOAD_BITMAP }).catch(() => {});
    return { at, dirtyBytes, startedAt };
  };
}
