// The backup bench (`npm run bench:backup [-- --quick]`): issue 11's figures, each a ratio
// against a baseline measured in the same run on the same bytes.
//
// The VM: a guestless `qemu-system-x86_64 -S` whose disk (virtio-blk, qcow2) is the sample
// day-1 image of ../shared/testdata (vm1-day1.raw; --quick: its first 512 MiB). The day-2 changes
// are written into it through QEMU's block layer (tools/bench/backup-day2.ts), so the dirty bitmap
// sees guest-like writes. The appliance side runs in this process: a store, a namespace and the
// BackupService, exactly as the appliance composes them.
//
//   backup.full.vs_store          store ingest time of the raw image from a file (bench:store's
//                                 ingestFile) / full backup time: same bytes; goal >= 0.8. Cold
//                                 against cold: the full backup is this process's first work, and
//                                 the ingest is the first work of a fresh process of its own (a
//                                 child, ingestChild), as bench:store starts its ingest in a fresh
//                                 process; both sources pre-read into the page cache. (Until
//                                 benchfair the ingest ran after the backup in this process, warm:
//                                 that number is still printed as a note, "old definition".)
//   backup.full.vs_convert        `qemu-img convert` of the disk into the mount (a child appliance,
//                                 + sync) / full backup time; goal >= 2
//   backup.incremental.read_vs_dirty  bytes read over NBD / bytes the day-2 changes dirtied (64 KiB)
//   backup.incremental.vs_full    incremental time / full time; goal <= 0.1. The incremental
//                                 runs in the warm process, the full cold; the note gives it
//                                 against the warm full too (incremental.vs_full.warm)
//   backup.rss_mib                this process's peak RSS during the full backup
//   backup.full.warm.vs_store, backup.full.warm.vs_convert, backup.full.warm.main_cpu_s_per_gib
//                                 the same for a second full backup of the same bytes (a second
//                                 QEMU, a fresh store) once the process is warm (warmFull);
//                                 warm.vs_store's ingest is the child's second ingest (a fresh
//                                 store, the process warmed by its first): warm against warm.
//                                 warm.vs_convert's convert ran into a fresh appliance (cold).
//   backup.full.main_cpu_s_per_gib  main (JS) thread CPU of the full backup per GiB read (the
//                                 notes give the process's, the main thread's and QEMU's CPU of
//                                 the full and the ingest's)
//   restore.vs_convert            `qemu-img convert` of the same image out of the mount / restore
//                                 time of the full point (raw); goal >= 1
//   backup.freeze_ms.median/.max  guest freeze window (freeze sent to thaw answered) over 10
//                                 app-consistent backups of a booted TCG guest (test/helpers/guest.ts)

import { fork } from 'node:child_process';
import fs from 'node:fs';
import { Session } from 'node:inspector/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import { BackupService } from '../../src/backup/backup-service.js';
import { Namespace } from '../../src/namespace/namespace.js';
import { QmpClient } from '../../src/plugins/qemu/qmp.js';
import { SegmentStore } from '../../src/store/store.js';
import { progress, vmLookup } from '../../test/helpers/backup.js';
import { startQemu } from '../../test/helpers/qemu.js';
import { applyRuns, changedRuns } from './backup-day2.js';
import { run, startBenchAppliance } from './fuse-appliance.js';
import { preRead, settle } from './page-cache.js';
import { ingestFile } from './store-io.js';

const MiB = 2 ** 20;

export interface BackupFigure {
  figure: string;
  value: number;
  unit: string;
}

