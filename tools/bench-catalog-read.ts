// node dist/tools/bench-catalog-read.js [IMAGE...] [--runs=N] [--baseline=RAW]   (npm run bench:catalog-read)
// The catalog's reading half on a disk image (default: the sample Debian VM image
// /work/vmimages/vm1-day1.raw, ~15k entries): openDisk + findVolumes + walkFilesystem of every
// volume, with extents, against `fls -r -m /` of the same volumes from the same plain file: the
// baseline is measured in the same run, alternating with the walk, median of N runs each
// (the page cache is warm for both after the first). Goal: walk <= 1.5x fls.
// catalog-db's bench:catalog can call measureCatalogRead() for its catalog.vs_fls figure.
// A qcow2/VMDK image has no plain path for fls: --baseline=RAW names the raw image with the same
// content, whose fls time is the baseline (e.g. vm1-day1.vmdk against vm1-day1.raw).
// --xfs-tree=DIR: our XFS reader has no Sleuth Kit baseline, so the same tree (DIR copied with
// attributes only: names, modes, times, empty files) goes into an XFS image (root loop mount)
// and an ext4 image (mkfs.ext4 -d); the figures are XFS walk / fls on the ext4 image, and ext4
// walk / fls on the ext4 image, in the same run.
// Prints one JSON line per figure.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openFileSource } from '../src/catalog/file-source.js';
import { findVolumes, openDisk, walkFilesystem } from '../src/catalog/source.js';

export interface CatalogReadFigures {
  image: string;
  entries: number;
  extents: number;
  walkMs: number;
  flsMs: number;
  /** walk time / fls time on the same volumes (only volumes fls can read: ext/NTFS/FAT/exFAT). */
  ratio: number;
}

async function walkImage(image: string): Promise<{ ms: number; entries: number; extents: number; volumes: Array<{ fs: string; offset?: number }> }> {
  const t0 = performance.now();
  const src = await openFileSource(image);
  let entries = 0;
  let extents = 0;
  try {
    const disk = await openDisk(src);
    const vols = await findVolumes(disk);
    for (const v of vols) {
      for await (const e of walkFilesystem(v)) {
        entries++;
        extents += e.extents?.length ?? 0;
      }
    }
    return { ms: performance.now() - t0, entries, extents, volumes: vols.map((v) => ({ fs: v.fs, ...(v.pathOffset !== undefined ? { offset: v.pathOffset } : {}) })) };
  } finally {
    await src.close();
  }
}

function flsOnce(image: string, sectorOffset: number): Promise<{ ms: number; lines: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('fls', ['-r', '-m', '/', '-o', String(sectorOffset), image], { stdio: ['ignore', 'pipe', 'inherit'] });
    let lines = 0;
    child.stdout.on('data', (d: Buffer) => { for (const b of d) if (b === 10) lines++; });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve({ ms: performance.now() - t0, lines }) : reject(new Error(`fls exited ${code}`))));
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

export async function measureCatalogRead(image: string, runs = 5, baselineRaw = image): Promise<CatalogReadFigures> {
  const first = await walkImage(image); // also warms the page cache for both
  const base = baselineRaw === image ? first : await walkImage(baselineRaw);
  const tskVols = base.volumes.filter((v) => ['ext', 'ntfs', 'fat', 'exfat'].includes(v.fs) && v.offset !== undefined);
  if (tskVols.length === 0) throw new Error(`${baselineRaw}: no volume fls can read at a plain offset (give --baseline=RAW for a qcow2/VMDK image)`);
  const walkMs: number[] = [];
  const flsMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    let f = 0;
    for (const v of tskVols) f += (await flsOnce(baselineRaw, v.offset! / 512)).ms;
    flsMs.push(f);
    walkMs.push((await walkImage(image)).ms);
  }
  const w = median(walkMs);
  const f = median(flsMs);
  return { image, entries: first.entries, extents: first.extents, walkMs: w, flsMs: f, ratio: w / f };
}

function emit(figure: string, value: number, unit: string, extra: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ figure, value: Math.round(value * 1000) / 1000, unit, ...extra }) + '\n');
}

/** XFS and ext4 images of the same tree (attributes only), in a temp dir the caller removes. */
function buildTreeImages(tree: string, dir: string): { xfs: string; ext4: string; entries: number } {
  const copy = path.join(dir, 'tree');
  const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  fs.mkdirSync(copy);
  run('cp', ['-a', '--attributes-only', `${tree}/.`, copy]);
  const entries = Number(execFileSync('sh', ['-c', `find "${copy}" -mindepth 1 | wc -l`]).toString().trim());
  const xfs = path.join(dir, 'xfs.img');
  const ext4 = path.join(dir, 'ext4.img');
  fs.writeFileSync(xfs, '');
  fs.truncateSync(xfs, 1024 ** 3);
  run('mkfs.xfs', ['-q', '-f', xfs]);
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  run('mount', ['-o', 'loop', xfs, mnt]);
  try {
    run('cp', ['-a', `${copy}/.`, mnt]);
  } finally {
    run('umount', [mnt]);
  }
  run('mkfs.ext4', ['-q', '-F', '-d', copy, ext4, '1G']);
  return { xfs, ext4, entries };
}

const isMain = process.argv[1]?.endsWith('bench-catalog-read.js');
const xfsTree = process.argv.find((a) => a.startsWith('--xfs-tree='))?.slice(11);
if (isMain && xfsTree) {
  const runs = Number(process.argv.find((a) => a.startsWith('--runs='))?.slice(7) ?? 5);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-bench-catalog-'));
  try {
    const imgs = buildTreeImages(xfsTree, dir);
    await walkImage(imgs.xfs);
    await walkImage(imgs.ext4);
    const xw: number[] = [], ew: number[] = [], fl: number[] = [];
    for (let i = 0; i < runs; i++) {
      fl.push((await flsOnce(imgs.ext4, 0)).ms);
      xw.push((await walkImage(imgs.xfs)).ms);
      ew.push((await walkImage(imgs.ext4)).ms);
    }
    const f = median(fl);
    emit('catalog_read.xfs_walk_vs_ext4_fls', median(xw) / f, 'ratio', { tree: xfsTree, entries: imgs.entries });
    emit('catalog_read.ext4_walk_vs_ext4_fls', median(ew) / f, 'ratio', { tree: xfsTree });
    emit('catalog_read.xfs_walk_ms', median(xw), 'ms');
    emit('catalog_read.ext4_walk_ms', median(ew), 'ms');
    emit('catalog_read.ext4_fls_ms', f, 'ms');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
} else if (isMain) {
  const runs = Number(process.argv.find((a) => a.startsWith('--runs='))?.slice(7) ?? 5);
  const baseline = process.argv.find((a) => a.startsWith('--baseline='))?.slice(11);
  const images = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  for (const image of images.length ? images : ['/work/vmimages/vm1-day1.raw']) {
    const r = await measureCatalogRead(image, runs, baseline ?? image);
    emit('catalog_read.walk_vs_fls', r.ratio, 'ratio', { image, entries: r.entries });
    emit('catalog_read.walk_ms', r.walkMs, 'ms', { image, extents: r.extents });
    emit('catalog_read.fls_ms', r.flsMs, 'ms', { image });
  }
}
