// The numbers an operator reads (stats, the GC report, the verify report), each checked against
// the same figure measured from the outside of a real store: container files on disk, their
// record tables, the files' trees. Their definitions are the descriptions in
// src/control/schemas.ts; this test holds the code to them.

import fs from 'node:fs';
import t from 'tap';
import { ApplianceServices } from '../src/appliance-services.js';
import type { JobContext } from '../src/control/services.js';
import { runGc } from '../src/namespace/maintenance.js';
import { Namespace } from '../src/namespace/namespace.js';
import { fpHex } from '../src/store/codec/fingerprint.js';
import { SegmentStore } from '../src/store/store.js';
import { allRecords, containerPath, listContainers, RECORD_HEADER_BYTES } from './helpers/containers.js';
import { generate, Rng } from './helpers/data.js';
import { writeFile } from './helpers/ns.js';
import { dataUses, nodeFps } from './helpers/store-probe.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

const job: JobContext = { signal: new AbortController().signal, progress: () => {}, log: () => {} };

async function open(t: TestT, dir: string) {
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {} });
  const services = new ApplianceServices(ns);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await ns.close();
    await store.close();
  };
  t.teardown(close);
  return { store, ns, services, close };
}

/** Sum of the sizes of the container files in a data directory. */
function containerBytes(dir: string): number {
  return listContainers(dir).reduce((s, id) => s + fs.statSync(containerPath(dir, id)).size, 0);
}

/** Distinct stored segments a file's tree reaches (data and nodes, zero runs excluded). */
async function reached(store: SegmentStore, ns: Namespace, paths: string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const p of paths) {
    const r = await ns.ctx.resolve(p);
    const v = r.inode.version!;
    for (const k of (await dataUses(store, v)).keys()) out.add(k);
    for (const k of await nodeFps(store, v)) out.add(k);
  }
  return out;
}

// A share with a big file and a small one written together (they share containers), a
// snapshot, and a third file in containers of its own; then the small file and the third are
// deleted: one container is left mostly live with dead records in it, others wholly dead.
async function scene(t: TestT) {
  const dir = tmpDir(t);
  const rng = new Rng(10);
  let s = await open(t, dir);
  await s.services.createShare('vms');
  await writeFile(s.ns, '/vms/big.img', Buffer.concat([generate(rng, 'random', 3 * MiB), Buffer.alloc(2 * MiB), generate(rng, 'text', MiB)]));
  await writeFile(s.ns, '/vms/small.img', generate(rng, 'random', 256 * 1024));
  await s.services.createSnapshot('vms', 'n1');
  await writeFile(s.ns, '/vms/copy.img', Buffer.concat([generate(rng, 'text', MiB), generate(rng, 'random', 9 * MiB)]));
  // Sealed and reopened: every container is on disk with its table, for the outside view.
  await s.close();
  s = await open(t, dir);
  return { dir, ...s };
}

t.test('stats: each figure is what its definition says, measured from the outside', async (t) => {
  const { dir, store, ns, services } = await scene(t);
  const st = await services.stats();
  const records = allRecords(dir);
  const distinct = new Map(records.map((r) => [fpHex(r.fp), r]));
  let logical = 0;
  for (const p of ['/vms/big.img', '/vms/small.img', '/vms/copy.img', '/vms/.snapshots/n1/big.img', '/vms/.snapshots/n1/small.img']) {
    logical += (await ns.fs.getattr(p)).size;
  }
  t.equal(st.logicalBytes, logical, 'logical: the sizes of every file in the share and the snapshot');
  t.equal(st.storedBytes, containerBytes(dir), 'stored: the container files on disk');
  t.equal(st.segments, distinct.size, 'segments: the distinct segments in the containers');
  t.equal(st.uniqueBytes, [...distinct.values()].reduce((s, r) => s + r.rawLen, 0), 'unique: their plain size');
  t.equal(st.containers, listContainers(dir).length, 'containers: the sealed container files');
  t.equal(st.dedupRatio, logical / st.uniqueBytes, 'dedup = logical / unique');
  t.equal(st.compressionRatio, st.uniqueBytes / st.storedBytes, 'compression = unique / stored');
  t.equal(st.totalRatio, logical / st.storedBytes, 'total = logical / stored');
  t.ok(Math.abs(st.dedupRatio * st.compressionRatio - st.totalRatio) < 1e-9, 'dedup x compression = total');
  t.equal(st.reclaimableBytes, null, 'reclaimable is unknown before any GC');
  t.equal(st.deadBytesKept, null);
  t.equal(st.lastGcAt, null);
  t.ok(store, 'store open');
});

