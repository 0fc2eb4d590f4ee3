// Clone copies to a directory (issue 14 part B): the archive of two points of a VM verifies, the
// second archive writes only the segments the first lacks, an archived file reads back
// identical, and a flipped byte in a container is named: container, offset, point and file.
// Bad input: bad --clone strings, an unknown destination, a relative --dir.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { extractFile, openArchiveSource, verifyArchive } from '../src/policy/archive.js';
import { parseCloneSpec, parseCloneSpecs } from '../src/policy/clone-spec.js';
import { cloneSource, day1Disk, day2Disk, segmentsOf } from './helpers/clone-source.js';
import { tmpDir } from './helpers/tmpdir.js';
import { restorePoint } from '../src/backup/restore.js';
import { BestCopy } from '../src/policy/best-copy.js';

t.test('archive two points, incremental; verify; read back; a flipped byte is named', async (t) => {
  const src = await cloneSource(t);
  const out = tmpDir(t, 'vmvault-archive-');
  const dir = path.join(out, 'tape');
  const d1 = day1Disk();
  const d2 = day2Disk(d1);
  const lock = Date.now() + 86_400_000;
  await src.point('vm1', 'P1', d1, lock);
  await src.point('vm1', 'P2', d2);
  await src.clones.addDestination({ name: 'tape', dir });

  const r1 = await src.clones.clone('vm1', 'tape', 'P1');
  t.equal(r1.kind, 'dir');
  const a1 = (r1 as { archive: { segments: number; segmentsWritten: number; skipped: boolean } }).archive;
  const s1 = await segmentsOf(src.ns, 'vm1', 'P1', 'vda.raw');
  const s2 = await segmentsOf(src.ns, 'vm1', 'P2', 'vda.raw');
  t.ok(a1.segmentsWritten >= s1.size, `first archive writes every segment (${a1.segmentsWritten} >= ${s1.size})`);
  t.notOk(a1.skipped);

  const r2 = await src.clones.clone('vm1', 'tape', undefined); // newest: P2
  t.equal(r2.point, 'P2');
  const a2 = (r2 as { archive: { segmentsWritten: number } }).archive;
  const fresh = [...s2.keys()].filter((k) => !s1.has(k));
  // vm.json changed too: one more segment, of its own.
  t.equal(a2.segmentsWritten, fresh.length + 1, `the second archive writes only the new segments (${fresh.length} of vda.raw + vm.json)`);
  t.ok(fresh.length > 0 && fresh.length < s2.size / 4, `few new segments: ${fresh.length} of ${s2.size}`);

  const again = await src.clones.clone('vm1', 'tape', 'P2');
  t.equal((again as { archive: { skipped: boolean } }).archive.skipped, true, 'a re-run finds the point there and skips it');
  t.same(src.clones.copiesOf('vm1', 'P2').map((c) => c.destination), ['tape'], 'the copy is recorded');
  t.ok(src.clones.copiesOf('vm1', 'P2')[0].verifiedAt, 'verified after writing');

  const v = await verifyArchive(dir);
  t.equal(v.points, 2);
  t.same(v.problems, [], 'the archive verifies');
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'points', 'vm1', 'P1.json'), 'utf8'));
  t.equal(manifest.lockedUntil, new Date(lock).toISOString(), 'the manifest carries the point\'s lock');

  for (const [point, disk] of [
    ['P1', d1],
    ['P2', d2],
  ] as const) {
    const file = path.join(out, `${point}.raw`);
    await extractFile(dir, 'vm1', point, 'vda.raw', file);
    t.ok(fs.readFileSync(file).equals(disk), `${point}'s vda.raw reads back identical from the archive`);
  }

  const source = await src.clones.openSource('tape', 'vm1', 'P2');
  const [fp, len] = [...s2.entries()][3];
  const got = await source.fetch(Buffer.from(fp, 'hex'));
  t.equal(got?.length, len, 'the archive serves a segment by fingerprint');
  t.equal(await source.fetch(Buffer.alloc(32, 7)), null, 'and null for one it lacks');
  await source.close();
  await t.rejects(src.clones.openSource('tape', 'vm1', 'P9'), { code: 'NOT_FOUND' }, 'no source for a point never copied');

  // Flip one byte in the middle of a container's payloads.
  const cdir = path.join(dir, 'containers');
  const cname = fs.readdirSync(cdir).sort()[0];
  const cfile = path.join(cdir, cname);
  const buf = fs.readFileSync(cfile);
  const at = Math.floor(buf.length / 2);
  buf[at] ^= 0x40;
  fs.writeFileSync(cfile, buf);
  const bad = await src.clones.verifyDestination('tape');
  const seg = bad.problems.find((p) => p.kind === 'corrupt-segment') as { container?: string; offset?: number; point?: string; file?: string; message: string } | undefined;
  t.ok(seg, `the flipped byte is found: ${bad.problems.map((p) => p.message).join('; ')}`);
  t.equal(seg?.container, cname, 'named: the container');
  t.ok(seg!.offset! <= at && at - seg!.offset! < 70 * 1024, `named: the record's offset ${seg?.offset} (byte ${at})`);
  t.match(seg?.message, new RegExp(`container ${cname} at offset ${seg?.offset}.*point vm1/P[12], file vda\\.raw`), 'named: container, offset, point and file in the message');
  const one = await src.clones.verifyDestination('tape', 'P1');
  t.ok(one.problems.length > 0 && one.points === 1, 'verify --point checks one point');
  await t.rejects(src.clones.verifyDestination('tape', 'nope'), { code: 'NOT_FOUND' });
});

