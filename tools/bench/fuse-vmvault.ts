// vmvault through its mount, against the ceiling of the FUSE binding measured in the same run:
// dd bs=1M of a real VM image into a share (unique data), a second copy (duplicate data), a
// sequential read of the stored image after the page cache is dropped, and qemu-img convert
// -O vmdk into the mount vs into a plain directory on the same disk, and 4 KiB writes each
// followed by fsync (vs_ceiling there: against the same writes into a plain directory).
//
// Each phase runs in its own appliance process (restarted between phases, the store kept), so
// a CPU profile (--profile) shows one phase, and the read starts with cold appliance caches.
// Writes end with fsync (dd conv=fsync; `sync` after qemu-img on both sides): a backup counts
// once it is durable.

import fs from 'node:fs/promises';
import path from 'node:path';
import { ceilingOldFigures } from './fuse-ceiling-old.js';
import { benchFuseCeilingLl, type Figure } from './fuse-ceiling-ll.js';
import { type BenchAppliance, dd, dropCaches, run, startBenchAppliance } from './fuse-appliance.js';
import { formatSummaries, summarizeProfiles } from './fuse-profile.js';

export interface FuseFigure extends Figure {
  /** For throughputs: value / the ceiling (same direction) measured in this run. */
  vs_ceiling?: number;
}

export interface FuseBenchOptions {
  quick: boolean;
  image: string;
  /** Where stores, mounts and the plain-directory copy go (one disk). */
  dir: string;
  /** Write CPU profiles of the appliance here, one directory per phase. */
  profileDir?: string;
  note(line: string): void;
}

const MiB = 2 ** 20;
const QUICK_SLICE_MIB = 256;
const round1 = (v: number) => Math.round(v * 10) / 10;
const round3 = (v: number) => Math.round(v * 1000) / 1000;

