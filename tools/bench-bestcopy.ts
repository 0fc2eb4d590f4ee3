// npm run bench:bestcopy [-- --quick] [-- --image PATH] [-- --no-repair] [-- --fresh-baseline]
// restore.from_clone.vs_primary: the speed of a restore when the primary is damaged and the
// clone serves the damaged segments, against a plain restore of the same point from a healthy
// primary, measured in the same run on the same data (goal >= 0.8).
//
// The point is the sample VM image vm1-day2.raw (2 GiB, ~480 MiB of data) written into a share
// and snapshotted. The clone is a second store holding the same point, read in-process by
// fingerprint (the SegmentSource a clone appliance or archive gives; over a network each
// damaged segment adds that source's round trip). The damage: one record flipped in every
// container of the primary (bit rot spread over the whole point: ~1 segment per 4 MiB).
// The damaged run is the whole restore a user gets: plan, read, then the repair of the primary
// (batched, synced); each run starts from a fresh copy of the damaged primary, so every run
// meets the same damage (--no-repair: repair off, as measured before repair was batched).
// Runs alternate healthy/damaged, caches dropped before each; the median of each is compared.
// --fresh-baseline: the healthy side too restores from a fresh copy of a healthy store, opened
// before the clock as the damaged side's is (by default it reuses the clone's open store).
// Prints one JSON line per figure, then a table on stderr.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { restorePoint } from '../src/backup/restore.js';
import { Namespace } from '../src/namespace/namespace.js';
import { BestCopy } from '../src/policy/best-copy.js';
import { SegmentStore } from '../src/store/store.js';
import { internalsOf } from '../src/store/internals.js';
import { readLayout } from '../test/helpers/containers.js';

const MiB = 1024 * 1024;
const quick = process.argv.includes('--quick');
const imageArg = process.argv.indexOf('--image');
const image = imageArg > 0 ? process.argv[imageArg + 1] : '/work/vmimages/vm1-day2.raw';
const POINT = '2026-12-05T12-00-00Z';
const RUNS = quick ? 1 : 3;
/** --no-repair: the damaged runs leave the primary damaged (the figure before repair was batched). */
const noRepair = process.argv.includes('--no-repair');
const freshBaseline = process.argv.includes('--fresh-baseline');

function emit(figure: string, value: number, unit: string): void {
  process.stdout.write(JSON.stringify({ figure, value: Math.round(value * 1000) / 1000, unit }) + '\n');
}

