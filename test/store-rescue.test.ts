// Reading past damage with another copy (store/repair/read-rescue.ts) and repairing the
// primary from it (store/repair/segment-repair.ts), on real stores on disk: the primary's
// container bytes are flipped as bit rot would, the other copy is a second store holding the
// same segments (what a clone appliance or archive serves by fingerprint).

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isVmvaultError, type VmvaultError } from '../src/errors.js';
import { SegmentKind } from '../src/store/container/format.js';
import { fpHex } from '../src/store/codec/fingerprint.js';
import { ReadRescue, SegmentStore, type FileVersion, type SegmentFetcher } from '../src/store/store.js';
import { internalsOf } from '../src/store/internals.js';
import { type FaultOp, setFaultPlan } from '../src/store/container/file-io.js';
import { allRecords, containerPath, flipByte, listContainers, RECORD_HEADER_BYTES, type TableRecord } from './helpers/containers.js';
import { generate, Rng } from './helpers/data.js';
import { runAndKill } from './helpers/kill-child.js';
import { dataUses, nodeFps, rejection } from './helpers/store-probe.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

// Several stores are opened, copied and closed per test: slow on a loaded machine.
t.setTimeout(900_000);

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'repair-child.js');

interface File {
  version: FileVersion;
  content: Buffer;
  data: Set<string>;
  nodes: Set<string>;
}

/** A closed store with a compressible and a random file over several containers. */
async function buildTemplate(dir: string): Promise<File[]> {
  const rng = new Rng(1414);
  const store = await SegmentStore.open(dir, { workers: 1 });
  const files: File[] = [];
  for (const content of [generate(rng, 'text', 1_500_000), generate(rng, 'random', 7_000_000)]) {
    const { version } = await store.writeBuffer(content);
    files.push({ version, content, data: new Set((await dataUses(store, version)).keys()), nodes: await nodeFps(store, version) });
  }
  await store.commit();
  await store.close();
  return files;
}

const template = tmpDir(t);
const files = await buildTemplate(template);
const [text, random] = files;

/** A private primary and a private healthy copy of the template (same segments, same names). */
function pair(t: TestT): { primary: string; copy: string } {
  const primary = tmpDir(t);
  const copy = tmpDir(t);
  fs.cpSync(template, primary, { recursive: true });
  fs.cpSync(template, copy, { recursive: true });
  return { primary, copy };
}

async function open(t: TestT, dir: string): Promise<SegmentStore> {
  const s = await SegmentStore.open(dir, { workers: 1, mustExist: true, log: () => {} });
  t.teardown(() => s.close());
  return s;
}

/** A fetcher over another store: what a clone's SegmentSource does by fingerprint. */
function fromStore(name: string, s: SegmentStore): SegmentFetcher & { asked: number } {
  const f = { name, asked: 0, fetch: async (fp: Buffer) => (f.asked++, s.segment(fp)) };
  return f;
}

/** Flips a byte in the middle of a record's payload. */
function damage(dir: string, r: TableRecord & { cid: number }): void {
  flipByte(containerPath(dir, r.cid), r.offset + RECORD_HEADER_BYTES + (r.storedLen >> 1));
}

/** Records used by exactly one of the files (data or node), so a read of that file meets them. */
function recordsOf(dir: string, f: File, kind: SegmentKind) {
  const others = files.filter((x) => x !== f);
  return allRecords(dir).filter((r) => {
    const h = fpHex(r.fp);
    const mine = kind === SegmentKind.Data ? f.data.has(h) : f.nodes.has(h) && !f.version.root.equals(r.fp);
    return r.kind === kind && mine && !others.some((o) => o.data.has(h) || o.nodes.has(h));
  });
}

t.test('a damaged data segment is read from the other copy, identical, and recorded', async (t) => {
  const { primary, copy } = pair(t);
  const r = recordsOf(primary, random, SegmentKind.Data)[5];
  damage(primary, r);
  const p = await open(t, primary);
  const c = await open(t, copy);
  const plain = (await rejection(p.read(random.version, 0, random.version.size))) as VmvaultError;
  t.ok(isVmvaultError(plain, 'CORRUPT_SEGMENT'), 'a plain read fails: the primary is damaged');
  const logged: string[] = [];
  const rescue = new ReadRescue([fromStore('clone site-b', c)], { onDamage: (d) => logged.push(`${d.fingerprint} ${d.servedBy}`) });
  const got = await p.read(random.version, 0, random.version.size, rescue);
  t.ok(got.equals(random.content), 'the rescued read is identical');
  t.equal(rescue.damage.length, 1, 'one damaged segment');
  const d = rescue.damage[0];
  t.equal(d.fingerprint, fpHex(r.fp), 'the damage names the segment');
  t.equal(d.container, r.cid, 'and its container');
  t.equal(d.offset, r.offset, 'and its offset');
  t.equal(d.code, 'CORRUPT_SEGMENT');
  t.equal(d.servedBy, 'clone site-b', 'and the copy that served it');
  t.same(logged, [`${fpHex(r.fp)} clone site-b`], 'onDamage heard of it once');
  // Rescued bytes are not cached: a plain read still meets the damage.
  t.ok(isVmvaultError(await rejection(p.read(random.version, 0, random.version.size)), 'CORRUPT_SEGMENT'), 'a later plain read still fails before repair');
});

