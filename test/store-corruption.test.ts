// Damage to container files on a real disk: a flipped payload byte, damaged record headers,
// tables, trailers and container headers, a container cut short, a container deleted, and
// files of a newer format. Whatever the damage, a read returns the right bytes or fails with
// a typed error that names the container (and offset) a person must look at; verify lists
// every problem with its container and offset; nothing crashes the process.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { isVmvaultError, type VmvaultError } from '../src/errors.js';
import { scanContainer } from '../src/store/container/files.js';
import { SegmentKind } from '../src/store/container/format.js';
import { fpHex } from '../src/store/codec/fingerprint.js';
import { SegmentStore, type FileVersion } from '../src/store/store.js';
import {
  allRecords,
  containerName,
  containerPath,
  flipByte,
  listContainers,
  readLayout,
  RECORD_HEADER_BYTES,
  setContainerVersion,
} from './helpers/containers.js';
import { generate, Rng } from './helpers/data.js';
import { outcomes, withStore } from './helpers/store-outcomes.js';
import { crashClose, dataUses, nodeFps, readOutcome, rejection, type Use } from './helpers/store-probe.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';
import { internalsOf } from '../src/store/internals.js';

interface Stored {
  name: string;
  version: FileVersion;
  content: Buffer;
  /** Data segments (hex fingerprint -> uses) and tree nodes of the version. */
  data: Map<string, Use[]>;
  nodes: Set<string>;
}

/** Every code a damaged store may answer a read with. */
const TYPED = new Set(['identical', 'CORRUPT_SEGMENT', 'CORRUPT_CONTAINER', 'MISSING_SEGMENT']);

/**
 * A closed store holding a compressible text version (LZ4 records), a random one (raw records,
 * several containers), a sparse one and a text version sharing nothing with the first. Built
 * once; every test damages its own copy.
 */
async function buildTemplate(dir: string): Promise<Stored[]> {
  const rng = new Rng(4242);
  const store = await SegmentStore.open(dir, { workers: 1 });
  const contents: Array<[string, Buffer]> = [
    ['text', generate(rng, 'text', 2_500_000)],
    ['random', generate(rng, 'random', 20_000_000)],
    ['sparse', generate(rng, 'sparse', 3_000_000)],
    ['text2', generate(rng, 'text', 1_500_000)],
  ];
  const files: Stored[] = [];
  for (const [name, content] of contents) {
    const { version } = await store.writeBuffer(content);
    files.push({ name, version, content, data: await dataUses(store, version), nodes: await nodeFps(store, version) });
  }
  await store.commit();
  await store.close();
  return files;
}

const template = tmpDir(t);
const files = await buildTemplate(template);
const templateIds = listContainers(template);

/** A private copy of the template store. */
function copyStore(t: TestT): string {
  const dir = tmpDir(t);
  fs.cpSync(template, dir, { recursive: true });
  return dir;
}

/**
 * Forgets what an open store holds in memory about containers (decoded segments, tables,
 * descriptors), so the next read sees the files as they are now, as a reopen would.
 */
function dropCaches(s: SegmentStore): void {
  s.reader.clearCaches();
  internalsOf(s).cache.clear();
  for (const id of templateIds) internalsOf(s).files.forget(id);
}

/** The versions using a segment (by hex fingerprint), data or node. */
function usersOf(files: Stored[], fp: string): Stored[] {
  return files.filter((f) => f.data.has(fp) || f.nodes.has(fp));
}