export async function benchFuse(opts: FuseBenchOptions, emit: (f: FuseFigure) => void): Promise<void> {
  const work = await fs.mkdtemp(path.join(opts.dir, 'vmvault-bench-fuse-'));
  const apps: BenchAppliance[] = [];
  try {
    // The binding's ceiling (the ratios below are against it), beside fuse-native's last recorded
    // one (historic: fuse-native was removed in issue 16).
    const ceiling = [...(await benchFuseCeilingLl({ quick: opts.quick, dir: work })), ...ceilingOldFigures()];
    const cw = ceiling.find((f) => f.figure === 'fuse.ceiling.write')!.value;
    const cr = ceiling.find((f) => f.figure === 'fuse.ceiling.read')!.value;
    for (const f of ceiling) emit(f);

    let src = opts.image;
    if (opts.quick) {
      src = path.join(work, 'slice.raw');
      await run('dd', [`if=${opts.image}`, `of=${src}`, 'bs=1M', `count=${QUICK_SLICE_MIB}`, 'conv=sparse']);
    }
    const size = (await fs.stat(src)).size;
    opts.note(`image ${src}: ${(size / MiB).toFixed(0)} MiB`);
    const warm = () => run('dd', [`if=${src}`, 'of=/dev/null', 'bs=1M']);

    const start = async (store: string, phase: string): Promise<BenchAppliance> => {
      const flags: string[] = [];
      if (opts.profileDir) flags.push('--cpu-prof', `--cpu-prof-dir=${path.join(opts.profileDir, phase)}`);
      const app = await startBenchAppliance(path.join(work, store), flags);
      apps.push(app);
      return app;
    };
    const stop = async (app: BenchAppliance, phase: string): Promise<void> => {
      await app.stop();
      apps.splice(apps.indexOf(app), 1);
      if (opts.profileDir) opts.note(formatSummaries(phase, await summarizeProfiles(path.join(opts.profileDir, phase)), 2));
    };
    const share = (app: BenchAppliance) => path.join(app.mount, 'bench');

    // Unique data: the first copy of the image into an empty store.
    let app = await start('store', 'write-unique');
    const created = await app.api('POST', '/shares', { name: 'bench' });
    if (created.status !== 201) throw new Error(`creating the share: ${created.status} ${JSON.stringify(created.body)}`);
    await warm();
    await run('sync', []);
    const unique = await dd([`if=${src}`, `of=${path.join(share(app), 'copy1.raw')}`, 'bs=1M', 'conv=fsync']);
    const stats1 = (await app.api('GET', '/stats')).body as { uniqueBytes: number; storedBytes: number };
    opts.note(`unique write: ${(unique.bytes / MiB).toFixed(0)} MiB in ${unique.seconds.toFixed(2)} s; store holds ${(stats1.uniqueBytes / 1e6).toFixed(0)} MB unique, ${(stats1.storedBytes / 1e6).toFixed(0)} MB stored`);
    emit({ figure: 'fuse.write.unique', value: round1(unique.mbps), unit: 'MB/s', vs_ceiling: round3(unique.mbps / cw) });
    await stop(app, 'write-unique');

    // Duplicate data: the same image again.
    app = await start('store', 'write-duplicate');
    await warm();
    await run('sync', []);
    const dup = await dd([`if=${src}`, `of=${path.join(share(app), 'copy2.raw')}`, 'bs=1M', 'conv=fsync']);
    const stats2 = (await app.api('GET', '/stats')).body as { uniqueBytes: number };
    opts.note(`duplicate write: ${dup.seconds.toFixed(2)} s; unique bytes grew by ${((stats2.uniqueBytes - stats1.uniqueBytes) / 1e6).toFixed(1)} MB`);
    emit({ figure: 'fuse.write.duplicate', value: round1(dup.mbps), unit: 'MB/s', vs_ceiling: round3(dup.mbps / cw) });
    await stop(app, 'write-duplicate');

    // Sequential read of the stored image, page cache dropped (the store's files too).
    const dropped = await dropCaches();
    if (!dropped) opts.note('could not drop the page cache (not root?): the read may come partly from memory');
    app = await start('store', 'read');
    const read = await dd([`if=${path.join(share(app), 'copy1.raw')}`, 'of=/dev/null', 'bs=1M']);
    emit({ figure: 'fuse.read.sequential', value: round1(read.mbps), unit: 'MB/s', vs_ceiling: round3(read.mbps / cr) });
    await stop(app, 'read');
    // The same with the store's files in the page cache: the appliance's own cost, without the disk.
    app = await start('store', 'read-store-cached');
    const readWarm = await dd([`if=${path.join(share(app), 'copy2.raw')}`, 'of=/dev/null', 'bs=1M']);
    emit({ figure: 'fuse.read.sequential.store_cached', value: round1(readWarm.mbps), unit: 'MB/s', vs_ceiling: round3(readWarm.mbps / cr) });
    await stop(app, 'read-store-cached');

    // Small synchronous writes: 4 KiB per write, each made durable before the next (dd
    // oflag=dsync: the kernel sends an fsync after every write), into a plain directory on the
    // same disk (the baseline) and into the mount. Each costs a commit: what the group
    // commit's single batch saves shows here.
    const smallCount = opts.quick ? 300 : 2000;
    const small = async (out: string) => dd(['if=/dev/urandom', `of=${out}`, 'bs=4k', `count=${smallCount}`, 'oflag=dsync']);
    const smallPlain = await small(path.join(work, 'small-plain.bin'));
    app = await start('store', 'small-fsync');
    const smallMount = await small(path.join(share(app), 'small.bin'));
    await stop(app, 'small-fsync');
    const perSec = (r: { seconds: number }) => smallCount / r.seconds;
    opts.note(`4 KiB write + fsync x ${smallCount}: plain directory ${smallPlain.seconds.toFixed(2)} s, mount ${smallMount.seconds.toFixed(2)} s`);
    emit({ figure: 'fuse.write.small_fsync', value: round1(perSec(smallMount)), unit: 'writes/s', vs_ceiling: round3(perSec(smallMount) / perSec(smallPlain)) });
    emit({ figure: 'fuse.write.small_fsync.plain', value: round1(perSec(smallPlain)), unit: 'writes/s' });

    // qemu-img convert -O vmdk: a plain directory on the same disk, then a fresh store.
    const plain = path.join(work, 'plain');
    await fs.mkdir(plain);
    const convert = async (out: string): Promise<{ convert: number; sync: number }> => {
      await warm();
      await run('sync', []);
      const c = await run('qemu-img', ['convert', '-O', 'vmdk', src, out]);
      const s = await run('sync', []);
      return { convert: c.seconds, sync: s.seconds };
    };
    const tp = await convert(path.join(plain, 'image.vmdk'));
    app = await start('store-qemu', 'qemu-img');
    if ((await app.api('POST', '/shares', { name: 'bench' })).status !== 201) throw new Error('creating the share for qemu-img failed');
    const tm = await convert(path.join(share(app), 'image.vmdk'));
    const vmdkSize = (await fs.stat(path.join(plain, 'image.vmdk'))).size;
    await stop(app, 'qemu-img');
    const plainS = tp.convert + tp.sync;
    const mountS = tm.convert + tm.sync;
    opts.note(
      `qemu-img convert -O vmdk (${(vmdkSize / MiB).toFixed(0)} MiB VMDK): plain directory ${tp.convert.toFixed(2)} s + sync ${tp.sync.toFixed(2)} s; ` +
        `mount ${tm.convert.toFixed(2)} s + sync ${tm.sync.toFixed(2)} s; ratio = plain time / mount time`,
    );
    emit({ figure: 'fuse.qemu_img.ratio', value: round3(plainS / mountS), unit: 'plain time / mount time' });
    emit({ figure: 'fuse.qemu_img.mount_seconds', value: round1(mountS), unit: 's' });
    emit({ figure: 'fuse.qemu_img.plain_seconds', value: round1(plainS), unit: 's' });
  } finally {
    for (const a of apps) await a.stop().catch(() => undefined);
    await fs.rm(work, { recursive: true, force: true });
  }
}
