// The DR copy in one process, on a real store and namespace (no mount): a copy taken while a
// writer keeps writing restores to a data directory whose store verifies and holds every share
// and snapshot as of the checkpoint, the lock included; the second copy copies only new
// containers and the first stays usable until the second's manifest lands; a flipped byte or a
// missing file is named by verify and refused by restore, which writes nothing then; a
// non-empty target is refused. (The appliance-process test is dr-appliance.test.ts.)

import t from 'tap';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { runGc, runVerify } from '../src/namespace/maintenance.js';
import { drCopy } from '../src/policy/dr-copy.js';
import { readManifest } from '../src/policy/dr-format.js';
import { drRestore } from '../src/policy/dr-restore.js';
import { drVerify } from '../src/policy/dr-verify.js';
import { writeDatabase } from '../src/store/store.js';
import { distinctBytes as bytes } from './helpers/data.js';
import { openNs, readFile, writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');



t.test('copy while writing, restore, incremental, damage', async (t) => {
  const dir = tmpDir(t, 'vmvault-dr-');
  const data = path.join(dir, 'data');
  const dest = path.join(dir, 'dr');
  const a = await openNs(t, data);
  t.teardown(() => a.close().catch(() => {}));
  const files: Record<string, Buffer> = {
    'vm1/vda.raw': bytes(9 * MiB, 1),
    'vm2/vda.raw': Buffer.concat([bytes(3 * MiB, 2), Buffer.alloc(4 * MiB), bytes(2 * MiB, 1)]),
  };
  for (const share of ['vm1', 'vm2', 'busy']) await a.ns.shares.create(share);
  for (const [p, b] of Object.entries(files)) await writeFile(a.ns, '/' + p, b);
  await a.ns.snapshots.create('vm1', 'p1');
  await a.ns.snapshots.create('vm2', 'p1');
  const until = Date.now() + 7 * 86_400_000;
  await a.ns.snapshots.lock('vm1', 'p1', until);
  fs.writeFileSync(path.join(data, 'vms.json'), JSON.stringify({ version: 1, vms: ['vm1', 'vm2'] }));
  fs.mkdirSync(path.join(data, 'backups'));
  fs.writeFileSync(path.join(data, 'backups', 'vm1.json'), '{"version":1,"points":["p1"]}');
  fs.writeFileSync(path.join(data, 'policy-clock.json'), JSON.stringify({ version: 1, highWater: 1000 }));
  fs.writeFileSync(path.join(data, 'quiesce-journal.json'), '{"version":1,"open":[]}');
  fs.writeFileSync(path.join(data, 'vms.json.tmp'), 'half');
  await a.store.sync();

  // A writer keeps writing and committing (fsync) new files into `busy` during the copy.
  let stop = false;
  let written = 0;
  const writer = (async () => {
    while (!stop) {
      const fh = await a.ns.fs.create(`/busy/f${written}`, 0o644);
      await a.ns.write(fh, 0, bytes(512 * 1024, 100 + written));
      await a.ns.fs.fsync(fh);
      await a.ns.fs.release(fh);
      written++;
    }
  })();
  let during = 0;
  const first = await drCopy({
    dataDir: data, to: dest, version: 'test', snapshot: () => a.store.snapshotForCopy(),
    afterContainer: async () => { during = written; await new Promise((r) => setTimeout(r, 20)); },
  });
  stop = true;
  await writer;
  t.ok(during > 0 && written > 0, `the writer wrote during the copy (${written} files)`);
  t.ok(first.containersCopied > 2, `containers copied: ${first.containersCopied}`);
  t.equal(first.containersReused, 0);
  const m1 = await readManifest(dest);
  t.notOk(m1.files.some((f) => f.rel === 'vms.json.tmp' || f.rel === 'quiesce-journal.json'), 'temporary files and the quiesce journal stay behind');
  t.ok(m1.files.some((f) => f.rel === 'backups/vm1.json'), 'state files in folders travel');
  t.same(fs.readdirSync(path.join(data, 'dr-pin')), [], 'the pins are gone after the copy');
  const v1 = await drVerify(dest);
  t.same(v1.report.problems, [], 'the copy verifies');

  // Restore it and open what was restored.
  const target = path.join(dir, 'restored');
  const r = await drRestore({ from: dest, data: target, writeDatabase });
  t.equal(r.copy, m1.copy);
  const b = await openNs(t, target);
  t.teardown(() => b.close().catch(() => {}));
  for (const [p, want] of Object.entries(files)) {
    t.equal(sha(await readFile(b.ns, '/' + p)), sha(want), `${p} identical`);
    const [share, ...rest] = p.split('/');
    t.equal(sha(await readFile(b.ns, `/${share}/.snapshots/p1/${rest.join('/')}`)), sha(want), `${share}@p1 identical`);
  }
  const snap = await b.ns.snapshots.get('vm1', 'p1');
  t.equal(snap.lockedUntil, new Date(until).toISOString(), 'the lock travelled');
  await t.rejects(b.ns.snapshots.remove('vm1', 'p1'), { code: 'LOCKED' }, 'and the restored store enforces it');
  // The busy share holds a prefix of the writer's files, each whole.
  const names = (await b.ns.fs.readdir('/busy')).map((e) => e.name).filter((n) => n.startsWith('f'));
  t.ok(names.length <= written, `busy share: ${names.length} of ${written} files`);
  for (const n of names) {
    const i = Number(n.slice(1));
    const got = await readFile(b.ns, `/busy/${n}`);
    if (got.length !== 0) t.equal(sha(got), sha(bytes(512 * 1024, 100 + i)), `busy/${n} whole`);
  }
  const ver = await runVerify(b.ns, { full: true });
  t.same(ver.problems, [], 'the restored store verifies in full');
  t.equal(JSON.parse(fs.readFileSync(path.join(target, 'vms.json'), 'utf8')).vms.length, 2, 'vms.json restored');
  t.ok(JSON.parse(fs.readFileSync(path.join(target, 'policy-clock.json'), 'utf8')).highWater >= Date.parse(m1.takenAt), 'the lock clock mark is at least the checkpoint');
  t.notOk(fs.existsSync(path.join(target, 'quiesce-journal.json')));
  await b.close();

  // Incremental: more data, second copy reuses sealed containers; the old copy's folder goes.
  await writeFile(a.ns, '/vm1/vdb.raw', bytes(5 * MiB, 7));
  await a.ns.snapshots.create('vm1', 'p2');
  const second = await drCopy({ dataDir: data, to: dest, version: 'test', snapshot: () => a.store.snapshotForCopy() });
  t.ok(second.containersReused >= first.containersCopied - 2, `second copy reused ${second.containersReused} containers`);
  t.ok(second.containersCopied >= 1 && second.containersCopied < second.containers, `and copied ${second.containersCopied} of ${second.containers}`);
  t.ok(second.bytesWritten < second.bytesTotal, `second copy wrote ${second.bytesWritten} of the ${second.bytesTotal} bytes it names`);
  t.equal(second.previous, first.copy);
  t.notOk(fs.existsSync(path.join(dest, 'dr-copies', first.copy)), 'the first copy folder was pruned after the second landed');
  t.same((await drVerify(dest)).report.problems, []);

  // Refusals: a non-empty target; a flipped byte; a missing file.
  await t.rejects(drRestore({ from: dest, data: target, writeDatabase }), { code: 'NOT_EMPTY' });
  const m2 = await readManifest(dest);
  const victim = m2.containers.find((c) => c.sealed)!;
  const vp = path.join(dest, victim.path);
  const buf = fs.readFileSync(vp);
  buf[Math.floor(buf.length / 2)] ^= 0x40;
  fs.writeFileSync(vp, buf);
  const gone = m2.files.find((f) => f.rel === 'vms.json')!;
  fs.rmSync(path.join(dest, gone.path));
  const v2 = await drVerify(dest);
  t.same(v2.report.problems.map((p) => [p.path, p.problem]).sort(), [[gone.path, 'missing'], [victim.path, 'checksum']].sort(), 'verify names the flipped container and the missing file');
  const t2 = path.join(dir, 'restored2');
  const refused = await drRestore({ from: dest, data: t2, writeDatabase }).then(() => undefined, (err: Error & { code?: string }) => err);
  t.equal(refused?.code, 'CORRUPT_COPY', 'restore refuses the damaged copy');
  t.match(refused?.message, victim.path, 'naming the damaged container');
  t.match(refused?.message, 'state file vms.json', 'and the missing file');
  t.notOk(fs.existsSync(t2), 'nothing written for a damaged copy');
  // A damaged manifest is named too.
  const mf = path.join(dest, 'dr-manifest.json');
  const text = fs.readFileSync(mf, 'utf8');
  fs.writeFileSync(mf, text.replace(/"size": (\d)/, '"size": 9$1'));
  await t.rejects(drVerify(dest), { code: 'CORRUPT_COPY', message: /dr-manifest\.json is damaged/ });
});

t.test('GC removing containers while the copy reads them: the pins keep their bytes', async (t) => {
  const dir = tmpDir(t, 'vmvault-dr-gc-');
  const data = path.join(dir, 'data');
  const dest = path.join(dir, 'dr');
  const a = await openNs(t, data);
  t.teardown(() => a.close().catch(() => {}));
  await a.ns.shares.create('gone');
  await a.ns.shares.create('kept');
  const goneBytes = bytes(10 * MiB, 31);
  const keptBytes = bytes(3 * MiB, 32);
  // fsync before the copy: what an open file holds only in its buffers is not in any checkpoint.
  for (const [p, bytes] of [['/gone/disk.raw', goneBytes], ['/kept/disk.raw', keptBytes]] as const) {
    const fh = await a.ns.fs.create(p, 0o644);
    await a.ns.write(fh, 0, bytes);
    await a.ns.fs.fsync(fh);
    await a.ns.fs.release(fh);
  }
  let removed = 0;
  const copy = await drCopy({
    dataDir: data,
    to: dest,
    version: 'test',
    // The snapshot first; then the share goes and GC deletes its containers before the copy reads them.
    snapshot: async () => {
      const s = await a.store.snapshotForCopy();
      await a.ns.shares.remove('gone', { force: true, deleteSnapshots: true });
      await a.store.sync();
      const gc = await runGc(a.ns, { copyForwardBelow: 0.99 });
      removed = gc.containersRemoved + gc.containersRewritten;
      return s;
    },
  });
  t.ok(removed > 0, `GC removed or rewrote ${removed} containers during the copy`);
  t.ok(copy.containers > 0);
  const target = path.join(dir, 'restored');
  await drRestore({ from: dest, data: target, writeDatabase });
  const b = await openNs(t, target);
  t.teardown(() => b.close().catch(() => {}));
  t.equal(sha(await readFile(b.ns, '/gone/disk.raw')), sha(goneBytes), 'the share GC emptied is whole in the copy (as of its checkpoint)');
  t.equal(sha(await readFile(b.ns, '/kept/disk.raw')), sha(keptBytes));
  t.same((await runVerify(b.ns, { full: true })).problems, [], 'the restored store verifies in full');
  t.same(fs.readdirSync(path.join(data, 'dr-pin')), [], 'no pin left behind');
});