t.test('a flipped payload byte fails the reads that use the segment, naming container and offset', async (t) => {
  const dir = copyStore(t);
  const records = allRecords(dir);
  // One record used by exactly one version, per kind of damage: an LZ4 data record, a raw data
  // record and a tree node that is not the root.
  const only = (r: (typeof records)[number]) => usersOf(files, fpHex(r.fp));
  const pick = (what: string, ok: (r: (typeof records)[number]) => boolean) => {
    const r = records.find((r) => only(r).length === 1 && ok(r));
    if (!r) throw new Error(`no record for case ${what}`);
    return { what, r, user: only(r)[0] };
  };
  const cases = [
    pick('LZ4 data record', (r) => r.kind === SegmentKind.Data && r.codec === 1 && only(r)[0].name === 'text'),
    pick('raw data record', (r) => r.kind === SegmentKind.Data && r.codec === 0 && only(r)[0].name === 'random'),
    pick('tree node', (r) => r.kind === SegmentKind.Node && only(r)[0].name === 'text' && !only(r)[0].version.root.equals(r.fp)),
  ];
  await withStore(dir, async (s) => {
    for (const { what, r, user } of cases) {
      const file = containerPath(dir, r.cid);
      const at = r.offset + RECORD_HEADER_BYTES + (r.storedLen >> 1);
      flipByte(file, at);
      dropCaches(s);
      const err = (await rejection(s.read(user.version, 0, user.version.size))) as VmvaultError | undefined;
      t.ok(isVmvaultError(err, 'CORRUPT_SEGMENT'), `${what}: reading ${user.name} fails with CORRUPT_SEGMENT (${err?.message})`);
      t.match(err?.message, `container ${containerName(r.cid)}`, `${what}: the message names the container`);
      t.match(err?.message, `offset ${r.offset}`, `${what}: the message names the record offset`);
      t.same(err?.details, { fingerprint: fpHex(r.fp), container: r.cid, offset: r.offset }, `${what}: details carry fingerprint, container, offset`);
      for (const f of files) {
        if (f !== user) t.equal(await readOutcome(s, f.version, f.content), 'identical', `${what}: ${f.name} still reads back identical`);
      }
      if (r.kind === SegmentKind.Data) {
        // The same version reads fine everywhere but in the damaged segment.
        const uses = user.data.get(fpHex(r.fp))!;
        t.equal(uses.length, 1, `${what}: the segment is used once`);
        const u = uses[0];
        t.equal(await readOutcome(s, user.version, user.content, 0, u.start), 'identical', `${what}: bytes before the segment read fine`);
        const after = u.start + u.len;
        t.equal(await readOutcome(s, user.version, user.content, after, user.version.size - after), 'identical', `${what}: bytes after it read fine`);
        t.equal(await readOutcome(s, user.version, user.content, u.start + 10, 100), 'CORRUPT_SEGMENT', `${what}: 100 bytes inside it fail`);
      }
      const report = await s.verify({ full: true });
      t.same(
        report.problems.map((p) => [p.kind, p.container, p.offset, p.fingerprint]),
        [['corrupt-segment', r.cid, r.offset, fpHex(r.fp)]],
        `${what}: full verify reports exactly the damaged record`,
      );
      const trees = await s.verifyTrees(files.map((f) => ({ version: f.version, label: f.name })), { full: true });
      t.same(
        trees.problems.map((p) => [p.kind, p.root, p.container, p.offset]),
        [['corrupt-segment', user.name, r.cid, r.offset]],
        `${what}: tree verify names the version that reaches it`,
      );
      flipByte(file, at); // undo
    }
    dropCaches(s);
    t.same(await outcomes(s, files), Object.fromEntries(files.map((f) => [f.name, 'identical'])), 'undone, everything reads again');
    t.same((await s.verify({ full: true })).problems, [], 'undone, verify is clean');
  });
});

