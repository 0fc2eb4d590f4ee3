// The DR copy's database log (format 2, src/policy/dr-log.ts, DR-FORMAT.md "The database log"):
// copies after the first append only what changed, and restoring the last of many checkpoints gives
// identical files; a torn tail (bytes after the committed end) is ignored on read and cut off by
// the next copy; a power cut in the middle of an append leaves the last complete checkpoint, which
// restores identical; a flipped byte in a record is named by its frame; and a version-1 copy
// (test/fixtures/dr-v1, written by the version-1 writer) still verifies and restores, and a
// version-2 copy over it starts a new log.

import t from 'tap';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { runGc } from '../src/namespace/maintenance.js';
import { drCopy } from '../src/policy/dr-copy.js';
import { readManifest } from '../src/policy/dr-format.js';
import { drRestore } from '../src/policy/dr-restore.js';
import { drVerify } from '../src/policy/dr-verify.js';
import { writeDatabase } from '../src/store/store.js';
import { distinctBytes as bytes } from './helpers/data.js';
import { openNs, readFile, writeFile } from './helpers/ns.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';
import { startPowerfail } from './powerfail/powerfail.js';

const KiB = 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const FIXTURE = path.resolve(import.meta.dirname, '..', '..', 'test', 'fixtures', 'dr-v1');

type Ns = Awaited<ReturnType<typeof openNs>>;

async function restoredFiles(t: TestT, from: string, target: string): Promise<Map<string, string>> {
  await drRestore({ from, data: target, writeDatabase });
  const b = await openNs(t, target);
  try {
    const out = new Map<string, string>();
    for (const e of await b.ns.fs.readdir('/vm1')) if (!e.name.startsWith('.')) out.set(e.name, sha(await readFile(b.ns, `/vm1/${e.name}`)));
    return out;
  } finally {
    await b.close();
  }
}

async function point(a: Ns, wanted: Map<string, string>, name: string, b: Buffer): Promise<void> {
  await writeFile(a.ns, `/vm1/${name}`, b);
  await a.ns.snapshots.create('vm1', name.replace(/\W/g, ''));
  wanted.set(name, sha(b));
}

