// A replication token fetches by fingerprint only the segments of the points it was given
// (control/replicas.ts): a segment of another share is answered as absent, as one the store
// lacks, by both the single and the batch form; a point it adds later grants its new segments;
// the admin token is served any segment. In-process: the routes only map the answers (null ->
// 404, a QueryReply bit), tested with a real second appliance in clone-appliance.test.ts.

import crypto from 'node:crypto';
import t from 'tap';
import { ReplicaService } from '../src/control/replicas.js';
import { segmentsOf } from './helpers/clone-source.js';
import { openNs, writeFile } from './helpers/ns.js';
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