t.test('damage outside the payloads is reported by verify and never returns wrong bytes', async (t) => {
  const dir = copyStore(t);
  const ids = listContainers(dir);
  t.ok(ids.length >= 3, `${ids.length} containers`);
  const lay = readLayout(dir, ids[1]);
  const mid = lay.records[lay.records.length >> 1];
  const cases: Array<{ what: string; at: number }> = [
    { what: 'record header magic', at: mid.offset + 1 },
    { what: 'record header length field', at: mid.offset + 13 },
    { what: 'record header fingerprint', at: mid.offset + 30 },
    { what: 'metadata table entry', at: lay.tableOffset + 48 * 3 + 33 },
    { what: 'trailer record count', at: lay.trailerOffset + 8 },
    { what: 'trailer magic', at: lay.trailerOffset + 2 },
    { what: 'container header creation time', at: 20 },
    { what: 'container header magic', at: 3 },
  ];
  await withStore(dir, async (s) => {
    for (const { what, at } of cases) {
      flipByte(lay.file, at);
      dropCaches(s);
      const report = await s.verify({ full: true });
      const mine = report.problems.filter((p) => p.kind === 'corrupt-container' && p.container === lay.id);
      t.equal(mine.length, 1, `${what}: verify reports the container as damaged (${mine[0]?.message})`);
      t.ok(report.problems.every((p) => p.container === lay.id && typeof p.offset === 'number'), `${what}: every problem names this container and an offset`);
      const got = await outcomes(s, files);
      t.ok(
        Object.values(got).every((o) => TYPED.has(o)),
        `${what}: every read is identical or a typed error (${JSON.stringify(got)})`,
      );
      flipByte(lay.file, at);
    }
    dropCaches(s);
    t.same((await s.verify({ full: true })).problems, [], 'undone, verify is clean');
    t.same(await outcomes(s, files), Object.fromEntries(files.map((f) => [f.name, 'identical'])), 'undone, everything reads');
  });
});

t.test('a sealed container cut short in the middle of a record', async (t) => {
  const dir = copyStore(t);
  const ids = listContainers(dir);
  const lay = readLayout(dir, ids[1]);
  const k = lay.records.length >> 1;
  const cut = lay.records[k];
  fs.truncateSync(lay.file, cut.offset + RECORD_HEADER_BYTES + (cut.storedLen >> 1));
  const lost = new Set(lay.records.slice(k).map((r) => fpHex(r.fp)));
  await withStore(dir, async (s) => {
    t.equal(s.recovery, undefined, 'a clean store runs no recovery on open');
    for (const f of files) {
      const hit = [...lost].some((fp) => f.data.has(fp) || f.nodes.has(fp));
      const o = await readOutcome(s, f.version, f.content);
      if (hit) t.ok(o === 'CORRUPT_SEGMENT' || o === 'CORRUPT_CONTAINER', `${f.name} uses a lost record: ${o}`);
      else t.equal(o, 'identical', `${f.name} uses none of the lost records and reads back identical`);
    }
    // A read of exactly the cut record names it.
    const user = files.find((f) => f.data.has(fpHex(cut.fp)))!;
    const u = user.data.get(fpHex(cut.fp))![0];
    const err = (await rejection(s.read(user.version, u.start, u.len))) as VmvaultError;
    t.ok(isVmvaultError(err, 'CORRUPT_SEGMENT'), `reading the cut segment: ${err?.message}`);
    t.same([err?.details?.container, err?.details?.offset], [lay.id, cut.offset], 'the error names container and offset of the cut record');
    const report = await s.verify({ full: true });
    const damaged = report.problems.filter((p) => p.kind === 'corrupt-container');
    t.same(damaged.map((p) => [p.container, p.offset]), [[lay.id, cut.offset]], 'verify: the container is damaged from the cut record on');
    const mismatched = report.problems.filter((p) => p.kind === 'index-mismatch');
    t.same(
      mismatched.map((p) => p.offset).sort((a, b) => a! - b!),
      lay.records.slice(k).map((r) => r.offset),
      'verify: every record past the cut is named by offset as an index entry without its record',
    );
    t.ok(mismatched.every((p) => p.container === lay.id), 'verify: ... all in that container');
  });
});

