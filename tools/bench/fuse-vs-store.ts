// The mount against the store it stands on, in one run (issue 16's figures): the same bytes
// ingested by the store in this process (bench:store's unique, duplicate and sequential-read
// passes and its 4 KiB random reads at queue depth 16), then written and read through a real
// appliance's mount (libfuse3 low-level), with dd and fio; with `before`, also through an
// appliance started from another built checkout (main before a change), alternating in one run. Every figure is the best of `runs` (the machine is shared: the best run is the one
// least disturbed); the load average is noted beside each run.
//
// Figures (this checkout under these names, the `before` checkout with `.before` appended):
//   fuse.write.unique.vs_store      dd conv=fsync into an empty store / store.ingest.unique
//   fuse.write.duplicate.vs_store   the same bytes again / store.ingest.duplicate
//   fuse.read.vs_store              dd read, appliance restarted (store files in the page cache,
//                                   as bench:store reopens its store) / store.read.sequential
//   fuse.read.random4k_qd16         fio randread 4 KiB, libaio, iodepth 16, O_DIRECT: ops/s
//                                   (vs_store: / store.read.random4k.qd16)
//   fuse.two_writers.vs_one         two dd at once, each half the bytes into its own file of an
//                                   empty store: aggregate MB/s / one dd of all the bytes
//
// Beside them, what the appliance process spent per MiB written (from /proc; the lowest of the
// runs), which a loaded machine disturbs far less than MB/s, and which bounds two writers: N
// cores at c ms per MiB ingest at most N * 1000 / c MiB/s, whatever runs in parallel:
//   fuse.write.unique.cpu_ms_per_mib   CPU ms (all threads) per MiB of the unique dd
//   fuse.two_writers.cpu_ms_per_mib    the same for the two dd at once
// and in the notes: the main (JS) thread's share, minor page faults per MiB (fresh memory touched:
// payload blocks, slabs), cores in use, and the appliance's peak RSS.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SegmentStore, type FileVersion } from '../../src/store/store.js';
import { type BenchAppliance, dd, dropCaches, procUsage, run, startBenchAppliance, usagePerMiB } from './fuse-appliance.js';
import { randomReads, streamAll } from './store.js';
import { binariesFile } from './store-data.js';
import { type Figure, ingestFile, MiB, mbps, now } from './store-io.js';

export interface FuseVsStoreOptions {
  quick: boolean;
  dir: string;
  /** Another checkout's bin/vmvault.js, measured too (figures *.before), alternating run by run. */
  before?: string;
  /** Only the write figures (unique, duplicate, two writers): no read, no fio. */
  writesOnly?: boolean;
  runs: number;
  note(line: string): void;
}

const round3 = (v: number) => Math.round(v * 1000) / 1000;
const load = () => os.loadavg()[0]!.toFixed(1);

