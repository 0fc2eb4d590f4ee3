// Small files through the mount, against the ceiling of the FUSE binding in the same run:
// create + write 4 KiB + close, stat, readdir and unlink of many files (small-files-worker.ts,
// in a child process), and `rsync -a /usr/share/doc` into a share against the same rsync into
// a plain directory on the same disk.
//
// The ceiling here is the binding over handlers that keep only a table of names and sizes in
// memory: the least a file system can do and still answer create, stat, readdir and unlink.
// fuse.small.* are the appliance on its default binding (libfuse3) against that binding's
// ceiling (small-ceiling-ll.ts). (The fuse-native figures, fuse.small.*.fuse2 and
// *.ceiling_old, went with fuse-native in issue 16; tools/PERFORMANCE.md keeps the last ones.)
// With --before=REPO the same workload also runs against an appliance started from another
// checkout (built, with dist/), e.g. main's code before a change, in the same run. With
// --runs=N every party runs N times, alternating, and each figure is the best of its N.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Figure } from './fuse-ceiling-ll.js';
import { type BenchAppliance, run, startBenchAppliance } from './fuse-appliance.js';
import { withNamesOnlyLlMount } from './small-ceiling-ll.js';

export interface SmallFigure extends Figure {
  vs_ceiling?: number;
}

export interface SmallBenchOptions {
  quick: boolean;
  dir: string;
  /** Another checkout to measure too (its bin/vmvault.js), reported as *.before figures. */
  beforeRepo?: string;
  /** Where rsync copies from. Default /usr/share/doc. */
  rsyncSource?: string;
  /** Extra node flags for the appliance (e.g. --cpu-prof). */
  nodeFlags?: string[];
  /** Runs of everything, alternating; each figure is the best of them. Default 1. */
  runs?: number;
  note(line: string): void;
}

interface Phase {
  seconds: number;
  ops: number;
}
type WorkerResult = Record<'create' | 'stat' | 'readdir' | 'unlink', Phase>;
const PHASES = ['create', 'stat', 'readdir', 'unlink'] as const;

const workerJs = path.join(path.dirname(fileURLToPath(import.meta.url)), 'small-files-worker.js');

async function smallFiles(dir: string, count: number): Promise<WorkerResult> {
  const r = await run(process.execPath, [workerJs, dir, String(count)], 1_800_000);
  return JSON.parse(r.stdout) as WorkerResult;
}

const rate = (p: Phase) => p.ops / p.seconds;
const round1 = (v: number) => Math.round(v * 10) / 10;
const round3 = (v: number) => Math.round(v * 1000) / 1000;