/** SHA-256 of a file's first `size` bytes, streamed (the image is 2 GiB). */
async function sha256(file: string, size: number): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { start: 0, end: size - 1, highWaterMark: 4 * MiB })) h.update(chunk as Buffer);
  return h.digest('hex');
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** The image (its first 512 MiB with --quick) into share vm1 as vda.raw, zero blocks skipped. */
async function load(dir: string): Promise<number> {
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {} });
  await ns.shares.create('vm1');
  const size = quick ? Math.min(512 * MiB, fs.statSync(image).size) : fs.statSync(image).size;
  const fd = fs.openSync(image, 'r');
  const fh = await ns.fs.create('/vm1/vda.raw', 0o644);
  const buf = Buffer.alloc(4 * MiB);
  for (let at = 0; at < size; at += buf.length) {
    const n = fs.readSync(fd, buf, 0, Math.min(buf.length, size - at), at);
    const chunk = buf.subarray(0, n);
    if (chunk.every((b) => b === 0)) continue;
    await ns.write(fh, at, Buffer.from(chunk), { owned: true });
    await ns.drain(fh, 128 * MiB);
  }
  await ns.fs.ftruncate(fh, size);
  await ns.fs.fsync(fh);
  await ns.fs.release(fh);
  fs.closeSync(fd);
  const vm = await ns.fs.create('/vm1/vm.json', 0o644);
  await ns.write(vm, 0, Buffer.from('{"name":"vm1"}\n'));
  await ns.fs.release(vm);
  await ns.snapshots.create('vm1', POINT);
  await ns.close();
  await store.close();
  return size;
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-bestcopy-'));
  try {
    const primaryDir = path.join(work, 'primary');
    const cloneDir = path.join(work, 'clone');
    const t0 = performance.now();
    const size = await load(primaryDir);
    process.stderr.write(`loaded ${size / MiB} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    fs.cpSync(primaryDir, cloneDir, { recursive: true });
    const healthyTemplate = path.join(work, 'healthy-template');
    if (freshBaseline) fs.cpSync(primaryDir, healthyTemplate, { recursive: true });
    // The damage: one data record flipped in the middle of every container.
    const ids = fs
      .readdirSync(path.join(primaryDir, 'containers'))
      .flatMap((shard) => fs.readdirSync(path.join(primaryDir, 'containers', shard)).map((f) => parseInt(f, 16)))
      .sort((a, b) => a - b);
    let damaged = 0;
    let records = 0;
    for (const id of ids) {
      const l = readLayout(primaryDir, id);
      records += l.records.length;
      const r = l.records.filter((x) => x.kind === 0)[Math.floor(l.records.length / 2)] ?? l.records.find((x) => x.kind === 0);
      if (!r) continue;
      const fd = fs.openSync(l.file, 'r+');
      const b = Buffer.alloc(1);
      const at = r.offset + 52 + (r.storedLen >> 1);
      fs.readSync(fd, b, 0, 1, at);
      b[0] ^= 0x5a;
      fs.writeSync(fd, b, 0, 1, at);
      fs.closeSync(fd);
      damaged++;
    }
    // Each damaged run gets a fresh copy of the damaged primary (the repair, on as in a real
    // restore, mends it), opened before the clock starts.
    const damagedDir = path.join(work, 'damaged-template');
    fs.renameSync(primaryDir, damagedDir);
    const clone = await SegmentStore.open(cloneDir, { mustExist: true });
    let requests = 0;
    let repairBatches = 0;
    const healthy: number[] = [];
    const rescued: number[] = [];
    /** CPU seconds of this process (all its threads: codec workers, libuv) per run: steadier than time under load. */
    const healthyCpu: number[] = [];
    const rescuedCpu: number[] = [];
    /** Each damaged run's phases: plan (the reference check), the restore's read, finish (repair). */
    const phases: string[] = [];
    let served = 0;
    const origin = await sha256(image, size);
    // The healthy baseline: the same point restored plainly from a healthy store of it (the
    // clone's: the same bytes, containers and layout the primary had before the damage).
    const cloneNs = await Namespace.open(clone, { log: () => {} });
    for (let i = 0; i < RUNS; i++) {
      clone.reader.clearCaches();
      internalsOf(clone).cache.clear();
      let to = path.join(work, `healthy-${i}`);
      let base: { store: SegmentStore; ns: Namespace } | undefined;
      if (freshBaseline) {
        const dir = path.join(work, 'healthy-store');
        fs.rmSync(dir, { recursive: true, force: true });
        fs.cpSync(healthyTemplate, dir, { recursive: true });
        const store = await SegmentStore.open(dir, { mustExist: true, log: () => {} });
        base = { store, ns: await Namespace.open(store, { log: () => {} }) };
      }
      let t = performance.now();
      let cpu = process.cpuUsage();
      await restorePoint(base?.ns ?? cloneNs, 'vm1', POINT, ['vda'], to, { format: 'raw' });
      healthy.push(performance.now() - t);
      healthyCpu.push(cpuSeconds(cpu));
      if (base) {
        await base.ns.close();
        await base.store.close();
      }
      if ((await sha256(path.join(to, 'vda.raw'), size)) !== origin) throw new Error('the healthy restore differs from the image');
      fs.rmSync(to, { recursive: true });
      fs.rmSync(primaryDir, { recursive: true, force: true });
      fs.cpSync(damagedDir, primaryDir, { recursive: true });
      const store = await SegmentStore.open(primaryDir, { mustExist: true, log: () => {} });
      const ns = await Namespace.open(store, { log: () => {} });
      const repairSegments = store.repairSegments.bind(store);
      store.repairSegments = (items) => (repairBatches++, repairSegments(items));
      const best = new BestCopy(
        ns,
        {
          copiesOf: () => [{ destination: 'site-b', kind: 'appliance' }],
          openSource: async () => ({
            name: 'clone site-b',
            fetch: (fp) => (requests++, clone.segment(fp)),
            fetchMany: (fps) => (requests++, Promise.all(fps.map((fp) => clone.segment(fp)))),
            close: async () => {},
          }),
        },
        { repair: !noRepair },
      );
      clone.reader.clearCaches();
      internalsOf(clone).cache.clear();
      to = path.join(work, `damaged-${i}`);
      t = performance.now();
      cpu = process.cpuUsage();
      const plan = await best.plan('vm1', 'vm1', POINT, () => {});
      const tPlan = performance.now();
      await restorePoint(ns, 'vm1', POINT, ['vda'], to, { format: 'raw', rescue: plan.rescue });
      const tRead = performance.now();
      await plan.finish(true);
      rescued.push(performance.now() - t);
      rescuedCpu.push(cpuSeconds(cpu));
      phases.push(`plan ${((tPlan - t) / 1000).toFixed(2)} + read ${((tRead - tPlan) / 1000).toFixed(2)} + finish ${((performance.now() - tRead) / 1000).toFixed(2)} s`);
      served = plan.rescue.damage.length;
      if ((await sha256(path.join(to, 'vda.raw'), size)) !== origin) throw new Error('the rescued restore differs from the image');
      fs.rmSync(to, { recursive: true });
      await ns.close();
      await store.close();
    }
    const h = median(healthy);
    const r = median(rescued);
    emit('restore.from_clone.vs_primary', h / r, 'x');
    emit('restore.from_clone.damaged_segments', served, 'segments');
    process.stderr.write(
      `image ${image} (${size / MiB} MiB logical), ${ids.length} containers, ${records} records, ${damaged} damaged (${served} served by the clone)\n` +
        `healthy primary restore: ${healthy.map((x) => (x / 1000).toFixed(2)).join(', ')} s (median ${(h / 1000).toFixed(2)})\n` +
        `fetch requests to the clone: ${requests / RUNS} per run; synced repair batches: ${repairBatches / RUNS} per run${noRepair ? ' (repair off)' : ''}\n` +
        `damaged primary + clone: ${rescued.map((x) => (x / 1000).toFixed(2)).join(', ')} s (median ${(r / 1000).toFixed(2)})\n` +
        `damaged runs' phases: ${phases.join('; ')}\n` +
        `CPU s (all threads): healthy ${healthyCpu.map((x) => x.toFixed(2)).join(', ')}; damaged ${rescuedCpu.map((x) => x.toFixed(2)).join(', ')}\n` +
        `healthy baseline: ${freshBaseline ? 'a fresh copy of a healthy store per run' : "the clone's store, reused"}\n` +
        `load average: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}\n`,
    );
    await cloneNs.close();
    await clone.close();
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

await main();