export async function benchFuseVsStore(opts: FuseVsStoreOptions, emit: (f: Figure & { variant?: string; vs_store?: number }) => void): Promise<void> {
  const size = opts.quick ? 256 * MiB : 1024 * MiB;
  const input = binariesFile(size);
  const work = await fs.mkdtemp(path.join(opts.dir, 'vmvault-bench-vs-store-'));
  const seconds = opts.quick ? 5 : 10;
  opts.note(`input ${input} (${size / MiB} MiB of binaries from /usr, bench:store's input); best of ${opts.runs}${opts.before ? `; before: ${opts.before}` : ''}`);
  const variants: Array<{ name: string; sfx: string; bin?: string }> = [{ name: 'this', sfx: '' }];
  if (opts.before) variants.push({ name: 'before', sfx: '.before', bin: opts.before });
  const best = new Map<string, number>();
  const keep = (name: string, v: number) => best.set(name, Math.max(best.get(name) ?? 0, v));
  const keepLow = (name: string, v: number) => best.set(name, Math.min(best.get(name) ?? Infinity, v));
  const usageNote = (u: ReturnType<typeof usagePerMiB>) =>
    `${u.cpuMsPerMiB} CPU ms/MiB (main thread ${u.mainMsPerMiB}), ${u.faultsPerMiB} faults/MiB, ${u.cores} cores, peak RSS ${u.peakRssMiB} MiB`;
  const apps: BenchAppliance[] = [];
  const start = async (dir: string, bin: string | undefined): Promise<BenchAppliance> => {
    const app = await startBenchAppliance(dir, [], bin);
    apps.push(app);
    return app;
  };
  const stop = async (app: BenchAppliance) => {
    await app.stop();
    apps.splice(apps.indexOf(app), 1);
  };
  const share = async (app: BenchAppliance) => {
    const r = await app.api('POST', '/shares', { name: 'bench' });
    if (r.status !== 201) throw new Error(`creating the share: ${r.status} ${JSON.stringify(r.body)}`);
    return path.join(app.mount, 'bench');
  };
  const warm = async () => {
    await run('dd', [`if=${input}`, 'of=/dev/null', 'bs=1M']);
    await run('sync', []);
  };
  try {
    for (let r = 1; r <= opts.runs; r++) {
      // The store alone, in this process.
      const sdir = path.join(work, `store-${r}`);
      await warm();
      let store = await SegmentStore.open(sdir);
      let t0 = now();
      const v1: FileVersion = await ingestFile(store, input);
      await store.close();
      const su = mbps(size, now() - t0);
      store = await SegmentStore.open(sdir);
      t0 = now();
      await ingestFile(store, input);
      await store.close();
      const sd = mbps(size, now() - t0);
      let sr = 0;
      let sq = 0;
      if (!opts.writesOnly) {
        store = await SegmentStore.open(sdir);
        t0 = now();
        await streamAll(store, v1);
        sr = mbps(size, now() - t0);
        sq = await randomReads(store, v1, 16, seconds, 2 + r);
        await store.close();
      }
      await fs.rm(sdir, { recursive: true, force: true });
      keep('store.unique', su);
      keep('store.duplicate', sd);
      keep('store.read', sr);
      keep('store.random', sq);
      opts.note(`run ${r} store: unique ${su} MB/s, duplicate ${sd} MB/s, read ${sr} MB/s, random 4k qd16 ${sq} ops/s (load ${load()})`);

      // Alternate the order run by run, so neither variant always meets the warmer machine.
      for (const v of r % 2 === 1 ? variants : [...variants].reverse()) {
        const adir = path.join(work, `app-${v.name}-${r}`);
        let app = await start(adir, v.bin);
        let sh = await share(app);
        await warm();
        const pu0 = procUsage(app.proc.pid!);
        const u = await dd([`if=${input}`, `of=${path.join(sh, 'copy1.bin')}`, 'bs=1M', 'conv=fsync']);
        const uu = usagePerMiB(pu0, procUsage(app.proc.pid!), u.bytes, u.seconds);
        await warm();
        const d = await dd([`if=${input}`, `of=${path.join(sh, 'copy2.bin')}`, 'bs=1M', 'conv=fsync']);
        await stop(app);
        let rd = { mbps: 0 };
        let iops = 0;
        if (!opts.writesOnly) {
          // Restarted: the mount's page cache is new, the store's files stay cached (as bench:store).
          app = await start(adir, v.bin);
          sh = path.join(app.mount, 'bench');
          rd = await dd([`if=${path.join(sh, 'copy1.bin')}`, 'of=/dev/null', 'bs=1M']);
          const fio = await run('fio', [
            '--name=rr', `--filename=${path.join(sh, 'copy1.bin')}`, '--readonly', '--rw=randread', '--bs=4k', '--iodepth=16',
            '--ioengine=libaio', '--direct=1', `--runtime=${seconds}`, '--time_based', '--output-format=json',
          ]);
          iops = Math.round((JSON.parse(fio.stdout.slice(fio.stdout.indexOf('{'))) as { jobs: Array<{ read: { iops: number } }> }).jobs[0]!.read.iops);
          await stop(app);
        }
        await fs.rm(adir, { recursive: true, force: true });

        // Two writers at once into an empty store, half the bytes each.
        const tdir = path.join(work, `two-${v.name}-${r}`);
        app = await start(tdir, v.bin);
        sh = await share(app);
        await warm();
        const half = size / MiB / 2;
        const pt0 = procUsage(app.proc.pid!);
        t0 = now();
        const [a, b] = await Promise.all([
          dd([`if=${input}`, `of=${path.join(sh, 'a.bin')}`, 'bs=1M', `count=${half}`, 'conv=fsync']),
          dd([`if=${input}`, `of=${path.join(sh, 'b.bin')}`, 'bs=1M', `skip=${half}`, `count=${half}`, 'conv=fsync']),
        ]);
        const two = mbps(a.bytes + b.bytes, now() - t0);
        const tu = usagePerMiB(pt0, procUsage(app.proc.pid!), a.bytes + b.bytes, now() - t0);
        await stop(app);
        await fs.rm(tdir, { recursive: true, force: true });
        const k = v.name;
        keep(`${k}.unique`, u.mbps);
        keep(`${k}.duplicate`, d.mbps);
        keep(`${k}.read`, rd.mbps);
        keep(`${k}.random`, iops);
        keep(`${k}.two`, two);
        keepLow(`${k}.unique.cpu`, uu.cpuMsPerMiB);
        keepLow(`${k}.two.cpu`, tu.cpuMsPerMiB);
        opts.note(`run ${r} ${v.name} appliance: unique dd ${usageNote(uu)}; two writers ${usageNote(tu)}`);
        opts.note(
          `run ${r} ${v.name}: unique ${u.mbps.toFixed(1)} MB/s, duplicate ${d.mbps.toFixed(1)} MB/s, read ${rd.mbps.toFixed(1)} MB/s, ` +
            `random 4k qd16 ${iops} ops/s, two writers ${two} MB/s (load ${load()})`,
        );
      }
      await dropCaches();
    }
    const s = (n: string) => best.get(n)!;
    emit({ figure: 'store.ingest.unique', value: s('store.unique'), unit: 'MB/s' });
    emit({ figure: 'store.ingest.duplicate', value: s('store.duplicate'), unit: 'MB/s' });
    if (!opts.writesOnly) {
      emit({ figure: 'store.read.sequential', value: s('store.read'), unit: 'MB/s' });
      emit({ figure: 'store.read.random4k.qd16', value: s('store.random'), unit: 'ops/s' });
    }
    for (const v of variants) {
      const { name: k, sfx } = v;
      const f = (n: string) => best.get(`${k}.${n}`)!;
      emit({ figure: `fuse.write.unique.vs_store${sfx}`, value: round3(f('unique') / s('store.unique')), unit: 'ratio', variant: k });
      emit({ figure: `fuse.write.duplicate.vs_store${sfx}`, value: round3(f('duplicate') / s('store.duplicate')), unit: 'ratio', variant: k });
      if (!opts.writesOnly) {
        emit({ figure: `fuse.read.vs_store${sfx}`, value: round3(f('read') / s('store.read')), unit: 'ratio', variant: k });
        emit({ figure: `fuse.read.random4k_qd16${sfx}`, value: f('random'), unit: 'ops/s', variant: k, vs_store: round3(f('random') / s('store.random')) });
      }
      emit({ figure: `fuse.two_writers.vs_one${sfx}`, value: round3(f('two') / f('unique')), unit: 'ratio', variant: k });
      emit({ figure: `fuse.write.unique.cpu_ms_per_mib${sfx}`, value: f('unique.cpu'), unit: 'ms/MiB', variant: k });
      emit({ figure: `fuse.two_writers.cpu_ms_per_mib${sfx}`, value: f('two.cpu'), unit: 'ms/MiB', variant: k });
      opts.note(`${k} best: unique ${f('unique').toFixed(1)}, duplicate ${f('duplicate').toFixed(1)}, read ${f('read').toFixed(1)}, two writers ${f('two')} MB/s`);
    }
  } finally {
    for (const a of apps) await a.stop().catch(() => undefined);
    await fs.rm(work, { recursive: true, force: true });
  }
}
