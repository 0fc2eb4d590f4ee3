// npm run bench:snapshots [-- --quick]
// Snapshot, clone and fastcopy creation time against share size (1, 10, 100 GiB logical, as
// three sparse images with real data islands) and against file count (10, 1000, 10000
// files). The goal: flat in size, linear with a small constant in files.
// Prints one JSON line per figure, then a table on stderr.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';

const GiB = 1024 ** 3;
const quick = process.argv.includes('--quick');

interface Row {
  series: string;
  point: string;
  files: number;
  logicalBytes: number;
  snapshotMs: number;
  cloneMs: number;
  fastcopyMs: number | null;
}

function emit(figure: string, value: number, unit: string): void {
  process.stdout.write(JSON.stringify({ figure, value: Math.round(value * 100) / 100, unit }) + '\n');
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** Median of a few runs: the machine is shared and noisy. */
async function median(runs: number, fn: (i: number) => Promise<number>): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) xs.push(await fn(i));
  xs.sort((a, b) => a - b);
  return xs[xs.length >> 1];
}

async function writeAt(ns: Namespace, p: string, off: number, data: Buffer): Promise<void> {
  const fh = await ns.fs.open(p, 2);
  await ns.write(fh, off, data);
  await ns.fs.release(fh);
}

async function sizeSeries(ns: Namespace, sizeGiB: number, runs: number): Promise<Row> {
  const share = `size-${sizeGiB}g`;
  await ns.shares.create(share);
  const each = Math.floor((sizeGiB * GiB) / 3);
  const island = fs.readFileSync(process.execPath).subarray(0, 4 * 1024 * 1024);
  for (let i = 0; i < 3; i++) {
    const p = `/${share}/disk${i}.vmdk`;
    await ns.fs.release(await ns.fs.create(p, 0o644));
    await ns.fs.truncate(p, each);
    for (let k = 0; k < 4; k++) await writeAt(ns, p, Math.floor((each / 5) * (k + 1)), island);
  }
  await ns.flushAll();
  const snapshotMs = await median(runs, (i) => timed(() => ns.snapshots.create(share, `s${i}`)));
  const cloneMs = await median(runs, (i) => timed(() => ns.snapshots.clone(share, 's0', `${share}-c${i}`)));
  const fastcopyMs = await median(runs, (i) => timed(() => ns.snapshots.fastcopy(share, 'disk0.vmdk', `copy${i}.vmdk`)));
  return { series: 'size', point: `${sizeGiB} GiB`, files: 3, logicalBytes: 3 * each, snapshotMs, cloneMs, fastcopyMs };
}

async function filesSeries(ns: Namespace, files: number, runs: number): Promise<Row> {
  const share = `files-${files}`;
  await ns.shares.create(share);
  for (let d = 0; d * 100 < files; d++) {
    await ns.fs.mkdir(`/${share}/d${d}`, 0o755);
    for (let i = d * 100; i < Math.min(files, (d + 1) * 100); i++) {
      const fh = await ns.fs.create(`/${share}/d${d}/f${i}`, 0o644);
      await ns.write(fh, 0, Buffer.from(`file ${i}\n`));
      await ns.fs.release(fh);
    }
  }
  await ns.flushAll();
  const snapshotMs = await median(runs, (i) => timed(() => ns.snapshots.create(share, `s${i}`)));
  const cloneMs = await median(runs, (i) => timed(() => ns.snapshots.clone(share, 's0', `${share}-c${i}`)));
  return { series: 'files', point: `${files} files`, files, logicalBytes: 0, snapshotMs, cloneMs, fastcopyMs: null };
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-bench-snap-'));
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {} });
  const runs = quick ? 3 : 5;
  const rows: Row[] = [];
  try {
    for (const g of quick ? [1, 10] : [1, 10, 100]) {
      const r = await sizeSeries(ns, g, runs);
      rows.push(r);
      emit(`snapshots.create.size_${g}gib`, r.snapshotMs, 'ms');
      emit(`snapshots.clone.size_${g}gib`, r.cloneMs, 'ms');
      emit(`snapshots.fastcopy.size_${g}gib`, r.fastcopyMs ?? 0, 'ms');
    }
    for (const n of quick ? [10, 1000] : [10, 1000, 10000]) {
      const r = await filesSeries(ns, n, runs);
      rows.push(r);
      emit(`snapshots.create.files_${n}`, r.snapshotMs, 'ms');
      emit(`snapshots.clone.files_${n}`, r.cloneMs, 'ms');
    }
    const big = rows.filter((r) => r.series === 'files');
    if (big.length >= 2) {
      const a = big[0];
      const b = big[big.length - 1];
      emit('snapshots.create.per_file', (b.snapshotMs - a.snapshotMs) / (b.files - a.files), 'ms/file');
    }
    const sizes = rows.filter((r) => r.series === 'size');
    emit('snapshots.create.size_ratio', sizes[sizes.length - 1].snapshotMs / sizes[0].snapshotMs, 'ratio');
  } finally {
    await ns.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const lines = ['| series | point | files | logical | snapshot ms | clone ms | fastcopy ms |', '|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    lines.push(`| ${r.series} | ${r.point} | ${r.files} | ${(r.logicalBytes / GiB).toFixed(1)} GiB | ${r.snapshotMs.toFixed(1)} | ${r.cloneMs.toFixed(1)} | ${r.fastcopyMs === null ? '-' : r.fastcopyMs.toFixed(1)} |`);
  }
  process.stderr.write(lines.join('\n') + '\n');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