t.test('damage in several places of one file (data and tree nodes, several containers) is served per segment', async (t) => {
  const { primary, copy } = pair(t);
  const data = recordsOf(primary, random, SegmentKind.Data);
  const picks = [data[0], data[Math.floor(data.length / 2)], data[data.length - 1], recordsOf(primary, random, SegmentKind.Node)[0]];
  t.ok(new Set(picks.map((r) => r.cid)).size >= 2, 'the damage spans containers');
  for (const r of picks) damage(primary, r);
  const p = await open(t, primary);
  const c = await open(t, copy);
  const f = fromStore('clone site-b', c);
  const rescue = new ReadRescue([f]);
  // In pieces, as a restore reads (4 MiB, 4 at a time).
  const out = Buffer.alloc(random.version.size);
  const step = 4 << 20;
  const reads: Array<Promise<void>> = [];
  for (let at = 0; at < out.length; at += step) {
    reads.push(p.read(random.version, at, step, rescue).then((b) => void b.copy(out, at)));
  }
  await Promise.all(reads);
  t.ok(out.equals(random.content), 'identical');
  t.same(rescue.damage.map((d) => d.fingerprint).sort(), picks.map((r) => fpHex(r.fp)).sort(), 'each damaged segment recorded once');
  t.ok(rescue.damage.some((d) => d.kind === 'node'), 'the tree node is among them');
  t.equal(f.asked, picks.length, 'the copy was asked only for the damaged segments');
});

t.test('a segment no copy holds fails the read naming it and every source tried; nothing changes', async (t) => {
  const { primary, copy } = pair(t);
  const r = recordsOf(primary, text, SegmentKind.Data)[3];
  damage(primary, r);
  const before = fs.readFileSync(containerPath(primary, r.cid));
  const p = await open(t, primary);
  const emptyDir = tmpDir(t);
  const empty = await SegmentStore.open(emptyDir, { workers: 1 });
  t.teardown(() => empty.close());
  const down: SegmentFetcher = { name: 'archive dr-1', fetch: async () => { throw new Error('ENOENT: the staging disk is not mounted'); } };
  const rescue = new ReadRescue([fromStore('clone site-b', empty), down]);
  const err = (await rejection(p.read(text.version, 0, text.version.size, rescue))) as VmvaultError;
  t.ok(isVmvaultError(err, 'CORRUPT_SEGMENT'), `fails with the primary's code (${err?.message})`);
  t.match(err.message, fpHex(r.fp).slice(0, 16), 'names the segment');
  t.match(err.message, 'clone site-b does not hold it', 'names the first source and its answer');
  t.match(err.message, 'archive dr-1 could not be read', 'names the second source and its answer');
  t.equal(rescue.damage.length, 0, 'nothing was served');
  t.ok(fs.readFileSync(containerPath(primary, r.cid)).equals(before), 'the primary container is untouched');
  void copy;
});

t.test('a source returning wrong bytes is refused; the next one is used', async (t) => {
  const { primary, copy } = pair(t);
  const r = recordsOf(primary, text, SegmentKind.Data)[7];
  damage(primary, r);
  const p = await open(t, primary);
  const c = await open(t, copy);
  const liar: SegmentFetcher = {
    name: 'clone evil',
    fetch: async (fp) => {
      const b = await c.segment(fp);
      if (b) b[0] ^= 1; // plausible bytes, the right length, not the segment
      return b;
    },
  };
  const alone = new ReadRescue([liar]);
  const err = (await rejection(p.read(text.version, 0, text.version.size, alone))) as VmvaultError;
  t.ok(isVmvaultError(err, 'CORRUPT_SEGMENT'), 'wrong bytes alone: the read fails');
  t.match(err.message, 'clone evil returned', 'naming the source whose bytes were refused');
  t.match(err.message, 'do not hash to it');
  const both = new ReadRescue([liar, fromStore('clone site-b', c)]);
  const got = await p.read(text.version, 0, text.version.size, both);
  t.ok(got.equals(text.content), 'with an honest copy after it: identical');
  t.equal(both.damage[0].servedBy, 'clone site-b');
  t.same(both.damage[0].passedOver.map((x) => x.source), ['clone evil'], 'the refused source is on record');
  await t.rejects(p.repairSegment(r.fp, Buffer.from((await liar.fetch(r.fp))!)), { code: 'SEGMENT_MISMATCH' }, 'repair refuses wrong bytes too');
});

