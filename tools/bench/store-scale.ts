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
import { nativeCodec } from '../../src/store/native.js';
import { SegmentStore } from '../../src/store/store.js';
import { binariesFile, readHead, stamp } from './store-data.js';
import { type Figure, fullGc, ingestBuffer, MiB, mbps, note, now } from './store-io.js';

const CHUNKER = { minSize: 1024, avgSize: 4096, maxSize: 16384 };
/** Throughput probes at each point (the best counts). */
const PROBES = 5;
/** A stamp every 512 bytes: every segment (>= 1 KiB) holds one, so every pass is new data. */
const STAMP_EVERY = 512;

interface Mem {
  rss: number;
  /** Anonymous resident memory: what the process allocated (heap, malloc, buffers). */
  anon: number;
  /** File pages mapped into the process (LevelDB maps its table files): page cache. */
  file: number;
  heap: number;
  external: number;
  /** Native memory malloc holds (glibc), and LevelDB's own estimate of its memtables and cache. */
  malloc: number;
  leveldb: number;
}

function statusKb(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

function memory(store: SegmentStore): Mem {
  fullGc();
  const m = process.memoryUsage();
  const db = store.db as unknown as { getProperty(p: string): string };
  return {
    rss: m.rss,
    anon: statusKb('RssAnon') + statusKb('RssShmem'),
    file: statusKb('RssFile'),
    heap: m.heapUsed,
    external: m.external,
    malloc: nativeCodec?.mallocStats().inUse ?? NaN,
    leveldb: Number(db.getProperty('leveldb.approximate-memory-usage')),
  };
}

const mib = (n: number): string => (n / MiB).toFixed(1);

export async function benchScale(opts: { quick: boolean; emit: (f: Figure) => void }): Promise<void> {
  const target = opts.quick ? 100_000 : 1_000_000;
  const srcBytes = opts.quick ? 64 * MiB : 256 * MiB;
  const probeBytes = 32 * MiB;
  const src = readHead(binariesFile(opts.quick ? 256 * MiB : 1024 * MiB), srcBytes);
  const buf = Buffer.allocUnsafe(srcBytes);
  let pass = 1;
  const next = (bytes: number): Buffer => {
    stamp(src.subarray(0, bytes), buf, pass++, STAMP_EVERY);
    return buf.subarray(0, bytes);
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-bench-scale-'));
  try {
    const storeDir = path.join(dir, 'store');
    let store = await SegmentStore.open(storeDir, { chunker: CHUNKER });
    const segments = async (): Promise<number> => (await store.stats()).segments;
    // The same at both points: the store reopened (its caches cold, as after a restart), one
    // ingest to warm it, then the best of 3 (the machine is shared), each of new data.
    // Beside wall-clock MB/s, MB per CPU second of the whole process (all threads): on a
    // shared machine the wall clock measures the neighbours too, CPU time much less so.
    const probe = async (): Promise<{ mbps: number; cpuMbps: number; at: number }> => {
      await store.close();
      store = await SegmentStore.open(storeDir);
      const at = await segments();
      await ingestBuffer(store, next(probeBytes));
      let top = 0;
      let cpuTop = 0;
      for (let k = 0; k < PROBES; k++) {
        const data = next(probeBytes);
        const c0 = process.cpuUsage();
        const t0 = now();
        await ingestBuffer(store, data);
        const c = process.cpuUsage(c0);
        top = Math.max(top, mbps(data.length, now() - t0));
        cpuTop = Math.max(cpuTop, mbps(data.length, (c.user + c.system) / 1e6));
      }
      return { mbps: top, cpuMbps: cpuTop, at };
    };

    // Warm up (JIT, buffer pools) in a store of its own, then ~10 k segments in the measured one.
    const warm = await SegmentStore.open(path.join(dir, 'warm'), { chunker: CHUNKER });
    for (let k = 0; k < 3; k++) await ingestBuffer(warm, next(probeBytes));
    await warm.close();
    await ingestBuffer(store, next(40 * MiB));
    const m0 = memory(store);
    if (process.env.VMVAULT_BENCH_SMAPS) fs.writeFileSync(`${process.env.VMVAULT_BENCH_SMAPS}.0`, fs.readFileSync('/proc/self/smaps', 'utf8'));
    const s0 = await segments();
    const small = await probe();
    note(`scale: at ${small.at} segments ingest ${small.mbps} MB/s (${small.cpuMbps} MB per CPU s); rss ${(m0.rss / MiB).toFixed(1)} MiB (anon ${(m0.anon / MiB).toFixed(1)}, file ${(m0.file / MiB).toFixed(1)}) at ${s0}`);
    const t0 = now();
    let filled = 0;
    while ((await segments()) < target) {
      const need = (target - (await segments())) * CHUNKER.avgSize * 1.1;
      const data = next(Math.min(srcBytes, Math.max(16 * MiB, Math.ceil(need / MiB) * MiB)));
      await ingestBuffer(store, data);
      filled += data.length;
    }
    note(`scale: filled ${(filled / MiB).toFixed(0)} MiB at ${mbps(filled, now() - t0)} MB/s`);
    const m1 = memory(store);
    if (process.env.VMVAULT_BENCH_SMAPS) fs.writeFileSync(`${process.env.VMVAULT_BENCH_SMAPS}.1`, fs.readFileSync('/proc/self/smaps', 'utf8'));
    const s1 = await segments();
    const large = await probe();
    const st = await store.stats();
    note(
      `scale: at ${large.at} segments ingest ${large.mbps} MB/s (${large.cpuMbps} MB per CPU s); rss ${(m1.rss / MiB).toFixed(1)} MiB (anon ${(m1.anon / MiB).toFixed(1)}, file ${(m1.file / MiB).toFixed(1)}) at ${s1}; ` +
        `growth: heap +${mib(m1.heap - m0.heap)} MiB, external +${mib(m1.external - m0.external)}, malloc in use +${mib(m1.malloc - m0.malloc)}, ` +
        `leveldb estimate ${mib(m0.leveldb)} -> ${mib(m1.leveldb)}; ` +
        `bloom ${st.index.bloomBytes} B, locality cache ${st.index.cachedContainers} containers / ${st.index.cachedEntries} entries`,
    );
    await store.close();
    // Anonymous memory: LevelDB's mapped table files (file pages) are page cache, not the
    // process's; they are reported beside it.
    const perSeg = (m1.anon - m0.anon) / (s1 - s0);
    opts.emit({ figure: 'index.bytes_per_segment', value: Math.round(perSeg * 10) / 10, unit: 'B' });
    opts.emit({ figure: 'index.bytes_per_segment.rss', value: Math.round(((m1.rss - m0.rss) / (s1 - s0)) * 10) / 10, unit: 'B' });
    opts.emit({ figure: 'store.ingest.scaling', value: Math.round((large.mbps / small.mbps) * 1000) / 1000, unit: 'ratio' });
    opts.emit({ figure: 'store.ingest.scaling.cpu', value: Math.round((large.cpuMbps / small.cpuMbps) * 1000) / 1000, unit: 'ratio' });
    opts.emit({ figure: 'store.ingest.scaling.small', value: small.mbps, unit: 'MB/s' });
    opts.emit({ figure: 'store.ingest.scaling.large', value: large.mbps, unit: 'MB/s' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
