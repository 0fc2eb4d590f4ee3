// npm run bench:fuse-read [-- --before=REPO] [-- --reps=N] [-- --size=MiB] [-- IMAGE]
//   (node dist/tools/bench-fuse-read.js)
// The mount's read path, this checkout against another built one (--before, e.g. /work/main: the
// code before a change) in one run, alternating, so both meet the same load. Each checkout gets
// a real appliance (its own bin/vmvault.js, libfuse3 binding) holding two files, restarted so
// its caches are cold:
//   - seq.bin: SIZE MiB of binaries from /usr (bench:store's input), read by `dd bs=1M` through
//     the page cache (as fuse.read.vs_store's read);
//   - vda.raw: IMAGE (default /work/vmimages/vm1-day1.raw, 2 GiB, a quarter data), read by
//     `qemu-img bench` 64 KiB sequential, 8 in flight, cache=writeback (as recovery.read_vs_local);
//     a local copy (cp --sparse=always) is read the same way in each round, as the baseline.
// Before each read the file's page cache is dropped (POSIX_FADV_DONTNEED through dd). Printed per
// read: MB/s and the appliance's CPU seconds per GiB read (all its threads, from /proc; far less
// disturbed by other load than MB/s). JSON lines, one per checkout and figure:
//   {"figure":"fuse_read.seq_mbps"|"fuse_read.qemu_mbps"|..., "value", "unit", "repo", "runs"}
// with the best MB/s and the median CPU s/GiB of the rounds (--reps, default 3).

import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BenchAppliance, dd, run, startBenchAppliance } from './bench/fuse-appliance.js';
import { binariesFile } from './bench/store-data.js';

const args = process.argv.slice(2);
const opt = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const repos = [here, ...(opt('before') ? [path.resolve(opt('before')!)] : [])];
const reps = Number(opt('reps') ?? 3);
const sizeMiB = Number(opt('size') ?? 512);
const image = args.find((a) => !a.startsWith('--')) ?? '/work/vmimages/vm1-day1.raw';
const note = (l: string) => process.stderr.write(`bench:fuse-read: ${l}\n`);
const load = () => os.loadavg()[0]!.toFixed(1);

/** CPU seconds (user + system, all threads) of a process so far. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ ticks
}

async function dropFileCache(file: string): Promise<void> {
  await run('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
}

async function qemuRead(file: string, bytes: number): Promise<number> {
  await dropFileCache(file);
  const count = Math.floor(bytes / 65536);
  const t0 = performance.now();
  await run('qemu-img', ['bench', '-f', 'raw', '-t', 'writeback', '-c', String(count), '-s', '65536', '-S', '65536', '-d', '8', file]);
  return (count * 65536) / ((performance.now() - t0) / 1000) / 1e6;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

async function main(): Promise<void> {
  const input = binariesFile(sizeMiB * 1024 * 1024);
  const imageBytes = (await fs.stat(image)).size;
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'vmvault-bench-fuse-read-'));
  const apps: BenchAppliance[] = [];
  const local = path.join(work, 'local.raw');
  try {
    await run('cp', ['--sparse=always', image, local]);
    for (const [k, repo] of repos.entries()) {
      const dir = path.join(work, `app-${k}`);
      const bin = path.join(repo, 'bin', 'vmvault.js');
      let app = await startBenchAppliance(dir, [], bin);
      const r = await app.api('POST', '/shares', { name: 'bench' });
      if (r.status !== 201) throw new Error(`creating the share: ${r.status} ${JSON.stringify(r.body)}`);
      await dd([`if=${input}`, `of=${path.join(app.mount, 'bench', 'seq.bin')}`, 'bs=1M', 'conv=fsync']);
      await run('cp', ['--sparse=always', image, path.join(app.mount, 'bench', 'vda.raw')]);
      await run('sync', []);
      await app.stop();
      app = await startBenchAppliance(dir, [], bin);
      apps.push(app);
    }
    const seq = repos.map(() => ({ mbps: [] as number[], cpu: [] as number[] }));
    const qemu = repos.map(() => ({ mbps: [] as number[], cpu: [] as number[] }));
    const localMbps: number[] = [];
    for (let i = 0; i < reps; i++) {
      localMbps.push(await qemuRead(local, imageBytes));
      for (const [k, app] of apps.entries()) {
        const f = path.join(app.mount, 'bench', 'seq.bin');
        await dropFileCache(f);
        let c0 = cpuSeconds(app.proc.pid!);
        const d = await dd([`if=${f}`, 'of=/dev/null', 'bs=1M']);
        seq[k]!.mbps.push(d.mbps);
        seq[k]!.cpu.push((cpuSeconds(app.proc.pid!) - c0) / (d.bytes / 2 ** 30));
        c0 = cpuSeconds(app.proc.pid!);
        const q = await qemuRead(path.join(app.mount, 'bench', 'vda.raw'), imageBytes);
        qemu[k]!.mbps.push(q);
        qemu[k]!.cpu.push((cpuSeconds(app.proc.pid!) - c0) / (imageBytes / 2 ** 30));
        note(
          `round ${i + 1} ${repos[k]}: dd ${d.mbps.toFixed(0)} MB/s (${seq[k]!.cpu[i]!.toFixed(2)} cpu-s/GiB), ` +
            `qemu-img ${q.toFixed(0)} MB/s (${qemu[k]!.cpu[i]!.toFixed(2)} cpu-s/GiB), local qemu-img ${localMbps[i]!.toFixed(0)} MB/s (load ${load()})`,
        );
      }
    }
    const emit = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
    emit({ figure: 'fuse_read.local_qemu_mbps', value: Math.round(Math.max(...localMbps)), unit: 'MB/s', runs: localMbps.map(Math.round) });
    for (const [k, repo] of repos.entries()) {
      emit({ figure: 'fuse_read.seq_mbps', value: Math.round(Math.max(...seq[k]!.mbps)), unit: 'MB/s', repo, runs: seq[k]!.mbps.map(Math.round) });
      emit({ figure: 'fuse_read.seq_cpu_s_per_gib', value: Number(median(seq[k]!.cpu).toFixed(2)), unit: 's/GiB', repo });
      emit({ figure: 'fuse_read.qemu_mbps', value: Math.round(Math.max(...qemu[k]!.mbps)), unit: 'MB/s', repo, runs: qemu[k]!.mbps.map(Math.round) });
      emit({ figure: 'fuse_read.qemu_cpu_s_per_gib', value: Number(median(qemu[k]!.cpu).toFixed(2)), unit: 's/GiB', repo });
      emit({ figure: 'fuse_read.qemu_vs_local', value: Number((Math.max(...qemu[k]!.mbps) / Math.max(...localMbps)).toFixed(3)), unit: 'ratio', repo });
    }
  } finally {
    for (const a of apps) await a.stop().catch(() => undefined);
    await fs.rm(work, { recursive: true, force: true });
  }
}

await main();