t.test('many checkpoints append only their changes; torn tail ignored and cut off; flipped byte named', async (t) => {
  const dir = tmpDir(t, 'vmvault-drlog-');
  const data = path.join(dir, 'data');
  const dest = path.join(dir, 'dr');
  const a = await openNs(t, data);
  await a.ns.shares.create('vm1');
  const wanted = new Map<string, string>();
  for (let i = 0; i < 40; i++) await point(a, wanted, `base${i}.bin`, bytes(64 * KiB, 200 + i));
  const copy = () => drCopy({ dataDir: data, to: dest, version: 'test', snapshot: () => a.store.snapshotForCopy() });
  const first = await copy();
  t.ok(first.databaseBase, 'the first copy writes a base');
  const m1 = await readManifest(dest);
  t.equal(m1.version, 2, 'format version 2');
  t.match(m1.database.path, /^dr-db\/.+\.log$/, 'the database is a log under dr-db/');

  for (let i = 0; i < 6; i++) {
    await point(a, wanted, `p${i}.bin`, bytes(32 * KiB, 10 + i));
    if (i === 3) {
      await a.ns.fs.unlink('/vm1/base0.bin');
      wanted.delete('base0.bin');
      await a.ns.snapshots.create('vm1', 'unlinked');
    }
    const r = await copy();
    t.notOk(r.databaseBase, `copy ${i + 2} appends changes, not a base`);
    t.ok(r.databaseBytes < first.databaseBytes / 2, `copy ${i + 2} appended ${r.databaseBytes} database bytes (the base was ${first.databaseBytes})`);
  }
  const m = await readManifest(dest);
  t.equal(m.database.path, m1.database.path, 'every copy appended to the same log');
  t.equal(m.database.checkpoints, 7, 'seven checkpoints in it');
  t.same(Object.fromEntries(await restoredFiles(t, dest, path.join(dir, 'r1'))), Object.fromEntries(wanted), 'the last of seven checkpoints restores every file identical (one removed)');

  // A torn tail: bytes after the committed end, as a copy cut off before its manifest leaves.
  const log = path.join(dest, ...m.database.path.split('/'));
  fs.appendFileSync(log, Buffer.concat([Buffer.from('VVFR'), bytes(3000, 5)]));
  t.same((await drVerify(dest)).report.problems, [], 'a torn tail is not part of the copy: it verifies');
  t.same(Object.fromEntries(await restoredFiles(t, dest, path.join(dir, 'r2'))), Object.fromEntries(wanted), 'and restores identical');
  await point(a, wanted, 'after-tail.bin', bytes(32 * KiB, 77));
  const lines: string[] = [];
  const r = await drCopy({ dataDir: data, to: dest, version: 'test', snapshot: () => a.store.snapshotForCopy(), log: (l) => lines.push(l) });
  t.notOk(r.databaseBase, 'the next copy appends after the committed end');
  t.ok(lines.some((l) => /3004 bytes after the last complete checkpoint .* are cut off/.test(l)), 'cutting the torn tail off, and saying so');
  const mt = await readManifest(dest);
  t.equal(fs.statSync(log).size, mt.database.size, 'the log ends at its committed end');
  t.same(Object.fromEntries(await restoredFiles(t, dest, path.join(dir, 'r3'))), Object.fromEntries(wanted), 'the copy after the tail restores identical');

  // A flipped byte inside the last checkpoint's delta frame is named by its frame.
  const buf = fs.readFileSync(log);
  const at = mt.database.size - 200;
  buf[at] = buf[at]! ^ 0x10;
  fs.writeFileSync(log, buf);
  const v = await drVerify(dest);
  t.equal(v.report.problems.length, 1, 'verify finds one problem');
  t.match(v.report.problems[0], { path: mt.database.path, what: 'database records', problem: 'checksum', detail: /frame \d+ at offset \d+ \(checkpoint 8\)/ }, `named: ${v.report.problems[0]?.detail}`);
  await t.rejects(drRestore({ from: dest, data: path.join(dir, 'r4'), writeDatabase }), { code: 'CORRUPT_COPY', message: /frame \d+ at offset/ }, 'restore refuses it, naming the frame');
  t.notOk(fs.existsSync(path.join(dir, 'r4', 'db')), 'and writes no database');
  // The next copy does not build on a damaged log: it starts a new one.
  const lines2: string[] = [];
  const r2 = await drCopy({ dataDir: data, to: dest, version: 'test', snapshot: () => a.store.snapshotForCopy(), log: (l) => lines2.push(l) });
  t.ok(r2.databaseBase, 'over a damaged log the next copy writes a new base');
  t.ok(lines2.some((l) => l.includes('not usable')), 'saying why');
  t.notOk(fs.existsSync(log), 'the damaged log is pruned once the new manifest landed');
  t.same(Object.fromEntries(await restoredFiles(t, dest, path.join(dir, 'r5'))), Object.fromEntries(wanted), 'and the new copy restores identical');
});

t.test('a log grown past twice its live size is replaced by a new base', async (t) => {
  const dir = tmpDir(t, 'vmvault-drlog-compact-');
  const data = path.join(dir, 'data');
  const dest = path.join(dir, 'dr');
  const a = await openNs(t, data);
  await a.ns.shares.create('vm1');
  const wanted = new Map<string, string>();
  await point(a, wanted, 'a.bin', bytes(64 * KiB, 1));
  const copy = () => drCopy({ dataDir: data, to: dest, version: 'test', snapshot: () => a.store.snapshotForCopy() });
  await copy();
  const logs = new Set<string>();
  let bases = 0;
  for (let i = 0; i < 12; i++) {
    // Rewrite one file, drop the old point, collect: the database changes much, its live size little.
    if (i > 0) await a.ns.fs.unlink('/vm1/x.bin');
    await writeFile(a.ns, '/vm1/x.bin', bytes(256 * KiB, 50 + i));
    wanted.set('x.bin', sha(bytes(256 * KiB, 50 + i)));
    await a.ns.snapshots.create('vm1', `s${i}`);
    if (i > 0) await a.ns.snapshots.remove('vm1', `s${i - 1}`);
    await runGc(a.ns);
    const r = await copy();
    const m = await readManifest(dest);
    logs.add(m.database.path);
    if (r.databaseBase) bases++;
    t.ok(m.database.size <= 2 * m.database.live! + 8 + r.databaseBytes, `copy ${i + 2}: log ${m.database.size} bytes for ${m.database.live} live`);
  }
  t.ok(bases >= 1, `the log was replaced ${bases} times`);
  t.equal(fs.readdirSync(path.join(dest, 'dr-db')).length, 1, 'one log file left after pruning');
  t.same(Object.fromEntries(await restoredFiles(t, dest, path.join(dir, 'r'))), Object.fromEntries(wanted), 'restores identical');
});

