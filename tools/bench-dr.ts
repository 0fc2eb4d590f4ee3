// npm run bench:dr [-- --images DIR] [-- --dir DIR]   (node dist/tools/bench-dr.js)
// The DR copy (issue 14) of the sample VM image set: vm1-day1 and vm2-day1 ingested through the
// namespace (as cp --sparse over the mount sends them) and snapshotted, a first DR copy; then
// vm1-day2 over vm1 and a snapshot, a second (incremental) copy; then a restore from the copy.
// Baseline in the same run: a plain copy of the data directory's store files (containers and
// the LevelDB files: read, write, fsync each, as an offline copy would), on the same disk.
// Then `--points N` (default 10) small checkpoints, as a policy with frequent points makes: a
// 1 MiB file rewritten in vm2 and a snapshot, then a DR copy, each; per checkpoint the bytes
// written (all, and the database's part) and the time. The database's part is the figure the
// append-only log (format 2) changes: version 1 rewrote every record at each copy.
// One JSON line per figure on stdout ({"figure", "value", "unit"}); a summary on stderr.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Namespace } from '../src/namespace/namespace.js';
import { drCopy } from '../src/policy/dr-copy.js';
import { readManifest } from '../src/policy/dr-format.js';
import { drRestore } from '../src/policy/dr-restore.js';
import { SegmentStore, writeDatabase } from '../src/store/store.js';
import { copySparse } from './bench/vmset-namespace.js';

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const opt = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const images = opt('--images') ?? '/work/vmimages';

function emit(figure: string, value: number, unit: string): void {
  process.stdout.write(JSON.stringify({ figure, value: Math.round(value * 1000) / 1000, unit }) + '\n');
}
const log = (s: string) => process.stderr.write(s + '\n');

function treeBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) n += treeBytes(p);
    else if (e.isFile()) n += fs.statSync(p).size;
  }
  return n;
}

/** The baseline: every file under `from` copied to `to` with read, write and fsync. */
function plainCopy(from: string, to: string): number {
  let n = 0;
  fs.mkdirSync(to, { recursive: true });
  const buf = Buffer.allocUnsafe(MiB);
  for (const e of fs.readdirSync(from, { withFileTypes: true })) {
    const s = path.join(from, e.name);
    const d = path.join(to, e.name);
    if (e.isDirectory()) n += plainCopy(s, d);
    else if (e.isFile() && e.name !== 'LOCK') {
      const fi = fs.openSync(s, 'r');
      const fo = fs.openSync(d, 'w');
      for (let off = 0; ; ) {
        const r = fs.readSync(fi, buf, 0, buf.length, off);
        if (r === 0) break;
        fs.writeSync(fo, buf, 0, r, off);
        off += r;
        n += r;
      }
      fs.fsyncSync(fo);
      fs.closeSync(fo);
      fs.closeSync(fi);
    }
  }
  return n;
}