t.test('repair makes plain reads, verify, GC and an index rebuild see only the healthy copy', async (t) => {
  const { primary, copy } = pair(t);
  const picks = [recordsOf(primary, random, SegmentKind.Data)[2], recordsOf(primary, text, SegmentKind.Data)[1], recordsOf(primary, text, SegmentKind.Node)[0]];
  for (const r of picks) damage(primary, r);
  const c = await open(t, copy);
  let p = await SegmentStore.open(primary, { workers: 1, mustExist: true, log: () => {} });
  const bad = await p.verify({ full: true });
  t.equal(bad.problems.filter((x) => x.kind === 'corrupt-segment').length, 3, 'verify finds the three');
  const rescue = new ReadRescue([fromStore('clone site-b', c)]);
  for (const f of files) t.ok((await p.read(f.version, 0, f.version.size, rescue)).equals(f.content));
  const statsBefore = await p.stats();
  for (const d of rescue.damage) {
    const fp = Buffer.from(d.fingerprint, 'hex');
    const res = await p.repairSegment(fp, rescue.known(fp)!, d.kind);
    t.ok(res.repaired, `repaired ${d.fingerprint.slice(0, 12)} from container ${res.from?.container} into ${res.to?.container}`);
    t.not(res.to?.container, res.from?.container, 'into another container');
  }
  t.same((await p.repairSegment(picks[0].fp, (await c.segment(picks[0].fp))!)).repaired, false, 'a second repair of a healthy segment does nothing');
  const statsAfter = await p.stats();
  t.equal(statsAfter.segments, statsBefore.segments, 'the segment count is unchanged');
  // Same process, caches as they were: the locality cache must not offer the damaged records.
  internalsOf(p).cache.clear();
  for (const f of files) t.ok((await p.read(f.version, 0, f.version.size)).equals(f.content), 'a plain read is identical after repair');
  const clean = await p.verify({ full: true });
  t.same(clean.problems, [], 'verify (containers and index) is clean');
  const trees = await p.verifyTrees(files.map((f, i) => ({ version: f.version, label: `f${i}` })), { full: true });
  t.same(trees.problems, [], 'verify of the trees is clean');
  await p.close();
  // After a reopen (tables loaded afresh), a GC that sweeps every container, and a rebuild.
  p = await SegmentStore.open(primary, { workers: 1, mustExist: true, log: () => {} });
  t.teardown(() => p.close());
  for (const f of files) t.ok((await p.read(f.version, 0, f.version.size)).equals(f.content), 'identical after reopen');
  const gc = await p.collectGarbage({
    roots: async function* () {
      for (const f of files) yield f.version;
    },
    copyForwardBelow: 1,
  });
  t.ok(gc.deadSegments >= 3, `GC counts the replaced records dead (${gc.deadSegments})`);
  p.reader.clearCaches();
  internalsOf(p).cache.clear();
  for (const f of files) t.ok((await p.read(f.version, 0, f.version.size)).equals(f.content), 'identical after GC');
  t.same((await p.verify({ full: true })).problems, [], 'verify clean after GC');
  await p.rebuildIndex();
  for (const f of files) t.ok((await p.read(f.version, 0, f.version.size)).equals(f.content), 'identical after an index rebuild');
});

t.test('an index rebuild before GC keeps pointing at the healthy copy', async (t) => {
  const { primary, copy } = pair(t);
  const r = recordsOf(primary, random, SegmentKind.Data)[9];
  damage(primary, r);
  const c = await open(t, copy);
  const p = await open(t, primary);
  await p.repairSegment(r.fp, (await c.segment(r.fp))!);
  await p.rebuildIndex();
  p.reader.clearCaches();
  t.ok((await p.read(random.version, 0, random.version.size)).equals(random.content), 'identical: the rebuild skipped the replaced record');
});