t.test('a point the primary no longer holds is restored whole from the archive that does, saying so', async (t) => {
  const src = await cloneSource(t);
  const out = tmpDir(t, 'vmvault-archive-');
  const d1 = day1Disk();
  await src.point('vm1', 'P1', d1);
  await src.point('vm1', 'P2', day2Disk(d1));
  await src.clones.addDestination({ name: 'tape', dir: path.join(out, 'tape') });
  await src.clones.clone('vm1', 'tape', 'P1');
  await src.ns.snapshots.remove('vm1', 'P1'); // deleted by hand (no lock)
  const log: string[] = [];
  const best = new BestCopy(src.ns, src.clones);
  const plan = await best.plan('vm1', 'vm1', 'P1', (l) => log.push(l));
  t.ok(plan.source, 'the plan reads the point from a copy');
  t.equal(log[0], 'the primary no longer holds vm1 point P1; restoring it from archive tape', 'the log says which copy');
  const to = path.join(out, 'restored');
  const files = await restorePoint(src.ns, 'vm1', 'P1', ['vda'], to, { format: 'raw', rescue: plan.rescue, source: plan.source });
  await plan.finish(true);
  t.same(files.map((f) => path.basename(f)), ['vda.raw', 'vm.json']);
  t.ok(fs.readFileSync(path.join(to, 'vda.raw')).equals(d1), 'the disk is identical to the point');
  t.match(fs.readFileSync(path.join(to, 'vm.json'), 'utf8'), /"point":"P1"/, 'and vm.json is the point\'s');
  t.same((await plan.source!.files()).map((f) => f.path).sort(), ['vda.raw', 'vm.json']);
  // A point no copy holds: a clear refusal naming it.
  await src.ns.snapshots.remove('vm1', 'P2');
  await t.rejects(best.plan('vm1', 'vm1', 'P2', () => {}), { code: 'NOT_FOUND', message: /the primary no longer holds vm1 point P2, and no clone or archive copy of it is recorded/ });
});

t.test('bad input', async (t) => {
  t.same(parseCloneSpec('daily 02:00 -> site-b'), { spec: 'daily 02:00 -> site-b', cron: '0 2 * * *', destination: 'site-b' });
  t.same(parseCloneSpec('0 2 * * * -> site-b').cron, '0 2 * * *');
  t.same(parseCloneSpec('weekly sun 03:30 -> dr').cron, '30 3 * * 0');
  t.same(parseCloneSpec('hourly -> x').cron, '0 * * * *');
  for (const bad of ['daily 2am -> b', 'daily 25:00 -> b', 'nightly -> b', 'daily 02:00', 'daily 02:00 ->', '-> b', 'daily 02:00 -> bad/name', '61 * * * * -> b', 'weekly someday 01:00 -> b']) {
    t.throws(() => parseCloneSpec(bad), { code: 'INVALID_ARGUMENT', message: /--clone/ }, `refused: ${bad}`);
  }
  t.throws(() => parseCloneSpecs(['daily 02:00 -> b', 'daily  02:00  ->  b']), { code: 'INVALID_ARGUMENT', message: /twice/ });
  t.throws(() => parseCloneSpec(42), { code: 'INVALID_ARGUMENT' });

  const src = await cloneSource(t);
  await src.point('vm1', 'P1', Buffer.alloc(4096, 1));
  await t.rejects(src.clones.clone('vm1', 'nowhere', undefined), { code: 'NOT_FOUND', message: /no destination named nowhere/ });
  await t.rejects(src.clones.addDestination({ name: 'rel', dir: 'relative/path' }), { code: 'INVALID_ARGUMENT', message: /absolute/ });
  await t.rejects(src.clones.addDestination({ name: 'both', dir: '/tmp/x', appliance: 'https://h:7443', token: 'x'.repeat(20) }), { code: 'INVALID_ARGUMENT' });
  await t.rejects(src.clones.addDestination({ name: 'nt', appliance: 'https://h:7443' }), { code: 'INVALID_ARGUMENT', message: /--token/ });
  await t.rejects(src.clones.addDestination({ name: 'np', appliance: 'ftp://h', token: 'x'.repeat(20) }), { code: 'INVALID_ARGUMENT' });
  await t.rejects(src.clones.addDestination({ name: 'pin', appliance: 'https://h:7443', token: 'x'.repeat(20), pin: 'abc' }), { code: 'INVALID_ARGUMENT', message: /SHA-256/ });
  await t.rejects(src.clones.addDestination({ name: '-bad', dir: '/tmp/x' }), { code: 'INVALID_ARGUMENT' });
  const d = await src.clones.addDestination({ name: 'site-b', appliance: 'https://h.example:7443', token: 'vva_' + 'ab'.repeat(32) });
  t.notOk(JSON.stringify(d).includes('abab'), 'the view carries no token');
  t.notOk(JSON.stringify(src.clones.listDestinations()).includes('abab'), 'nor does the list');
  const st = fs.statSync(path.join(src.dir, 'destinations.json'));
  t.equal(st.mode & 0o777, 0o600, 'destinations.json is mode 0600');
  await t.rejects(src.clones.addDestination({ name: 'site-b', dir: '/tmp/y' }), { code: 'ALREADY_EXISTS' });
  await t.rejects(src.clones.clone('vm1', 'site-b', 'P7'), { code: 'NOT_FOUND', message: /no restore point P7/ });
});
