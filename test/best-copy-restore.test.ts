// Restore from the best available copy (policy/best-copy.ts) on real stores: the primary's
// container bytes are flipped as bit rot would; the "clone" is a second store holding the same
// point (what a clone appliance or archive serves by fingerprint through a SegmentSource; the
// clone developer's real sources plug into the same CopyCatalog). The restore reads the damaged
// segments from the clone, is identical, says so in its log, and repairs the primary.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { isVmvaultError, type VmvaultError } from '../src/errors.js';
import { restorePoint } from '../src/backup/restore.js';
import { runVerify } from '../src/namespace/maintenance.js';
import { Namespace } from '../src/namespace/namespace.js';
import { BestCopy, type CopyCatalog, type PointCopy } from '../src/policy/best-copy.js';
import type { SegmentSource } from '../src/policy/segment-source.js';
import { SegmentStore } from '../src/store/store.js';
import { ApplianceServices } from '../src/appliance-services.js';
import { allRecords, containerPath, flipByte, RECORD_HEADER_BYTES } from './helpers/containers.js';
import { generate, Rng } from './helpers/data.js';
import { rejection } from './helpers/store-probe.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

t.setTimeout(900_000);

const MiB = 1024 * 1024;
const POINT = '2026-12-05T12-00-00Z';

function disk(): Buffer {
  const rng = new Rng(77);
  const b = Buffer.alloc(16 * MiB);
  generate(rng, 'random', 7 * MiB).copy(b, 0);
  generate(rng, 'text', 3 * MiB).copy(b, 10 * MiB);
  return b;
}
const vda = disk();

/** A closed primary data directory holding share db01 with vda.raw, vm.json and the point. */
async function buildTemplate(dir: string): Promise<void> {
  const store = await SegmentStore.open(dir, { workers: 1 });
  const ns = await Namespace.open(store, { log: () => {} });
  await ns.shares.create('db01');
  for (const [name, data] of [['vda.raw', vda], ['vm.json', Buffer.from('{"name":"db01"}\n')]] as const) {
    const fh = await ns.fs.create(`/db01/${name}`, 0o644);
    for (let at = 0; at < data.length; at += MiB) await ns.write(fh, at, data.subarray(at, at + MiB));
    await ns.fs.release(fh);
  }
  await ns.snapshots.create('db01', POINT);
  await ns.close();
  await store.close();
}

const template = tmpDir(t);
await buildTemplate(template);

interface Rig {
  dir: string;
  ns: Namespace;
  store: SegmentStore;
  clone: SegmentStore;
  opened: string[];
  /** Requests the clone's source was asked: single fetches, and batches with their sizes. */
  asked: { fetch: number; batches: number[] };
}

/** A private primary (open, through the namespace) and its clone (a store of the same point). */
async function rig(t: TestT, cloneHolds = true): Promise<Rig> {
  const dir = tmpDir(t);
  const primary = path.join(dir, 'primary');
  const cloneDir = path.join(dir, 'clone');
  fs.cpSync(template, primary, { recursive: true });
  if (cloneHolds) fs.cpSync(template, cloneDir, { recursive: true });
  const store = await SegmentStore.open(primary, { workers: 1, mustExist: true, log: () => {} });
  const ns = await Namespace.open(store, { log: () => {} });
  const clone = await SegmentStore.open(cloneDir, { workers: 1 });
  t.teardown(async () => {
    await ns.close();
    await store.close();
    await clone.close();
  });
  return { dir, ns, store, clone, opened: [], asked: { fetch: 0, batches: [] } };
}

/** Copies of the point: the clone site-b (our second store) and a DR copy that must not be needed. */
function catalog(r: Rig): CopyCatalog {
  const copies: PointCopy[] = [
    { destination: 'dr-1', kind: 'dr', verifiedAt: '2026-12-05T13:00:00Z' },
    { destination: 'site-b', kind: 'appliance', verifiedAt: '2026-12-05T12:30:00Z' },
  ];
  return {
    copiesOf: (vm, point) => (vm === 'db01' && point === POINT ? copies : []),
    openSource: async (destination): Promise<SegmentSource> => {
      r.opened.push(destination);
      if (destination === 'dr-1') throw new Error('dr-1 is offline');
      return {
        name: `clone ${destination}`,
        fetch: (fp) => (r.asked.fetch++, r.clone.segment(fp)),
        fetchMany: async (fps) => (r.asked.batches.push(fps.length), Promise.all(fps.map((fp) => r.clone.segment(fp)))),
        close: async () => {},
      };
    },
  };
}