t.test('gc: reclaimed is what left the disk; stats then reclaimable matches what the next gc frees', async (t) => {
  const { dir, ns, services } = await scene(t);
  await ns.fs.unlink('/vms/copy.img');
  await ns.fs.unlink('/vms/small.img');
  await ns.snapshots.remove('vms', 'n1');
  const sizes = new Map(listContainers(dir).map((id) => [id, fs.statSync(containerPath(dir, id)).size]));

  // A dry run says what a real run will free, and frees nothing.
  const plan = await runGc(ns, { dryRun: true });
  t.equal(plan.reclaimedBytes, 0, 'a dry run frees nothing');
  t.ok(plan.reclaimableBytes > 0, `a dry run finds ${plan.reclaimableBytes} bytes to free`);
  t.equal((await services.stats()).reclaimableBytes, plan.reclaimableBytes, 'stats shows what the dry run found');

  const g = await services.gc(job);
  const gone = [...sizes.keys()].filter((id) => !fs.existsSync(containerPath(dir, id)));
  const removedBytes = gone.reduce((s, id) => s + sizes.get(id)!, 0);
  t.ok(gone.length > 0, `${gone.length} containers removed`);
  t.equal(g.copiedBytes, 0, 'nothing needed copying forward in this scene');
  t.equal(g.reclaimedBytes, removedBytes, 'reclaimed: the bytes of the container files removed');
  t.equal(g.reclaimedBytes, plan.reclaimableBytes, 'the dry run said so beforehand');
  t.ok(g.deadBytesKept > 0, `${g.deadBytesKept} dead bytes kept in a mostly live container`);
  t.ok(g.deadBytes >= g.deadBytesKept + g.reclaimedBytes - removedBytes, 'dead bytes found include the kept ones');

  const after = await services.stats();
  t.equal(after.reclaimableBytes, 0, 'right after a GC nothing more is reclaimable');
  t.equal(after.deadBytesKept, g.deadBytesKept, 'stats names the dead bytes left, apart');
  t.ok(after.lastGcAt !== null && Date.parse(after.lastGcAt) <= Date.now());

  // Again: nothing changed, so the next GC frees exactly what stats said (0), however often.
  for (let i = 0; i < 2; i++) {
    const again = await services.gc(job);
    t.equal(again.reclaimedBytes, 0, 'the next gc frees nothing');
    t.equal(again.deadBytesKept, g.deadBytesKept, 'and keeps the same dead bytes');
    t.equal((await services.stats()).reclaimableBytes, again.reclaimedBytes, 'stats said as much');
  }
});

t.test('verify: segments, containers and bytes read mean what they say', async (t) => {
  const { dir, store, ns, services } = await scene(t);
  const records = allRecords(dir);
  const where = new Map(records.map((r) => [fpHex(r.fp), r]));
  const files = ['/vms/big.img', '/vms/small.img', '/vms/copy.img'];
  const share = await reached(store, ns, files);
  const holding = new Set([...share].map((k) => where.get(k)!.cid));
  const recordBytes = [...share].reduce((s, k) => s + RECORD_HEADER_BYTES + where.get(k)!.storedLen, 0);

  const quick = await services.verify(job, { share: 'vms' });
  t.same(quick.problems, []);
  t.equal(quick.segmentsChecked, share.size, 'quick share verify: the distinct segments its files reach');
  t.equal(quick.referencedSegments, share.size);
  t.equal(quick.containers, holding.size, 'in the containers that hold them');
  t.equal(quick.bytesRead, 0, 'a quick check of a share reads no container bytes');
  t.equal(quick.full, false);

  const full = await services.verify(job, { share: 'vms', full: true });
  t.same(full.problems, []);
  t.equal(full.segmentsChecked, share.size);
  t.equal(full.containers, holding.size);
  t.equal(full.bytesRead, recordBytes, 'a full share verify reads the records of those segments');
  t.equal(full.full, true);

  const st = await services.stats();
  const whole = await services.verify(job, { full: true });
  t.same(whole.problems, []);
  t.equal(whole.segmentsChecked, st.segments, 'a full store verify checks every segment stats counts, once');
  t.equal(whole.segmentsChecked, records.length, 'which is every record in the containers');
  t.equal(whole.containers, st.containers, 'in every container');
  t.equal(whole.bytesRead, containerBytes(dir), 'reading each container file once');
  const all = await reached(store, ns, [...files, '/vms/.snapshots/n1/big.img', '/vms/.snapshots/n1/small.img']);
  t.equal(whole.referencedSegments, all.size, 'and every segment a file reaches is found');
});