t.test('a container torn after a crash is repaired by recovery', async (t) => {
  const dir = tmpDir(t);
  const rng = new Rng(99);
  const a = generate(rng, 'random', 1_000_000);
  const b = generate(rng, 'text', 1_000_000);
  let s = await SegmentStore.open(dir);
  const va = (await s.writeBuffer(a)).version;
  await s.commit();
  const vb = (await s.writeBuffer(b)).version;
  await s.commit();
  await crashClose(s);
  const ids = listContainers(dir);
  t.equal(ids.length, 1, 'one container, still open at the crash');
  const file = containerPath(dir, ids[0]);
  const scan = await scanContainer(file, ids[0]);
  t.notOk(scan.sealed, 'it is not sealed');
  const last = scan.records[scan.records.length - 1];
  fs.truncateSync(file, last.offset + RECORD_HEADER_BYTES + (last.storedLen >> 1));
  s = await SegmentStore.open(dir);
  try {
    t.match(s.recovery, { containersScanned: 1, containersRepaired: 1 }, 'recovery scanned and repaired the container');
    t.ok(s.recovery!.bytesCut > 0, `it cut the torn record (${s.recovery!.bytesCut} bytes)`);
    t.equal(await readOutcome(s, va, a), 'identical', 'the version written before the torn record reads back');
    t.equal(await readOutcome(s, vb, b), 'CORRUPT_SEGMENT', 'the version whose last record was torn fails with a typed error');
    t.ok(readLayout(dir, ids[0]).records.length === scan.records.length - 1, 'the container is sealed with the intact records');
    const report = await s.verify({ full: true });
    t.same(
      report.problems.map((p) => [p.kind, p.container, p.offset]),
      [['index-mismatch', ids[0], last.offset]],
      'verify: only the index entry of the torn record is left without its record',
    );
  } finally {
    await s.close();
  }
});

t.test('recovery does not index a damaged record of a container sealed just before a crash', async (t) => {
  // The seal's last write (records, table, trailer) may reach the disk in part: the trailer
  // can be there while a page of a record is not. Records the index lacks must be checked
  // before recovery indexes them, or later writes deduplicate against lost bytes.
  const dir = tmpDir(t);
  const rng = new Rng(5);
  const a = generate(rng, 'text', 500_000);
  const b = generate(rng, 'random', 6_000_000);
  let s = await SegmentStore.open(dir);
  const va = (await s.writeBuffer(a)).version;
  await s.commit();
  await s.writeBuffer(b); // fills container 1 (sealed) and opens container 2, never committed
  await crashClose(s);
  const lay = readLayout(dir, 1);
  // A record of b in the sealed container: its payload "never reached the disk".
  const victim = lay.records.filter((r) => r.kind === SegmentKind.Data && r.codec === 0).pop()!;
  t.ok(victim, 'a raw record of the uncommitted stream is in the sealed container');
  flipByte(lay.file, victim.offset + RECORD_HEADER_BYTES + 100);
  s = await SegmentStore.open(dir);
  try {
    t.ok(s.recovery, 'recovery ran');
    t.equal(await readOutcome(s, va, a), 'identical', 'the committed version reads back');
    t.equal(await internalsOf(s).index.get(victim.fp), undefined, 'the damaged record is not indexed');
    const again = await s.writeBuffer(b);
    await s.commit([], again.deps);
    t.equal(await readOutcome(s, again.version, b), 'identical', 'writing the same bytes again stores a good copy and reads back');
  } finally {
    await s.close();
  }
});

t.test('a deleted container: reads of its data fail with MISSING_SEGMENT naming it', async (t) => {
  const dir = copyStore(t);
  const ids = listContainers(dir);
  const gone = readLayout(dir, ids[1]);
  fs.rmSync(gone.file);
  const lost = new Set(gone.records.map((r) => fpHex(r.fp)));
  await withStore(dir, async (s) => {
    for (const f of files) {
      const hit = [...lost].some((fp) => f.data.has(fp) || f.nodes.has(fp));
      const err = (await rejection(s.read(f.version, 0, f.version.size))) as VmvaultError | undefined;
      if (hit) {
        t.ok(isVmvaultError(err, 'MISSING_SEGMENT'), `${f.name}: MISSING_SEGMENT (${err?.message})`);
        t.match(err?.message, containerName(gone.id), `${f.name}: the message names the container`);
        t.equal(err?.details?.container, gone.id, `${f.name}: details name the container`);
      } else {
        t.equal(await readOutcome(s, f.version, f.content), 'identical', `${f.name} reads back identical`);
      }
    }
    t.ok(files.some((f) => [...lost].some((fp) => f.data.has(fp))), 'some version did use the container');
    const report = await s.verify({ full: true });
    t.same(
      report.problems.map((p) => [p.kind, p.container, p.offset]).sort((x, y) => (x[2] as number) - (y[2] as number)),
      gone.records.map((r) => ['index-mismatch', gone.id, r.offset]),
      'verify names every record of the missing container by offset',
    );
  });
});