/** Flips a payload byte in `n` data records of vda.raw, spread over its containers. */
function damage(r: Rig, n: number) {
  const recs = allRecords(path.join(r.dir, 'primary')).filter((x) => x.kind === 0 && x.rawLen > 2048);
  const picks = Array.from({ length: n }, (_, i) => recs[Math.floor(((i + 0.5) * recs.length) / n)]);
  for (const x of picks) flipByte(containerPath(path.join(r.dir, 'primary'), x.cid), x.offset + RECORD_HEADER_BYTES + (x.storedLen >> 1));
  return picks;
}

t.test('damage in the primary: the restore reads those segments from the clone, identical, logged, then repaired', async (t) => {
  const r = await rig(t);
  const picks = damage(r, 3);
  t.ok(new Set(picks.map((p) => p.cid)).size >= 2, 'the damage spans containers');
  const log: string[] = [];
  const best = new BestCopy(r.ns, catalog(r), { precheck: true });
  const plan = await best.plan('db01', 'db01', POINT, (l) => log.push(l));
  t.match(log[0], /restoring db01 .* from the primary; a damaged segment met on the way is read from clone site-b, then DR copy dr-1/, 'the choice and its order are logged');
  const to = path.join(r.dir, 'out');
  const files = await restorePoint(r.ns, 'db01', POINT, ['vda'], to, { format: 'raw', rescue: plan.rescue });
  await plan.finish(true);
  t.same(files.map((f) => path.basename(f)), ['vda.raw', 'vm.json']);
  t.ok(fs.readFileSync(path.join(to, 'vda.raw')).equals(vda), 'the restored disk is identical');
  for (const p of picks) {
    const hex = p.fp.toString('hex').slice(0, 16);
    t.ok(
      log.some((l) => l === `primary segment ${hex}… in container ${p.cid.toString(16).padStart(8, '0')} failed verification; read from clone site-b`),
      `the log names segment ${hex} and the copy that served it`,
    );
    t.ok(log.some((l) => l.startsWith(`repaired primary segment ${hex}… from clone site-b`)), `and its repair`);
  }
  t.ok(log.some((l) => l.includes('3 segment(s) from other copies (3 from clone site-b)')), 'the summary line');
  t.ok(log.includes(`check of ${POINT} on the primary: its references are all present`), 'the optional reference check, run beside the read, is logged by finish');
  t.same(r.opened, ['site-b'], 'the DR copy was never opened: the clone had everything');
  // After the repair the primary alone restores the point, and verify finds nothing.
  const again = path.join(r.dir, 'again');
  await restorePoint(r.ns, 'db01', POINT, ['vda'], again, { format: 'raw' });
  t.ok(fs.readFileSync(path.join(again, 'vda.raw')).equals(vda), 'a plain restore after repair is identical');
  const v = await runVerify(r.ns, { full: true });
  t.same(v.problems, [], 'verify (full) is clean after the repair');
});

t.test('many damaged segments in one read: one request to the clone, one synced repair batch', async (t) => {
  const r = await rig(t);
  // 12 neighbouring data records of one container: the same read batch meets them all.
  const recs = allRecords(path.join(r.dir, 'primary')).filter((x) => x.kind === 0);
  const cid = recs[Math.floor(recs.length / 2)].cid;
  const inOne = recs.filter((x) => x.cid === cid);
  const picks = inOne.slice(Math.floor(inOne.length / 2) - 6, Math.floor(inOne.length / 2) + 6);
  t.equal(picks.length, 12);
  for (const x of picks) flipByte(containerPath(path.join(r.dir, 'primary'), x.cid), x.offset + RECORD_HEADER_BYTES + (x.storedLen >> 1));
  let repairCalls = 0;
  const repairSegments = r.store.repairSegments.bind(r.store);
  r.store.repairSegments = (items) => (repairCalls++, repairSegments(items));
  const log: string[] = [];
  const plan = await new BestCopy(r.ns, catalog(r)).plan('db01', 'db01', POINT, (l) => log.push(l));
  const to = path.join(r.dir, 'out');
  await restorePoint(r.ns, 'db01', POINT, ['vda'], to, { format: 'raw', rescue: plan.rescue });
  await plan.finish(true);
  t.ok(fs.readFileSync(path.join(to, 'vda.raw')).equals(vda), 'identical');
  t.equal(plan.rescue.damage.length, 12, 'all 12 served by the clone');
  t.equal(r.asked.fetch, 0, 'never one segment at a time');
  t.equal(r.asked.batches.length, 1, `one batch request (${r.asked.batches.join(', ')})`);
  t.equal(r.asked.batches[0], 12, 'holding all 12');
  t.equal(repairCalls, 1, 'the primary repaired in one synced batch');
  t.ok(log.some((l) => l.startsWith('repair of the primary: 12 segment(s) repaired, 0 already healthy, 0 not repaired')), 'and logged');
  t.same((await runVerify(r.ns, { full: true })).problems, [], 'verify (full) is clean after the repair');
});

