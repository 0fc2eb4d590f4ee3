// npm run bench:gc [-- --quick] [-- --dir DIR]
// Garbage collection of a store with 10 GiB logical, half of it dead (quick: 1 GiB): time, MB/s
// of containers processed, peak RSS, mark memory per segment; ingest throughput while GC runs
// against ingest alone (same run); full verify read rate against sequential read rate.
// One JSON line per figure on stdout, a summary on stderr.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runGc, runVerify } from '../src/namespace/maintenance.js';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { binariesFile } from './bench/store-data.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const dirArg = args.includes('--dir') ? args[args.indexOf('--dir') + 1] : undefined;

function emit(figure: string, value: number, unit: string): void {
  process.stdout.write(JSON.stringify({ figure, value: Math.round(value * 1000) / 1000, unit }) + '\n');
}

function log(s: string): void {
  process.stderr.write(s + '\n');
}

/**
 * Writes file `id` of `size` bytes, made a MiB at a time (the bench must not hold files in
 * memory, or its own buffers would swamp the RSS it measures): the base data with every
 * 4 KiB block stamped with file and block number, so no two files dedup.
 */
async function writeFile(ns: Namespace, p: string, base: Buffer, id: number, size: number): Promise<void> {
  const chunk = Buffer.alloc(MiB);
  const fh = await ns.fs.create(p, 0o644);
  for (let at = 0; at < size; at += MiB) {
    base.copy(chunk, 0, at % base.length, (at % base.length) + MiB);
    for (let b = 0; b < MiB / 4096; b++) {
      chunk.writeUInt32LE(id, b * 4096);
      chunk.writeUInt32LE(at / 4096 + b, b * 4096 + 4);
    }
    await ns.write(fh, at, chunk.subarray(0, Math.min(MiB, size - at)));
  }
  await ns.fs.fsync(fh);
  await ns.fs.release(fh);
}

async function main(): Promise<void> {
  const root = dirArg ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-bench-gc-'));
  const store = await SegmentStore.open(path.join(root, 'data'));
  const ns = await Namespace.open(store, { log: () => {} });
  const logical = quick ? 1 * GiB : 10 * GiB;
  const fileSize = quick ? 128 * MiB : 512 * MiB;
  const ingestProbe = quick ? 256 * MiB : 1 * GiB;
  // Real binaries as a base: compressible like VM contents, not like random bytes.
  const base = fs.readFileSync(binariesFile(64 * MiB));
  let id = 0;
  try {
    await ns.shares.create('vms');
    log(`filling ${logical / GiB} GiB in ${logical / fileSize} files of ${fileSize / MiB} MiB`);
    const names: string[] = [];
    for (let i = 0; i * fileSize < logical; i++) {
      const p = `/vms/f${i}`;
      await writeFile(ns, p, base, id++, fileSize);
      names.push(p);
    }
    for (let i = 0; i < names.length; i += 2) await ns.fs.unlink(names[i]);
    await ns.flushAll();
    const filled = await store.stats();
    log(`stored ${(filled.storedBytes / GiB).toFixed(2)} GiB in ${filled.containers} containers; half the files deleted`);

    // Ingest alone, then ingest while GC runs (same data shape, same run).
    const t0 = performance.now();
    await writeFile(ns, '/vms/probe-alone', base, id++, ingestProbe);
    const alone = ingestProbe / MiB / ((performance.now() - t0) / 1000);

    let peak = process.memoryUsage().rss;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
    const rssBefore = process.memoryUsage().rss;
    const containerBytes = (await store.stats()).storedBytes;
    const g0 = performance.now();
    const gc = runGc(ns, {});
    const i0 = performance.now();
    await writeFile(ns, '/vms/probe-during', base, id++, ingestProbe);
    const during = ingestProbe / MiB / ((performance.now() - i0) / 1000);
    const report = await gc;
    const gcSeconds = (performance.now() - g0) / 1000;
    clearInterval(sampler);

    // Sequential read of a stored file, then a full verify.
    const keep = names[1];
    const size = (await ns.fs.getattr(keep)).size;
    const fh = await ns.fs.open(keep, 0);
    const r0 = performance.now();
    for (let at = 0; at < size; at += 128 * 1024) await ns.fs.read(fh, at, 128 * 1024);
    const readRate = size / MiB / ((performance.now() - r0) / 1000);
    await ns.fs.release(fh);
    const v0 = performance.now();
    const v = await runVerify(ns, { full: true });
    const verifyRate = v.bytesRead / MiB / ((performance.now() - v0) / 1000);

    emit('gc.logical_bytes', logical, 'bytes');
    emit('gc.time', gcSeconds, 's');
    emit('gc.containers_processed', containerBytes / MiB / gcSeconds, 'MB/s');
    emit('gc.reclaimed', report.reclaimedBytes, 'bytes');
    emit('gc.peak_rss', peak / MiB, 'MiB');
    emit('gc.rss_growth', (peak - rssBefore) / MiB, 'MiB');
    emit('gc.mark_bytes_per_segment', report.markBytesPerSegment, 'bytes');
    emit('gc.ingest.alone', alone, 'MB/s');
    emit('gc.ingest.during', during, 'MB/s');
    emit('gc.ingest.ratio', during / alone, 'ratio');
    emit('store.read.sequential', readRate, 'MB/s');
    emit('verify.full', verifyRate, 'MB/s');
    emit('verify.read.ratio', verifyRate / readRate, 'ratio');
    log(
      `GC: ${gcSeconds.toFixed(1)} s, reclaimed ${(report.reclaimedBytes / GiB).toFixed(2)} GiB ` +
        `(${report.containersRemoved} containers removed, ${report.containersRewritten} rewritten), ` +
        `${report.liveSegments} live / ${report.deadSegments} dead segments, mark ${report.markBytesPerSegment.toFixed(2)} B/segment; ` +
        `verify problems: ${v.problems.length}`,
    );
  } finally {
    await ns.close();
    await store.close();
    if (!dirArg) fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