t.test('a power cut in the middle of an append: the last complete checkpoint restores identical', async (t) => {
  const dir = tmpDir(t, 'vmvault-drlog-power-');
  const data = path.join(dir, 'data');
  const a = await openNs(t, data);
  const pf = await startPowerfail(t, dir, 20261206);
  const dest = path.join(pf.mount, 'dr');
  await a.ns.shares.create('vm1');
  const wanted = new Map<string, string>();
  // Enough records that a delta spans several frames (frames are cut at 1 MiB).
  for (let i = 0; i < 30; i++) await point(a, wanted, `f${i}.bin`, bytes(256 * KiB, 300 + i));
  const first = await drCopy({ dataDir: data, to: dest, version: 'test', snapshot: () => a.store.snapshotForCopy() });
  const atFirst = new Map(wanted);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 30; j++) await point(a, wanted, `r${i}-${j}.bin`, bytes(128 * KiB, 1000 + i * 100 + j));
    let frames = 0;
    let cut: Promise<unknown> | undefined;
    const res = await drCopy({
      dataDir: data,
      to: dest,
      version: 'test',
      snapshot: () => a.store.snapshotForCopy(),
      afterLogFrame: async () => {
        // After the first frame of the append: the cut lands with part of the checkpoint written.
        if (++frames === 1) {
          cut = pf.cut();
          await cut;
        }
      },
    }).then(
      (r) => r,
      (err: Error) => err,
    );
    t.ok(res instanceof Error, `round ${i}: the copy cut in its append failed (${res instanceof Error ? res.message.slice(0, 80) : 'returned'})`);
    t.ok(frames >= 1 && cut, `round ${i}: cut after frame ${frames}`);
    await pf.powerOn();
    const v = await drVerify(dest);
    t.same(v.report.problems, [], `round ${i}: the copy verifies after the cut`);
    t.equal(v.manifest.copy, first.copy, `round ${i}: the manifest still names the last complete copy`);
    const logSize = fs.statSync(path.join(dest, ...v.manifest.database.path.split('/'))).size;
    t.comment(`round ${i}: the log holds ${logSize - v.manifest.database.size} bytes beyond its committed end after the cut`);
    const got = await restoredFiles(t, dest, path.join(dir, `restored-${i}`));
    t.same(Object.fromEntries(got), Object.fromEntries(atFirst), `round ${i}: the last complete checkpoint restores, every file identical`);
    fs.rmSync(path.join(dir, `restored-${i}`), { recursive: true, force: true });
  }
  // Over the leftovers, the next copy appends and restores to now.
  const last = await drCopy({ dataDir: data, to: dest, version: 'test', snapshot: () => a.store.snapshotForCopy() });
  t.notOk(last.databaseBase, 'the copy after the cuts appends to the same log');
  t.same((await drVerify(dest)).report.problems, [], 'and verifies');
  t.same(Object.fromEntries(await restoredFiles(t, dest, path.join(dir, 'restored-last'))), Object.fromEntries(wanted), 'and restores every file identical');
  await a.close();
});

t.test('a version-1 copy still verifies and restores; a version-2 copy over it starts a log', async (t) => {
  const dir = tmpDir(t, 'vmvault-drlog-v1-');
  const dest = path.join(dir, 'dr');
  fs.cpSync(FIXTURE, dest, { recursive: true });
  const m = await readManifest(dest);
  t.equal(m.version, 1, 'the fixture is version 1');
  t.same((await drVerify(dest)).report.problems, [], 'it verifies');
  // The file the fixture's writer (test/fixtures/dr-v1, made with the version-1 dr-copy) stored.
  const want = sha(Buffer.concat([bytes(96 * KiB, 7), Buffer.alloc(32 * KiB), bytes(64 * KiB, 1)]));
  t.same(Object.fromEntries(await restoredFiles(t, dest, path.join(dir, 'r1'))), { 'vda.raw': want }, 'it restores, its file identical');

  const data = path.join(dir, 'data');
  const a = await openNs(t, data);
  await a.ns.shares.create('vm1');
  const wanted = new Map<string, string>();
  await point(a, wanted, 'new.bin', bytes(64 * KiB, 9));
  const r = await drCopy({ dataDir: data, to: dest, version: 'test', snapshot: () => a.store.snapshotForCopy() });
  t.ok(r.databaseBase, 'a copy over a version-1 copy writes a base log');
  t.equal((await readManifest(dest)).version, 2, 'the directory is version 2 now');
  t.notOk(fs.existsSync(path.join(dest, 'dr-copies', m.copy)), 'the version-1 records file is pruned');
  t.same(Object.fromEntries(await restoredFiles(t, dest, path.join(dir, 'r2'))), Object.fromEntries(wanted), 'and the new copy restores identical');
});