t.test('a healthy primary: no copy is contacted and the log says the primary was used', async (t) => {
  const r = await rig(t);
  const log: string[] = [];
  const plan = await new BestCopy(r.ns, catalog(r)).plan('db01', 'db01', POINT, (l) => log.push(l));
  const to = path.join(r.dir, 'out');
  await restorePoint(r.ns, 'db01', POINT, ['vda'], to, { format: 'raw', rescue: plan.rescue });
  await plan.finish(true);
  t.ok(fs.readFileSync(path.join(to, 'vda.raw')).equals(vda), 'identical');
  t.same(r.opened, [], 'no copy was opened');
  t.same(log, [`restoring db01 ${POINT} from the primary; a damaged segment met on the way is read from clone site-b, then DR copy dr-1`, `restored db01 ${POINT} from the primary alone: every segment read verified against its fingerprint`], 'two lines: the choice, and that the read verified it');
});

t.test('no copy holds the damaged segment: the restore fails naming it and every source, and leaves nothing', async (t) => {
  const r = await rig(t, false); // the clone store is empty
  const [p] = damage(r, 1);
  const before = fs.readFileSync(containerPath(path.join(r.dir, 'primary'), p.cid));
  const log: string[] = [];
  const plan = await new BestCopy(r.ns, catalog(r)).plan('db01', 'db01', POINT, (l) => log.push(l));
  const to = path.join(r.dir, 'out');
  const err = (await rejection(restorePoint(r.ns, 'db01', POINT, ['vda'], to, { format: 'raw', rescue: plan.rescue }))) as VmvaultError;
  await plan.finish(false);
  t.ok(isVmvaultError(err, 'CORRUPT_SEGMENT'), `fails with CORRUPT_SEGMENT: ${err?.message}`);
  t.match(err.message, p.fp.toString('hex').slice(0, 16), 'naming the segment');
  t.match(err.message, 'clone site-b does not hold it', 'and the clone');
  t.match(err.message, 'DR copy dr-1 could not be read (dr-1 is offline)', 'and the DR copy');
  t.same(fs.existsSync(to) ? fs.readdirSync(to) : [], [], 'no partial file is left');
  t.ok(fs.readFileSync(containerPath(path.join(r.dir, 'primary'), p.cid)).equals(before), 'the primary is untouched');
});

t.test('verify --repair: damage verify finds is repaired from the copies of the points that reach it', async (t) => {
  const r = await rig(t);
  damage(r, 2);
  const found = await runVerify(r.ns, { full: true });
  const bad = found.problems.filter((p) => p.kind === 'corrupt-segment' && p.root);
  t.ok(bad.length >= 2, `verify names the damage under its point (${bad.map((p) => p.root).join('; ')})`);
  const log: string[] = [];
  const sum = await new BestCopy(r.ns, catalog(r)).repairProblems(found.problems, (share, snap) => (share === 'db01' ? { vm: 'db01', point: snap } : undefined), (l) => log.push(l));
  t.equal(sum.repaired, 2, 'both repaired');
  t.same(sum.failed, [], 'none left');
  t.same((await runVerify(r.ns, { full: true })).problems, [], 'verify is clean afterwards');
});

t.test('the verify job with repair (control plane services): repaired, logged, and the result is the second verify', async (t) => {
  const r = await rig(t);
  damage(r, 2);
  const svc = new ApplianceServices(r.ns);
  const best = new BestCopy(r.ns, catalog(r));
  const ctx = (log: string[]) => ({ signal: new AbortController().signal, progress: () => {}, log: (m: string) => void log.push(m) });
  const without: string[] = [];
  const first = await svc.verify(ctx(without), { full: true, repair: true });
  t.ok(first.problems.length > 0, 'without copies wired the damage stays in the result');
  t.ok(without.some((l) => l.includes('no clone or DR copies are known')), 'and the log says why nothing was repaired');
  svc.repairDamage = (problems, log) => best.repairProblems(problems, (share, snap) => (share === 'db01' ? { vm: 'db01', point: snap } : undefined), log);
  const log: string[] = [];
  const res = await svc.verify(ctx(log), { full: true, repair: true });
  t.same(res.problems, [], 'the result (a second verify) is clean');
  t.ok(log.some((l) => l.startsWith('repair: 2 segment(s) repaired from other copies, 0 not')), `logged: ${log.join(' | ')}`);
});