export interface BenchBackupOptions {
  quick: boolean;
  images: string;
  work?: string;
  /** NBD connections per disk for the backups (BackupService's nbdConnections). */
  connections?: number;
  /** Leave out the freeze figures (no guest boot). */
  noFreeze?: boolean;
  /**
   * A folder for CPU profiles (.cpuprofile, the main thread, by the inspector) of the cold and
   * the warm full backup and of the ingest child's two ingests: what the first run pays.
   */
  profileDir?: string;
  emit(f: BackupFigure): void;
  note(line: string): void;
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;

/**
 * A progress whose job-log lines and phases carry the milliseconds since it was made: the
 * per-phase timeline of one backup (what is fixed cost and what is reading), printed as notes.
 */
function timedProgress(): ReturnType<typeof progress> {
  const p = progress();
  const t0 = performance.now();
  const stamp = () => `+${(performance.now() - t0).toFixed(0).padStart(5)} ms`;
  const log = p.log;
  const phase = p.phase;
  p.log = (l: string) => log(`${stamp()} ${l}`);
  p.phase = (n: string) => {
    phase(n);
    log(`${stamp()} phase ${n}`);
  };
  return p;
}
const secs = (t0: number) => (performance.now() - t0) / 1000;

/**
 * CPU seconds so far (user + system) of a thread or process from /proc: `stat` fields 14 and 15,
 * in clock ticks (USER_HZ, 100 on Linux). The main thread is the task whose id is the pid; the
 * rest of this process is the libuv pool and the codec/segmenter threads.
 */
function procCpu(statPath: string): number {
  try {
    const f = fs.readFileSync(statPath, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100;
  } catch {
    return NaN;
  }
}

/** The CPU split of a phase: this process, its main (JS) thread, and QEMU (pid, or none). */
function cpuSplit(qemuPid?: number): () => { proc: number; main: number; qemu: number } {
  const p0 = process.cpuUsage();
  const m0 = procCpu(`/proc/self/task/${process.pid}/stat`);
  const q0 = qemuPid === undefined ? 0 : procCpu(`/proc/${qemuPid}/stat`);
  return () => {
    const p = process.cpuUsage(p0);
    return {
      proc: (p.user + p.system) / 1e6,
      main: procCpu(`/proc/self/task/${process.pid}/stat`) - m0,
      qemu: qemuPid === undefined ? 0 : procCpu(`/proc/${qemuPid}/stat`) - q0,
    };
  };
}

/**
 * What a phase cost beyond the CPU: minor page faults of the process (memory touched for the
 * first time: slab pools, receive slabs, codec buffers, the heap growing), the main thread's GC
 * pauses (count and ms, from V8's gc performance entries) and V8's code space growth (code
 * compiled and kept). The first run of a code path pays for all three; a warm run should not.
 */
function firstRunCosts(): () => string {
  const faults = () => Number(fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[7]);
  const code = () => v8.getHeapSpaceStatistics().find((x) => x.space_name === 'code_space')?.space_used_size ?? 0;
  const f0 = faults();
  const c0 = code();
  // By kind: scavenges (minor), mark-compacts (major), incremental marking steps, weak callbacks.
  const kinds = new Map<number, { n: number; ms: number }>();
  const obs = new PerformanceObserver((l) => {
    for (const e of l.getEntries()) {
      const kind = ((e as unknown as { detail?: { kind?: number } }).detail)?.kind ?? 0;
      const k = kinds.get(kind) ?? { n: 0, ms: 0 };
      k.n++;
      k.ms += e.duration;
      kinds.set(kind, k);
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  const names: Record<number, string> = { 1: 'scavenge', 2: 'minor-mc', 4: 'mark-compact', 8: 'incremental', 16: 'weak-cb' };
  return () => {
    obs.disconnect();
    const gc = [...kinds].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${v.n} ${names[k] ?? k} ${v.ms.toFixed(0)} ms`).join(', ');
    return `minor faults ${faults() - f0}, GC pauses: ${gc || 'none'}; code space ${((code() - c0) / 1024).toFixed(0)} KiB grown`;
  };
}

/** Runs fn under the inspector's CPU profiler (this thread) when dir is given; the profile goes to dir/name.cpuprofile. */
async function profiled<T>(dir: string | undefined, name: string, fn: () => Promise<T>): Promise<T> {
  if (!dir) return fn();
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    try {
      return await fn();
    } finally {
      const { profile } = await session.post('Profiler.stop');
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
    }
  } finally {
    session.disconnect();
  }
}

/** One ingest of the child (ingestChild): wall and CPU seconds, and what the first run paid. */
export interface IngestRound {
  seconds: number;
  cpu: number;
  main: number;
  costs: string;
  root: string;
}

/**
 * The ingest baseline in a process of its own, as bench:store measures it: the file pre-read
 * into the page cache, then `rounds` ingests of it, each into a fresh store under `dir`, the
 * first being the process's first work (cold), the next ones warm. One JSON line per round on
 * stdout. Runs as `bench-backup.js --ingest-child FILE DIR ROUNDS [PROFILE_DIR]`.
 */
export async function ingestChild(file: string, dir: string, rounds: number, profileDir?: string): Promise<void> {
  preRead(file);
  for (let i = 0; i < rounds; i++) {
    const store = await SegmentStore.open(path.join(dir, `store-${i}`));
    await run('sync', []); // no dirty pages of earlier steps to write back during the round, as for the backups
    try {
      const t0 = performance.now();
      const cpu = cpuSplit();
      const costs = firstRunCosts();
      const v = await profiled(profileDir, `ingest-${i === 0 ? 'cold' : `warm${i}`}`, () => ingestFile(store, file));
      const seconds = secs(t0);
      const c = cpu();
      const round: IngestRound = { seconds, cpu: c.proc, main: c.main, costs: costs(), root: v.root.toString('hex') };
      process.stdout.write(JSON.stringify(round) + '\n');
    } finally {
      await store.close();
    }
    fs.rmSync(path.join(dir, `store-${i}`), { recursive: true, force: true });
  }
}

/** Forks bench-backup.js as an ingest child (ingestChild) with this process's node flags; its rounds. */
export function ingestInFreshProcess(file: string, dir: string, rounds: number, profileDir?: string): Promise<{ pid: number; rounds: IngestRound[] }> {
  const entry = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bench-backup.js');
  fs.mkdirSync(dir, { recursive: true });
  return new Promise((resolve, reject) => {
    const args = ['--ingest-child', file, dir, String(rounds), ...(profileDir ? [profileDir] : [])];
    const p = fork(entry, args, { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], execArgv: process.execArgv });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`ingest child exited with ${code}`));
      resolve({ pid: p.pid!, rounds: out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as IngestRound) });
    });
  });
}

async function openStore(dir: string): Promise<{ store: SegmentStore; ns: Namespace }> {
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {} });
  return { store, ns };
}

export async function benchBackup(opts: BenchBackupOptions): Promise<void> {
  const { emit, note } = opts;
  const day1 = path.join(opts.images, 'vm1-day1.raw');
  const day2 = path.join(opts.images, 'vm1-day2.raw');
  for (const f of [day1, day2]) {
    if (!fs.existsSync(f)) {
      throw new Error(`${f} is missing: make the sample images with OUT=${opts.images} ../shared/testdata/make-vm-images.sh (or pass --images DIR)`);
    }
  }
  const size = opts.quick ? 512 * MiB : fs.statSync(day1).size;
  const work = fs.mkdtempSync(path.join(opts.work ?? os.tmpdir(), 'vmvault-bench-backup-'));
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    // The VM's disk: day 1 as qcow2 (the first `size` bytes).
    const disk = path.join(work, 'vda.qcow2');
    await run('qemu-img', ['convert', '--image-opts', `driver=raw,size=${size},file.driver=file,file.filename=${day1}`, '-O', 'qcow2', disk]);
    note(`disk: ${path.basename(day1)}, ${size / MiB} MiB, qcow2 ${(fs.statSync(disk).size / MiB).toFixed(0)} MiB`);
    const q = await startQemu({ dir: work, name: 'bench01', disks: [{ device: 'vda', file: disk }] });
    cleanups.push(() => q.stop());

    const { store, ns } = await openStore(path.join(work, 'store'));
    cleanups.push(async () => {
      await ns.close();
      await store.close();
    });
    const data = path.join(work, 'data');
    fs.mkdirSync(data);
    const vm = { name: 'bench01', share: 'bench01', qmp: q.qmp, workflow: 'crash-consistent' };
    const svc = new BackupService(ns, vmLookup([vm]), { dataDir: data, nbdConnections: opts.connections });
    note(`NBD connections per disk: ${opts.connections ?? 1}`);

    // Full backup, RSS sampled. Its source pre-read into the page cache and no dirty pages of
    // earlier steps left to write back (sync), as for the ingest child below.
    await settle(disk);
    let rss = process.memoryUsage().rss;
    const sampler = setInterval(() => (rss = Math.max(rss, process.memoryUsage().rss)), 20);
    let t0 = performance.now();
    const pf = timedProgress();
    const cpuFull = cpuSplit(q.pid);
    const costsFull = firstRunCosts();
    const full = await profiled(opts.profileDir, 'full-cold', () => svc.backup('bench01', {}, pf));
    const tFull = secs(t0);
    const cf = cpuFull();
    const firstFull = costsFull();
    for (const l of pf.lines) note(`  full: ${l}`);
    clearInterval(sampler);
    note(`full backup: ${tFull.toFixed(2)} s, read ${(full.bytesRead / MiB).toFixed(0)} MiB of ${size / MiB} MiB`);
    emit({ figure: 'backup.rss_mib', value: Math.round(rss / MiB), unit: 'MiB' });
    note(`full backup CPU: process ${cf.proc.toFixed(2)} s (main thread ${cf.main.toFixed(2)} s), QEMU ${cf.qemu.toFixed(2)} s; ${firstFull}`);
    emit({ figure: 'backup.full.main_cpu_s_per_gib', value: r3(cf.main / (full.bytesRead / 2 ** 30)), unit: 'main-thread CPU s per GiB read' });

    // Baseline: the store's own ingest of the same bytes from a file, in a fresh store.
    const raw = path.join(work, 'day1.raw');
    await run('qemu-img', ['convert', '-U', '-O', 'raw', disk, raw]);
    preRead(raw, size);
    // The old definition (until benchfair), kept as a note for one stop: the ingest here, after
    // the backup, in this process, warmed by it, against the cold backup.
    let tIngestHere = 0;
    {
      const s2 = await SegmentStore.open(path.join(work, 'store-ingest'));
      try {
        t0 = performance.now();
        const cpuIngest = cpuSplit();
        await ingestFile(s2, raw);
        tIngestHere = secs(t0);
        const ci = cpuIngest();
        note(`old definition: store ingest of the same ${size / MiB} MiB in this process after the backup (warm): ${tIngestHere.toFixed(2)} s, CPU ${ci.proc.toFixed(2)} s (main thread ${ci.main.toFixed(2)} s); vs_store as before ${r3(tIngestHere / tFull)}`);
      } finally {
        await s2.close();
      }
      fs.rmSync(path.join(work, 'store-ingest'), { recursive: true, force: true });
    }
    // The figure's baseline: the ingest as the first work of a fresh process (cold, like the
    // backup above), then once more in that process (warm, for the warm figure below).
    const child = await ingestInFreshProcess(raw, path.join(work, 'ingest-child'), 2, opts.profileDir);
    const [ingestCold, ingestWarm] = child.rounds;
    for (const [i, r] of child.rounds.entries()) {
      note(`store ingest in a fresh process (pid ${child.pid}), ${i === 0 ? 'its first work (cold)' : 'again (warm)'}: ${r.seconds.toFixed(2)} s, CPU ${r.cpu.toFixed(2)} s (main thread ${r.main.toFixed(2)} s); ${r.costs}`);
    }
    const tIngest = ingestCold.seconds;
    emit({ figure: 'backup.full.vs_store', value: r3(tIngest / tFull), unit: 'cold ingest time (fresh process) / cold backup time' });

    // Baseline: qemu-img convert of the disk into the mount (child appliance), then out again.
    const app = await startBenchAppliance(path.join(work, 'appliance'));
    cleanups.push(() => app.stop());
    if ((await app.api('POST', '/shares', { name: 'bench' })).status !== 201) throw new Error('creating the share for qemu-img failed');
    const inMount = path.join(app.mount, 'bench', 'vda.raw');
    preRead(disk);
    t0 = performance.now();
    await run('qemu-img', ['convert', '-U', '-O', 'raw', disk, inMount]);
    await run('sync', []);
    const tConvertIn = secs(t0);
    note(`qemu-img convert into the mount: ${tConvertIn.toFixed(2)} s`);
    emit({ figure: 'backup.full.vs_convert', value: r3(tConvertIn / tFull), unit: 'convert time / backup time' });

    const outConvert = path.join(work, 'out-convert.raw');
    t0 = performance.now();
    await run('qemu-img', ['convert', '-O', 'raw', inMount, outConvert]);
    const tConvertOut = secs(t0);
    fs.rmSync(outConvert);
    t0 = performance.now();
    await svc.restore('bench01', { point: full.point, to: path.join(work, 'restore-raw'), format: 'raw' }, progress());
    const tRestore = secs(t0);
    note(`restore of the full point (raw): ${tRestore.toFixed(2)} s; qemu-img convert out of the mount: ${tConvertOut.toFixed(2)} s`);
    emit({ figure: 'restore.vs_convert', value: r3(tConvertOut / tRestore), unit: 'convert time / restore time' });
    const same = await run('cmp', [path.join(work, 'restore-raw', 'vda.raw'), raw]).then(() => true, () => false);
    note(`restored full point ${same ? 'equals' : 'DIFFERS FROM'} the day-1 disk`);
    fs.rmSync(path.join(work, 'restore-raw'), { recursive: true });
    t0 = performance.now();
    await svc.restore('bench01', { point: full.point, to: path.join(work, 'restore-qcow2'), format: 'qcow2' }, progress());
    note(`restore of the full point as qcow2 (raw, then qemu-img convert): ${secs(t0).toFixed(2)} s`);
    fs.rmSync(path.join(work, 'restore-qcow2'), { recursive: true });
    await app.stop();

    // Day-2 changes through QEMU's block layer, then the incremental.
    const runs = changedRuns(day1, day2, size);
    const dirty = runs.reduce((n, r) => n + r.length, 0);
    const qmp = await QmpClient.connect(q.qmp);
    t0 = performance.now();
    try {
      await applyRuns(qmp, q.qdevOf('vda'), day2, runs, work);
    } finally {
      await qmp.close();
    }
    note(`day-2 changes: ${runs.length} runs, ${(dirty / MiB).toFixed(1)} MiB in 64 KiB blocks, applied in ${secs(t0).toFixed(1)} s`);
    t0 = performance.now();
    const pi = timedProgress();
    const inc = await svc.backup('bench01', {}, pi);
    const tInc = secs(t0);
    for (const l of pi.lines) note(`  incremental: ${l}`);
    note(`incremental backup: ${tInc.toFixed(2)} s, read ${(inc.bytesRead / MiB).toFixed(1)} MiB (${inc.kind})`);
    emit({ figure: 'backup.incremental.read_vs_dirty', value: r3(inc.bytesRead / dirty), unit: 'bytes read / dirty bytes' });
    emit({ figure: 'backup.incremental.vs_full', value: r3(tInc / tFull), unit: 'incremental time / full time' });
    await svc.restore('bench01', { point: inc.point, to: path.join(work, 'restore-inc'), format: 'raw' }, progress());
    const want2 = path.join(work, 'day2.raw');
    await run('qemu-img', ['convert', '--image-opts', `driver=raw,size=${size},file.driver=file,file.filename=${day2}`, '-O', 'raw', want2]);
    const same2 = await run('cmp', [path.join(work, 'restore-inc', 'vda.raw'), want2]).then(() => true, () => false);
    note(`restored incremental point ${same2 ? 'equals' : 'DIFFERS FROM'} the day-2 disk`);

    const tWarmFull = await warmFull(opts, work, raw, { tIngest: ingestWarm.seconds, tIngestHere, tConvertIn });
    note(`incremental against the warm full: ${r3(tInc / tWarmFull)} (against the cold full: ${r3(tInc / tFull)})`);
    emit({ figure: 'backup.incremental.vs_full.warm', value: r3(tInc / tWarmFull), unit: 'incremental time / warm full time (extra)' });

    if (opts.noFreeze) note('freeze figures left out (--no-freeze)');
    else await freezeFigures(opts, work);
  } finally {
    for (const c of cleanups.reverse()) await c().catch((e) => note(`cleanup: ${(e as Error).message}`));
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The same full backup once more, the process now warm: a second QEMU on a fresh qcow2 of the
 * same raw bytes, a fresh store, namespace and BackupService. The first full backup is this
 * process's first work (its code is compiled, its slab pools, NBD receive slabs and codec
 * buffers are faulted in during the timed run), while the store's ingest baseline runs after it
 * in the warmed process; this one meets the baselines on equal terms, as a running appliance's
 * backups do. Reported beside the first, not instead of it.
 */
async function warmFull(opts: BenchBackupOptions, work: string, raw: string, base: { tIngest: number; tIngestHere: number; tConvertIn: number }): Promise<number> {
  const { emit, note } = opts;
  const dir = path.join(work, 'warm');
  fs.mkdirSync(dir);
  const disk = path.join(dir, 'vda.qcow2');
  await run('qemu-img', ['convert', '-O', 'qcow2', raw, disk]);
  const q = await startQemu({ dir, name: 'bench02', disks: [{ device: 'vda', file: disk }] });
  try {
    const { store, ns } = await openStore(path.join(dir, 'store'));
    try {
      fs.mkdirSync(path.join(dir, 'data'));
      const vm = { name: 'bench02', share: 'bench02', qmp: q.qmp, workflow: 'crash-consistent' };
      const svc = new BackupService(ns, vmLookup([vm]), { dataDir: path.join(dir, 'data'), nbdConnections: opts.connections });
      await settle(disk);
      const t0 = performance.now();
      const cpu = cpuSplit(q.pid);
      const costs = firstRunCosts();
      const pw = timedProgress();
      const r = await profiled(opts.profileDir, 'full-warm', () => svc.backup('bench02', {}, pw));
      const t = secs(t0);
      const c = cpu();
      for (const l of pw.lines) note(`  full, warm: ${l}`);
      note(`full backup again, warm process: ${t.toFixed(2)} s, read ${(r.bytesRead / MiB).toFixed(0)} MiB; CPU: process ${c.proc.toFixed(2)} s (main thread ${c.main.toFixed(2)} s), QEMU ${c.qemu.toFixed(2)} s; ${costs()}`);
      note(`old definition: warm.vs_store against the ingest in this process ${r3(base.tIngestHere / t)}`);
      emit({ figure: 'backup.full.warm.vs_store', value: r3(base.tIngest / t), unit: 'warm ingest time (fresh process, second ingest) / warm backup time' });
      emit({ figure: 'backup.full.warm.vs_convert', value: r3(base.tConvertIn / t), unit: 'convert time / warm backup time' });
      emit({ figure: 'backup.full.warm.main_cpu_s_per_gib', value: r3(c.main / (r.bytesRead / 2 ** 30)), unit: 'main-thread CPU s per GiB read' });
      return t;
    } finally {
      await ns.close();
      await store.close();
    }
  } finally {
    await q.stop();
  }
}

/** Freeze window over 10 app-consistent backups of a booted guest (3 with --quick). */
async function freezeFigures(opts: BenchBackupOptions, work: string): Promise<void> {
  let guest: any;
  try {
    const spec = '../../test/helpers/guest.js';
    guest = await import(spec);
  } catch {
    opts.note('freeze figures: test/helpers/guest.ts (the guest helper) is not in this tree; not measured');
    return;
  }
  const n = opts.quick ? 3 : 10;
  const dir = path.join(work, 'guest');
  fs.mkdirSync(dir);
  const teardowns: Array<() => unknown> = [];
  const g = await guest.bootGuest({ teardown: (fn: () => unknown) => teardowns.push(fn) }, { dir });
  try {
    const { store, ns } = await openStore(path.join(dir, 'store'));
    try {
      const vm = { name: 'guest01', share: 'guest01', qmp: g.qmp, qga: g.qga as string };
      const svc = new BackupService(ns, vmLookup([vm]), { dataDir: path.join(dir, 'data') });
      const freezes: number[] = [];
      for (let i = 0; i < n; i++) {
        const r = await svc.backup('guest01', { workflow: 'app-consistent' }, progress());
        if (r.freezeMs !== null) freezes.push(r.freezeMs);
      }
      freezes.sort((a, b) => a - b);
      opts.note(`freeze windows (ms): ${freezes.join(', ')}`);
      const mid = freezes.length % 2 ? freezes[(freezes.length - 1) / 2] : (freezes[freezes.length / 2 - 1] + freezes[freezes.length / 2]) / 2;
      opts.emit({ figure: 'backup.freeze_ms.median', value: mid, unit: 'ms' });
      opts.emit({ figure: 'backup.freeze_ms.max', value: freezes.at(-1)!, unit: 'ms' });
    } finally {
      await ns.close();
      await store.close();
    }
  } finally {
    await g.stop();
    for (const f of teardowns.reverse()) await f();
  }
}
