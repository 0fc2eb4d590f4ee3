// The index at scale, in a process of its own: a store with 4 KiB average segments (so a
// million fits this disk) is filled with unique real-binary data; ingest throughput and
// resident memory are measured near 10 k segments and again at 1 M (100 k with --quick).
//
//   index.bytes_per_segment  (RSS at 1 M - RSS at 10 k) / segments added, after a full GC:
//                            summary filter, locality cache, pending maps, LevelDB caches
//                            and everything else that grows with the store.
//   store.ingest.scaling     ingest MB/s of the same amount of new unique data at 1 M
//                            segments divided by that at 10 k.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SegmentStore } from '../../src/store/store.js';
import { binariesFile, stamp } from './store-data.js';
import { type Figure, fullGc, ingestBuffer, MiB, mbps, note, now } from './store-io.js';

const CHUNKER = { minSize: 1024, avgSize: 4096, maxSize: 16384 };
/** A stamp every 512 bytes: every segment (>= 1 KiB) holds one, so every pass is new data. */
const STAMP_EVERY = 512;

interface Mem {
  rss: number;
  heap: number;
  external: number;
}

function memory(): Mem {
  fullGc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, external: m.external };
}

export async function benchScale(opts: { quick: boolean; emit: (f: Figure) => void }): Promise<void> {
  const target = opts.quick ? 100_000 : 1_000_000;
  const srcBytes = opts.quick ? 64 * MiB : 256 * MiB;
  const probeBytes = opts.quick ? 32 * MiB : 64 * MiB;
  const src = fs.readFileSync(binariesFile(opts.quick ? 256 * MiB : 1024 * MiB)).subarray(0, srcBytes);
  const buf = Buffer.allocUnsafe(srcBytes);
  let pass = 1;
  const next = (bytes: number): Buffer => {
    stamp(src.subarray(0, bytes), buf, pass++, STAMP_EVERY);
    return buf.subarray(0, bytes);
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-bench-scale-'));
  try {
    const store = await SegmentStore.open(dir, { chunker: CHUNKER });
    const segments = async (): Promise<number> => (await store.stats()).segments;
    const probe = async (): Promise<{ mbps: number; at: number }> => {
      const at = await segments();
      const rates: number[] = [];
      for (let k = 0; k < 3; k++) {
        const data = next(probeBytes);
        const t0 = now();
        await ingestBuffer(store, data);
        rates.push(mbps(data.length, now() - t0));
      }
      rates.sort((a, b) => a - b);
      return { mbps: rates[1], at };
    };

    await ingestBuffer(store, next(40 * MiB)); // ~10 k segments
    const small = await probe();
    const m0 = memory();
    const s0 = await segments();
    note(`scale: at ${small.at} segments ingest ${small.mbps} MB/s; rss ${(m0.rss / MiB).toFixed(1)} MiB at ${s0}`);
    const t0 = now();
    let filled = 0;
    while ((await segments()) < target) {
      const need = (target - (await segments())) * CHUNKER.avgSize * 1.1;
      const data = next(Math.min(srcBytes, Math.max(16 * MiB, Math.ceil(need / MiB) * MiB)));
      await ingestBuffer(store, data);
      filled += data.length;
    }
    note(`scale: filled ${(filled / MiB).toFixed(0)} MiB at ${mbps(filled, now() - t0)} MB/s`);
    const m1 = memory();
    const s1 = await segments();
    const large = await probe();
    const st = await store.stats();
    note(
      `scale: at ${large.at} segments ingest ${large.mbps} MB/s; rss ${(m1.rss / MiB).toFixed(1)} MiB at ${s1}; ` +
        `heap +${((m1.heap - m0.heap) / MiB).toFixed(1)} MiB, external +${((m1.external - m0.external) / MiB).toFixed(1)} MiB; ` +
        `bloom ${st.index.bloomBytes} B, locality cache ${st.index.cachedContainers} containers / ${st.index.cachedEntries} entries`,
    );
    await store.close();
    const perSeg = (m1.rss - m0.rss) / (s1 - s0);
    opts.emit({ figure: 'index.bytes_per_segment', value: Math.round(perSeg * 10) / 10, unit: 'B' });
    opts.emit({ figure: 'store.ingest.scaling', value: Math.round((large.mbps / small.mbps) * 1000) / 1000, unit: 'ratio' });
    opts.emit({ figure: 'store.ingest.scaling.small', value: small.mbps, unit: 'MB/s' });
    opts.emit({ figure: 'store.ingest.scaling.large', value: large.mbps, unit: 'MB/s' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
