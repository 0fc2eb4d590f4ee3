// The DR copy's crash rule (src/policy/DR-FORMAT.md, "Write order") under power cuts, not only
// kills: the destination lives on the power-loss file system (test/powerfail/), which drops
// everything that was not made durable, as badly as POSIX allows. Copies are cut at different
// moments (while containers are copied, while the database records are written, between the
// manifest and the prune, just after the copy returned); after the power comes back the
// directory must verify, its manifest must name the last copy that completed before the cut (or
// the cut one, if its manifest had landed) and never less than a copy that had returned, the
// copy it names must restore to exactly the files of its moment, and the next copy must
// complete over the leftovers. Then a clone copy's directory archive and a restore to a directory,
// each into folders it makes on the same disk, must survive a cut that comes after they returned.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { restorePoint } from '../src/backup/restore.js';
import { archivePoint, verifyArchive } from '../src/policy/archive.js';
import { drCopy } from '../src/policy/dr-copy.js';
import { readManifest } from '../src/policy/dr-format.js';
import { drRestore } from '../src/policy/dr-restore.js';
import { drVerify } from '../src/policy/dr-verify.js';
import { writeDatabase } from '../src/store/store.js';
import { distinctBytes as bytes } from './helpers/data.js';
import { openNs, readFile, writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';
import { startPowerfail } from './powerfail/powerfail.js';

const MiB = 1024 * 1024;
const SEED = Number(process.env.VMVAULT_DR_POWER_SEED ?? 20261205);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');



type Moment = 'container' | 'database' | 'manifest' | 'returned';

t.test('copies and restores under power cuts: DR copies, a clone archive, restores to a directory', async (t) => {
  const dir = tmpDir(t, 'vmvault-power-copies-');
  const data = path.join(dir, 'data');
  const a = await openNs(t, data);
  t.teardown(() => a.close().catch(() => {}));
  const pf = await startPowerfail(t, dir, SEED);
  const dest = path.join(pf.mount, 'dr');

  // The files each copy should hold, by copy id; `wanted` is the set as of the copy under way.
  const expected = new Map<string, Map<string, string>>();
  const wanted = new Map<string, string>();
  await a.ns.shares.create('vm1');
  const add = async (name: string, b: Buffer) => {
    await writeFile(a.ns, `/vm1/${name}`, b);
    await a.ns.snapshots.create('vm1', name.replace(/\W/g, ''));
    wanted.set(name, sha(b));
  };
  await add('vda.raw', bytes(6 * MiB, 1));
  const first = await drCopy({ dataDir: data, to: dest, version: 'test', snapshot: () => a.store.snapshotForCopy() });
  expected.set(first.copy, new Map(wanted));
  let lastReturned = first.copy;

  const moments: Moment[] = ['container', 'database', 'manifest', 'returned'];
  for (const [round, moment] of moments.entries()) {
    await add(`disk${round}.raw`, Buffer.concat([bytes(2 * MiB, 10 + round), Buffer.alloc(MiB), bytes(MiB, 1)]));
    const pending = new Map(wanted);
    let cut: Promise<unknown> | undefined;
    const cutNow = () => {
      cut ??= pf.cut();
    };
    let containers = 0;
    const result = await drCopy({
      dataDir: data,
      to: dest,
      version: 'test',
      snapshot: () => a.store.snapshotForCopy(),
      afterContainer: async () => {
        // After the first container is in place, so some of this copy is on the disk.
        if (moment === 'container' && ++containers === 1) {
          cutNow();
          await cut;
        }
      },
      progress: (_d, _t, phase) => {
        if (moment === 'database' && phase === 'copying the database') cutNow();
      },
      log: (line) => {
        if (moment === 'manifest' && line.includes('complete in')) cutNow();
      },
    }).then(
      (r) => r,
      (err: Error) => err,
    );
    if (result instanceof Error) t.comment(`round ${round} (${moment}): the cut copy failed: ${result.message}`);
    else {
      t.comment(`round ${round} (${moment}): copy ${result.copy} returned`);
      expected.set(result.copy, pending);
      // A copy that returned is durable: whatever the cut (requested before it, landing after), it survives.
      lastReturned = result.copy;
      if (moment === 'returned') cutNow();
    }
    const report = (await cut) as { undone: string[] } | undefined;
    t.ok(report, `round ${round}: the power was cut (${moment})`);
    t.comment(`round ${round}: the cut undid ${report?.undone.length ?? 0} operations`);
    await pf.powerOn();

    const v = await drVerify(dest);
    t.same(v.report.problems, [], `round ${round} (${moment}): the DR directory verifies after the cut`);
    const m = v.manifest;
    if (moment === 'manifest' && result instanceof Error && m.copy !== lastReturned) {
      // Cut between its manifest and its prune: the cut copy exists, whole.
      t.notOk(expected.has(m.copy), `round ${round}: the manifest names the cut copy ${m.copy}`);
      expected.set(m.copy, pending);
    } else {
      t.equal(m.copy, lastReturned, `round ${round}: the manifest names the last copy that returned, ${lastReturned}`);
    }
    lastReturned = m.copy;

    // The copy the manifest names restores to exactly its moment's files.
    const target = path.join(dir, `restored-${round}`);
    await drRestore({ from: dest, data: target, writeDatabase });
    const b = await openNs(t, target);
    try {
      const want = expected.get(m.copy)!;
      const names = (await b.ns.fs.readdir('/vm1')).map((e) => e.name).filter((n) => !n.startsWith('.')).sort();
      t.same(names, [...want.keys()].sort(), `round ${round}: the restored share holds the files of copy ${m.copy}`);
      for (const [name, digest] of want) t.equal(sha(await readFile(b.ns, `/vm1/${name}`)), digest, `round ${round}: ${name} restored identical`);
    } finally {
      await b.close();
    }
    fs.rmSync(target, { recursive: true, force: true });
  }

  // Over whatever the cuts left behind, the next copy completes and reuses what is whole.
  const last = await drCopy({ dataDir: data, to: dest, version: 'test', snapshot: () => a.store.snapshotForCopy() });
  t.ok(last.containersReused > 0, `the copy after the cuts reused ${last.containersReused} of ${last.containers} containers`);
  const v = await drVerify(dest);
  t.same(v.report.problems, [], 'and it verifies');
  t.equal(v.manifest.copy, last.copy);

  // The clone copies' directory archive (archive.ts), into folders it makes on the same disk: a
  // point archived before the cut is still there, whole, after it.
  const arch = path.join(pf.mount, 'tape', 'staging');
  const r = await archivePoint(a.ns, arch, 'vm1', 'vm1', 'vdaraw');
  t.ok(r.segmentsWritten > 0, `archived ${r.segmentsWritten} segments`);
  await pf.cut();
  await pf.powerOn();
  const av = await verifyArchive(arch).catch((err: Error) => err);
  t.notOk(av instanceof Error, `the archive is still there after the cut${av instanceof Error ? `: ${av.message}` : ''}`);
  if (!(av instanceof Error)) {
    t.equal(av.points, 1, 'holding its point');
    t.same(av.problems, [], 'whole');
  }

  // `vmvault restore --to DIR`: a restore that said it was done keeps its disks through a cut.
  const vmJson = Buffer.from(JSON.stringify({ version: 1, name: 'vm1' }));
  await writeFile(a.ns, '/vm1/vm.json', vmJson);
  await a.ns.snapshots.create('vm1', 'withjson');
  const out = path.join(pf.mount, 'restores', 'vm1');
  for (const format of ['raw', 'qcow2'] as const) {
    const to = path.join(out, format);
    const written = await restorePoint(a.ns, 'vm1', 'withjson', ['vda'], to, { format });
    t.equal(written.length, 2, `${format}: the disk and vm.json restored`);
  }
  await pf.cut();
  await pf.powerOn();
  t.equal(sha(fs.readFileSync(path.join(out, 'raw', 'vda.raw'))), wanted.get('vda.raw'), 'the raw disk restored before the cut is whole after it');
  t.equal(fs.readFileSync(path.join(out, 'raw', 'vm.json'), 'utf8'), vmJson.toString(), 'and its vm.json');
  const cmp = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', path.join(out, 'raw', 'vda.raw'), path.join(out, 'qcow2', 'vda.qcow2')], { encoding: 'utf8' });
  t.equal(cmp.status, 0, `the qcow2 disk restored before the cut is whole after it: ${cmp.stdout.trim()}${cmp.stderr.trim()}`);
  t.equal(fs.readFileSync(path.join(out, 'qcow2', 'vm.json'), 'utf8'), vmJson.toString(), 'and its vm.json');
});