async function main(): Promise<void> {
  const root = opt('--dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-bench-dr-'));
  const data = path.join(root, 'data');
  const dest = path.join(root, 'dr');
  const store = await SegmentStore.open(data);
  const ns = await Namespace.open(store, { log: () => {} });
  try {
    const t0 = performance.now();
    for (const vm of ['vm1', 'vm2']) {
      await ns.shares.create(vm);
      await copySparse(ns, path.join(images, `${vm}-day1.raw`), `/${vm}/vda.raw`);
      await ns.snapshots.create(vm, 'day1');
    }
    await store.sync();
    log(`day 1 ingested in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const storeFiles = () => treeBytes(path.join(data, 'containers')) + treeBytes(path.join(data, 'db'));
    const store1 = storeFiles();

    // Baseline: a plain copy of the store's files (containers and db), same disk, same run.
    const tp = performance.now();
    const plainBytes = plainCopy(path.join(data, 'containers'), path.join(root, 'plain', 'containers')) + plainCopy(path.join(data, 'db'), path.join(root, 'plain', 'db'));
    const plainS = (performance.now() - tp) / 1000;
    fs.rmSync(path.join(root, 'plain'), { recursive: true, force: true });

    const t1 = performance.now();
    const c1 = await drCopy({ dataDir: data, to: dest, version: 'bench', snapshot: () => store.snapshotForCopy() });
    const c1s = (performance.now() - t1) / 1000;

    await copySparse(ns, path.join(images, 'vm1-day2.raw'), '/vm1/vda.raw');
    await ns.snapshots.create('vm1', 'day2');
    await store.sync();
    const store2 = storeFiles();
    // Where the second copy's time goes (stderr only): until the first container, the containers,
    // the database records, the manifest and prune.
    const phases: Array<[string, number]> = [];
    const t2 = performance.now();
    const c2 = await drCopy({
      dataDir: data,
      to: dest,
      version: 'bench',
      snapshot: async () => {
        const s = await store.snapshotForCopy();
        phases.push(['state files + snapshot', performance.now()]);
        return s;
      },
      progress: (_d, _t, phase) => {
        if (phases.at(-1)?.[0] !== phase) phases.push([phase, performance.now()]);
      },
    });
    phases.push(['end (manifest, prune)', performance.now()]);
    const c2s = (performance.now() - t2) / 1000;

    // Many small checkpoints.
    const points = Number(opt('--points') ?? 10);
    let smallBytes = 0;
    let smallDb = 0;
    let smallS = 0;
    for (let i = 0; i < points; i++) {
      const fh = await (i === 0 ? ns.fs.create('/vm2/small.bin', 0o644) : ns.fs.open('/vm2/small.bin', 2));
      const b = Buffer.alloc(MiB);
      for (let j = 0; j < b.length; j += 8) b.writeDoubleLE(Math.random(), j);
      await ns.write(fh, 0, b);
      await ns.fs.release(fh);
      await ns.snapshots.create('vm2', `small${i}`);
      await store.sync();
      const ts = performance.now();
      const c = await drCopy({ dataDir: data, to: dest, version: 'bench', snapshot: () => store.snapshotForCopy() });
      smallS += (performance.now() - ts) / 1000;
      smallBytes += c.bytesWritten;
      // Version 1 has no databaseBytes: its records file is the whole database part.
      smallDb += (c as { databaseBytes?: number }).databaseBytes ?? (await readManifest(dest)).database.size;
    }
    const mLast = await readManifest(dest);

    const t3 = performance.now();
    const r = await drRestore({ from: dest, data: path.join(root, 'restored'), writeDatabase });
    const rs = (performance.now() - t3) / 1000;

    log(`store after day 1: ${(store1 / MiB).toFixed(1)} MiB (containers + db); plain copy ${(plainBytes / MiB).toFixed(1)} MiB in ${plainS.toFixed(2)} s`);
    log(`DR copy 1: ${(c1.bytesWritten / MiB).toFixed(1)} MiB written, ${c1.containers} containers, ${c1.databaseRecords} records, ${c1s.toFixed(2)} s`);
    log(`store after day 2: ${(store2 / MiB).toFixed(1)} MiB (+${((store2 - store1) / MiB).toFixed(1)} MiB)`);
    log(`DR copy 2: ${(c2.bytesWritten / MiB).toFixed(1)} MiB written (${c2.containersCopied} containers copied, ${c2.containersReused} reused), ${c2s.toFixed(2)} s`);
    log(`  phases: ${phases.map(([p, at]) => `${p} at ${((at - t2) / 1000).toFixed(2)} s`).join('; ')}`);
    log(`${points} small checkpoints: ${(smallBytes / points / MiB).toFixed(2)} MiB written per copy (database ${(smallDb / points / MiB).toFixed(3)} MiB), ${(smallS / points).toFixed(2)} s per copy; database entry now ${(mLast.database.size / MiB).toFixed(1)} MiB (format ${mLast.version})`);
    log(`restore: ${(r.bytes / MiB).toFixed(1)} MiB in ${rs.toFixed(2)} s (verify included)`);
    emit('dr.copy1.bytes_vs_store', c1.bytesWritten / store1, 'ratio');
    emit('dr.copy1.time_vs_plain_copy', c1s / plainS, 'ratio');
    emit('dr.copy1.seconds', c1s, 's');
    emit('dr.copy2.bytes_vs_store_growth', c2.bytesWritten / Math.max(1, store2 - store1), 'ratio');
    emit('dr.copy2.bytes_vs_copy1', c2.bytesWritten / c1.bytesWritten, 'ratio');
    emit('dr.copy2.time_vs_copy1', c2s / c1s, 'ratio');
    emit('dr.restore.time_vs_plain_copy', rs / plainS, 'ratio');
    emit('dr.small.bytes_per_checkpoint', smallBytes / points, 'B');
    emit('dr.small.db_bytes_per_checkpoint', smallDb / points, 'B');
    emit('dr.small.seconds_per_checkpoint', smallS / points, 's');
  } finally {
    await ns.close();
    await store.close();
    if (opt('--dir') === undefined) fs.rmSync(root, { recursive: true, force: true });
  }
}

await main();
