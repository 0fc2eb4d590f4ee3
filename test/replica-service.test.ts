// The receiving side of clone copies (control/replicas.ts), in-process: the routes only map its
// answers (null -> 404, a QueryReply bit), tested with a real second appliance in
// clone-appliance.test.ts.
// - A replication token fetches by fingerprint only the segments of the points it was given: a
//   segment of another share is answered as absent, as one the store lacks, by both the single
//   and the batch form; a point it adds later grants its new segments; the admin token is
//   served any segment.
// - A snapshot names the point's files: a file an earlier point had and this one has not is
//   removed from the clone target before the snapshot, and the earlier point keeps it.

import crypto from 'node:crypto';
import t from 'tap';
import { ReplicaService } from '../src/control/replicas.js';
import { segmentsOf } from './helpers/clone-source.js';
import { snapshotFiles } from '../src/namespace/snapshot-files.js';
import { openNs, readFile, writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

t.test('a replication token is served only the segments of its own points', async (t) => {
  const dir = tmpDir(t, 'vmvault-replica-scope-');
  const { ns } = await openNs(t, dir);
  const replicas = await ReplicaService.open(ns, dir);
  const token = { admin: false, name: 'site-a' } as const;
  const admin = { admin: true } as const;

  await replicas.claim(token, 'vm1');
  await writeFile(ns, '/vm1/vda.raw', crypto.randomBytes(2 * MiB));
  await replicas.snapshot(token, 'vm1', 'P1');
  // Another share of this appliance, not the token's: its data must not be served to it.
  await ns.shares.create('private');
  await writeFile(ns, '/private/secret.raw', crypto.randomBytes(2 * MiB));
  await ns.snapshots.create('private', 'S1');

  const mine = [...(await segmentsOf(ns, 'vm1', 'P1', 'vda.raw')).keys()];
  const theirs = [...(await segmentsOf(ns, 'private', 'S1', 'secret.raw')).keys()];
  t.ok(mine.length >= 8 && theirs.length >= 8, `several segments each (${mine.length}, ${theirs.length})`);

  t.ok(await replicas.segment(token, mine[3]), 'a segment of its own point is served');
  t.equal(await replicas.segment(token, theirs[3]), null, "a segment of another share is answered as absent");
  t.ok(await replicas.segment(admin, theirs[3]), 'the admin token is served it');

  const asked = [mine[0], theirs[0], mine[1], theirs[1], 'ab'.repeat(32)];
  const got = await replicas.segments(token, asked, 64 * MiB);
  t.same(
    got.map((b) => b !== null),
    [true, false, true, false, false],
    'the batch form: its own served, the other share\'s and an unknown one absent alike',
  );
  t.same((await replicas.segments(admin, asked, 64 * MiB)).map((b) => b !== null), [true, true, true, true, false], 'the admin token: all the store holds');

  // A later point of its share grants that point's segments (the set follows the snapshots).
  await writeFile(ns, '/vm1/vdb.raw', crypto.randomBytes(MiB));
  const fresh = [...(await segmentsOf(ns, 'vm1', 'P1', 'vda.raw')).keys()];
  t.same(fresh, mine, 'P1 unchanged');
  await replicas.snapshot(token, 'vm1', 'P2');
  const added = [...(await segmentsOf(ns, 'vm1', 'P2', 'vdb.raw')).keys()];
  t.ok(await replicas.segment(token, added[0]), 'a segment of its new point is served');

  // A token that owns nothing here is refused outright.
  await t.rejects(replicas.segment({ admin: false, name: 'nobody' }, mine[0]), { code: 'FORBIDDEN' });
});

t.test("a point's snapshot holds its files only: a file an earlier point had is removed first", async (t) => {
  const dir = tmpDir(t, 'vmvault-replica-files-');
  const { ns } = await openNs(t, dir);
  const replicas = await ReplicaService.open(ns, dir);
  const token = { admin: false, name: 'site-a' } as const;
  await replicas.claim(token, 'vm1');
  const vda = crypto.randomBytes(256 * 1024);
  const vdb = crypto.randomBytes(256 * 1024);
  await writeFile(ns, '/vm1/vda.raw', vda);
  await writeFile(ns, '/vm1/vdb.raw', vdb);
  await writeFile(ns, '/vm1/vm.json', Buffer.from('{"disks":2}'));
  const p1 = await replicas.snapshot(token, 'vm1', 'P1', undefined, ['vda.raw', 'vdb.raw', 'vm.json']);
  t.same(p1.files.map((f) => f.path), ['vda.raw', 'vdb.raw', 'vm.json']);
  // P2: the VM lost its second disk; the sender sends vda.raw and vm.json and names them.
  await ns.fs.unlink('/vm1/vm.json');
  await writeFile(ns, '/vm1/vm.json', Buffer.from('{"disks":1}'));
  const p2 = await replicas.snapshot(token, 'vm1', 'P2', undefined, ['vda.raw', 'vm.json']);
  t.same(p2.files.map((f) => f.path), ['vda.raw', 'vm.json'], 'P2 holds the point\'s files only: vdb.raw is gone');
  t.same((await snapshotFiles(ns, 'vm1', 'P1')).map((f) => f.path), ['vda.raw', 'vdb.raw', 'vm.json'], 'P1 keeps vdb.raw');
  t.ok((await readFile(ns, '/vm1/.snapshots/P1/vdb.raw')).equals(vdb), 'and its bytes');
  t.ok((await readFile(ns, '/vm1/.snapshots/P2/vda.raw')).equals(vda), "P2's disk reads back");
  // A re-run of P2 (it exists) changes nothing; a bad list is refused.
  t.same((await replicas.snapshot(token, 'vm1', 'P2', undefined, ['vda.raw'])).files.map((f) => f.path), ['vda.raw', 'vm.json'], 'an existing point is kept as it is');
  await t.rejects(replicas.snapshot(token, 'vm1', 'P3', undefined, [7 as unknown as string]), { code: 'INVALID_ARGUMENT' });
});