async function rsyncInto(src: string, dest: string): Promise<number> {
  await run('sync', []);
  const r = await run('rsync', ['-a', src.replace(/\/*$/, '/'), dest.replace(/\/*$/, '/')]);
  return r.seconds;
}

/** One appliance: the small-file workload in a share, then rsync into another. */
async function applianceRun(
  store: string,
  count: number,
  src: string,
  opts: SmallBenchOptions,
  bin?: string,
): Promise<{ small: WorkerResult; rsync: number }> {
  let app: BenchAppliance | undefined;
  try {
    app = await startBenchAppliance(store, opts.nodeFlags ?? [], bin);
    for (const name of ['small', 'rsync']) {
      const r = await app.api('POST', '/shares', { name });
      if (r.status !== 201) throw new Error(`creating share ${name}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    const small = await smallFiles(path.join(app.mount, 'small'), count);
    const rsync = await rsyncInto(src, path.join(app.mount, 'rsync', 'doc'));
    return { small, rsync };
  } finally {
    await app?.stop();
  }
}

/** The best of several runs of the workload: each phase at its highest rate. */
function bestOf(runs: WorkerResult[]): WorkerResult {
  const best = { ...runs[0] };
  for (const r of runs.slice(1)) for (const ph of PHASES) if (rate(r[ph]) > rate(best[ph])) best[ph] = r[ph];
  return best;
}

export async function benchSmallFiles(opts: SmallBenchOptions, emit: (f: SmallFigure) => void): Promise<void> {
  const count = opts.quick ? 2000 : 10_000;
  const src = opts.rsyncSource ?? '/usr/share/doc';
  const runs = Math.max(1, opts.runs ?? 1);
  const work = await fs.mkdtemp(path.join(opts.dir, 'vmvault-bench-small-'));
  try {
    // Each run measures every party once, one after the other (ceiling, this checkout, the
    // other checkout, a plain directory), so that on a loaded machine each sees the
    // same minutes; each figure is then the best of the runs.
    const beforeBin = opts.beforeRepo ? path.join(opts.beforeRepo, 'bin', 'vmvault.js') : undefined;
    const ceilings: WorkerResult[] = [];
    const vms: Array<{ small: WorkerResult; rsync: number }> = [];
    const befores: Array<{ small: WorkerResult; rsync: number }> = [];
    const plains: number[] = [];
    // Each appliance's store is removed once it stopped (the disk holds one at a time).
    const once = async (name: string, bin: string | undefined) => {
      const dir = path.join(work, name);
      try {
        return await applianceRun(dir, count, src, opts, bin);
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
    };
    for (let i = 0; i < runs; i++) {
      ceilings.push(await withNamesOnlyLlMount(work, (mnt) => smallFiles(mnt, count)));
      vms.push(await once('store', undefined));
      if (beforeBin) befores.push(await once('store-before', beforeBin));
      const plain = path.join(work, `plain-doc-${i}`);
      plains.push(await rsyncInto(src, plain));
      await fs.rm(plain, { recursive: true, force: true });
      if (runs > 1) {
        const line = (r: { small: WorkerResult; rsync: number }) => `${PHASES.map((ph) => `${ph} ${Math.round(rate(r.small[ph]))}`).join(', ')}, rsync ${r.rsync.toFixed(1)} s`;
        opts.note(`run ${i + 1} of ${runs} (load ${os.loadavg()[0].toFixed(1)}): ceiling ${PHASES.map((ph) => `${ph} ${Math.round(rate(ceilings[i][ph]))}`).join(', ')}`);
        opts.note(`  mount: ${line(vms[i])}${befores[i] ? `; before: ${line(befores[i])}` : ''}; plain rsync ${plains[i].toFixed(1)} s`);
      }
    }
    const bestRun = (rs: Array<{ small: WorkerResult; rsync: number }>) => ({ small: bestOf(rs.map((r) => r.small)), rsync: Math.min(...rs.map((r) => r.rsync)) });
    const ceiling = bestOf(ceilings);
    const vm = bestRun(vms);
    const before = beforeBin ? bestRun(befores) : undefined;
    const plainS = Math.min(...plains);

    for (const ph of PHASES) {
      const c = rate(ceiling[ph]);
      const v = rate(vm.small[ph]);
      const unit = ph === 'readdir' ? 'entries/s' : 'files/s';
      emit({ figure: `fuse.small.${ph}.ceiling`, value: Math.round(c), unit });
      emit({ figure: `fuse.small.${ph}`, value: Math.round(v), unit, vs_ceiling: round3(v / c) });
      if (before) emit({ figure: `fuse.small.${ph}.before`, value: Math.round(rate(before.small[ph])), unit, vs_ceiling: round3(rate(before.small[ph]) / c) });
      emit({ figure: `fuse.small.${ph}.vs_ceiling`, value: round3(v / c), unit: 'ratio' });
    }
    opts.note(`rsync -a ${src}: plain directory ${plainS.toFixed(2)} s, mount ${vm.rsync.toFixed(2)} s${before ? `, before ${before.rsync.toFixed(2)} s` : ''}`);
    emit({ figure: 'rsync.doc.seconds', value: round1(vm.rsync), unit: 's' });
    emit({ figure: 'rsync.doc.plain_seconds', value: round1(plainS), unit: 's' });
    if (before) {
      emit({ figure: 'rsync.doc.before_seconds', value: round1(before.rsync), unit: 's' });
      emit({ figure: 'rsync.doc.speedup', value: round1(before.rsync / vm.rsync), unit: 'before time / time' });
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}