t.test('a crash during repair loses nothing: the old record or the new one', async (t) => {
  for (const mode of ['before-batch', 'after-batch']) {
    const { primary, copy } = pair(t);
    const r = recordsOf(primary, random, SegmentKind.Data)[11];
    damage(primary, r);
    const ids = listContainers(primary);
    await runAndKill(child, [primary, copy, mode, fpHex(r.fp)], (kill) => (kill(), () => {}));
    const p = await SegmentStore.open(primary, { workers: 1, mustExist: true, log: () => {} });
    try {
      const got = await rejection(p.read(random.version, 0, random.version.size));
      if (mode === 'before-batch') {
        t.ok(isVmvaultError(got, 'CORRUPT_SEGMENT'), `${mode}: the index still names the old (damaged) record, not a lost one`);
        t.ok(listContainers(primary).length >= ids.length, `${mode}: no container was lost`);
        const c = await SegmentStore.open(copy, { workers: 1, mustExist: true });
        const bytes = (await c.segment(r.fp))!;
        await c.close();
        t.ok((await p.repairSegment(r.fp, bytes)).repaired, `${mode}: the repair runs again`);
      } else {
        t.equal(got, undefined, `${mode}: the new record is the segment's home`);
      }
      t.ok((await p.read(random.version, 0, random.version.size)).equals(random.content), `${mode}: identical`);
      t.same((await p.verify({ full: true })).problems, [], `${mode}: verify clean`);
    } finally {
      await p.close();
    }
  }
});

t.test('a container the disk fails to read (EIO): its segments come from the copy', async (t) => {
  const { primary, copy } = pair(t);
  const p = await open(t, primary);
  const c = await open(t, copy);
  const r = recordsOf(primary, random, SegmentKind.Data)[4];
  const file = containerPath(primary, r.cid);
  let hits = 0;
  setFaultPlan({
    decide(op: FaultOp, path: string) {
      if (op !== 'read' || path !== file) return undefined;
      hits++;
      return 'EIO';
    },
  });
  try {
    t.ok(isVmvaultError(await rejection(p.read(random.version, 0, random.version.size)), 'IO'), 'a plain read fails with IO');
    p.reader.clearCaches();
    const rescue = new ReadRescue([fromStore('clone site-b', c)]);
    const got = await p.read(random.version, 0, random.version.size, rescue);
    t.ok(hits > 0, `the fault fired (${hits} reads)`);
    t.ok(got.equals(random.content), 'the rescued read is identical');
    t.ok(rescue.damage.length > 0, `${rescue.damage.length} segments of the failing container were served by the copy`);
    const kinds = [...new Set(rescue.damage.map((d) => `${d.code} ${d.container}`))];
    t.same(kinds, [`IO ${r.cid}`], `each recorded as an I/O error in that container (${kinds.join(', ')}; ${rescue.damage.find((d) => d.code !== 'IO')?.reason})`);
  } finally {
    setFaultPlan(undefined);
  }
});

t.test('rescued sequential reads use the read-ahead windows, and read past a window a plain read opened that met damage', async (t) => {
  const { primary, copy } = pair(t);
  const r = recordsOf(primary, random, SegmentKind.Data)[5];
  damage(primary, r);
  const p = await open(t, primary);
  const c = await open(t, copy);
  const size = random.version.size;
  const CHUNK = 256 * 1024;
  // Plain sequential reads first, not awaited: they open windows over the damage (which fail).
  const plain = [0, CHUNK, 2 * CHUNK].map((at) => Promise.resolve(p.readInto(random.version, at, Buffer.alloc(CHUNK))).catch(() => -1));
  // Then a rescued reader of the whole file, in the same turn: it meets those windows.
  const rescue = new ReadRescue([fromStore('clone site-b', c)]);
  const out = Buffer.alloc(size);
  const pending: Array<Promise<number>> = [];
  for (let at = 0; at < size; at += CHUNK) {
    const got = p.readInto(random.version, at, out.subarray(at, Math.min(size, at + CHUNK)), rescue);
    if (typeof got !== 'number') pending.push(got);
  }
  await Promise.all(pending);
  await Promise.all(plain);
  t.ok(out.equals(random.content), 'identical');
  t.same(rescue.damage.map((d) => d.fingerprint), [fpHex(r.fp)], 'the damaged segment served by the copy, once');
  // Read again sequentially, each read awaited: once the windows lead, reads are served at once.
  const again = new ReadRescue([fromStore('clone site-b', c)]);
  let atOnce = 0;
  const buf = Buffer.alloc(CHUNK);
  for (let at = 0; at < size; at += CHUNK) {
    const got = p.readInto(random.version, at, buf.subarray(0, Math.min(CHUNK, size - at)), again);
    if (typeof got === 'number') atOnce++;
    else await got;
    t.ok(buf.subarray(0, Math.min(CHUNK, size - at)).equals(random.content.subarray(at, at + CHUNK)), `bytes at ${at}`, { diagnostic: false });
  }
  t.ok(atOnce > 0, `${atOnce} of ${Math.ceil(size / CHUNK)} rescued reads were served at once from read-ahead windows`);
});