t.test('several kinds of damage at once: verify lists each with container and offset', async (t) => {
  const dir = copyStore(t);
  const ids = listContainers(dir);
  t.ok(ids.length >= 5, `${ids.length} containers`);
  const [l1, l2, l3, l4] = ids.slice(0, 4).map((id) => readLayout(dir, id));
  const payload = l1.records[2];
  flipByte(l1.file, payload.offset + RECORD_HEADER_BYTES + 7);
  const header = l2.records[5];
  flipByte(l2.file, header.offset + 20);
  flipByte(l3.file, l3.tableOffset + 10);
  fs.rmSync(l4.file);
  await withStore(dir, async (s) => {
    const report = await s.verify({ full: true });
    t.ok(report.problems.length > 0, `${report.problems.length} problems`);
    t.ok(
      report.problems.every((p) => typeof p.container === 'number' && typeof p.offset === 'number'),
      'every problem has a container and an offset',
    );
    const kinds = new Set(report.problems.map((p) => `${p.kind}@${p.container}`));
    t.ok(kinds.has(`corrupt-segment@${l1.id}`), 'the flipped payload');
    t.ok(report.problems.some((p) => p.kind === 'corrupt-segment' && p.container === l1.id && p.offset === payload.offset), '... at its offset');
    t.ok(report.problems.some((p) => p.kind === 'corrupt-container' && p.container === l2.id && p.offset === header.offset), 'the damaged record header, at its offset');
    t.ok(kinds.has(`corrupt-container@${l3.id}`), 'the damaged table');
    t.ok(kinds.has(`index-mismatch@${l4.id}`), 'the deleted container');
    t.equal(report.problems.filter((p) => p.kind === 'index-mismatch' && p.container === l4.id).length, l4.records.length, '... one problem per record');
    const got = await outcomes(s, files);
    t.ok(Object.values(got).every((o) => TYPED.has(o)), `reads are identical or typed errors (${JSON.stringify(got)})`);
  });
});

t.test('data of a newer format is refused with UNSUPPORTED_FORMAT', async (t) => {
  const dir = copyStore(t);
  const ids = listContainers(dir);
  const lay = readLayout(dir, ids[0]);
  setContainerVersion(lay.file, 2);
  const users = files.filter((f) => lay.records.some((r) => usersOf([f], fpHex(r.fp)).length > 0));
  t.ok(users.length > 0, 'some version uses the container');
  await withStore(dir, async (s) => {
    for (const f of users) {
      const err = (await rejection(s.read(f.version, 0, f.version.size))) as VmvaultError | undefined;
      t.ok(isVmvaultError(err, 'UNSUPPORTED_FORMAT'), `${f.name}: reading it is refused with UNSUPPORTED_FORMAT (${err?.message})`);
      t.match(err?.message, containerName(lay.id), '... naming the container');
    }
    const report = await s.verify({ full: false });
    const p = report.problems.find((p) => p.container === lay.id && p.kind === 'corrupt-container');
    t.match(p?.message, /newer/, `verify reports the container as of a newer format (${p?.message})`);
    const err = await rejection(s.rebuildIndex());
    t.ok(isVmvaultError(err, 'UNSUPPORTED_FORMAT'), `an index rebuild refuses to drop the entries of a newer container (${(err as Error)?.message})`);
  });
  setContainerVersion(lay.file, 1);

  const cfgFile = path.join(dir, 'store.json');
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as { format: number };
  fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, format: 2 }));
  const err = await rejection(SegmentStore.open(dir));
  t.ok(isVmvaultError(err, 'UNSUPPORTED_FORMAT'), `a store.json of format 2 is refused (${(err as Error)?.message})`);
  t.match((err as Error).message, /newer/, '... saying it is newer');
  fs.writeFileSync(cfgFile, JSON.stringify(cfg));
  await withStore(dir, async (s) => {
    t.same(await outcomes(s, files), Object.fromEntries(files.map((f) => [f.name, 'identical'])), 'format 1 again: nothing was lost, everything reads');
  });
});
