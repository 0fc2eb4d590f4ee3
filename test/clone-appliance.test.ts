// Clone copies to a second real appliance (issue 14 part B): a second appliance process with
// its own data directory, in a network namespace (it serves HTTPS on the namespace's address
// with its self-signed certificate; the source pins it). The source is this process's store
// and namespace (no mount needed: a copy reads through the namespace).
//
// The first clone sends every segment; the second clone of the changed VM sends exactly its new
// segments (bytes on the wire vs their size); a re-run skips the point; the destination keeps
// the point's lock and enforces it; a replication token writes only its own clone targets; a
// wrong token and a pin mismatch are refused; and the copy restores identical: the destination,
// stopped, has its data directory opened and the points' files read back.

import t from 'tap';
import path from 'node:path';
import { TransferConnection } from '../src/transfer/client.js';
import { snapshotFiles } from '../src/namespace/snapshot-files.js';
import { cloneSource, day1Disk, day2Disk, segmentsOf } from './helpers/clone-source.js';
import { makeNetNs, netnsAvailable } from './helpers/netns.js';
import { nsAppliance } from './helpers/ns-appliance.js';
import { openNs, readFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const skip = netnsAvailable();

t.test('clone to a second appliance: fingerprint-first, incremental, locked, verified, identical', { skip }, async (t) => {
  const net = await makeNetNs(t);
  const dir = tmpDir(t, 'vmvault-clone-dst-');
  const remote = await nsAppliance(t, net, dir);
  const admin = await TransferConnection.open({ url: remote.url, token: remote.admin, pinSha256: remote.pin });
  t.teardown(() => admin.close());
  const made = await admin.json<{ token: string; scope: string }>('POST', '/api/v1/agents/tokens', { name: 'site-a', scope: 'replication' });
  t.equal(made.scope, 'replication');

  const src = await cloneSource(t);
  const d1 = day1Disk();
  const d2 = day2Disk(d1);
  const lock = Date.now() + 3 * 86_400_000;
  await src.point('vm1', 'P1', d1, lock);

  // Bad input first: a wrong token, a pin that does not match, an address that does not answer.
  await src.clones.addDestination({ name: 'wrong-token', appliance: remote.url, token: 'vva_' + '0'.repeat(64), pin: remote.pin });
  await t.rejects(src.clones.clone('vm1', 'wrong-token', 'P1'), { code: 'UNAUTHORIZED' }, 'a wrong token is refused');
  await src.clones.addDestination({ name: 'wrong-pin', appliance: remote.url, token: made.token, pin: 'ab'.repeat(32) });
  await t.rejects(src.clones.clone('vm1', 'wrong-pin', 'P1'), { code: 'UNAUTHORIZED', message: /does not match the pinned/ }, 'a pin mismatch is refused before the token crosses');
  await src.clones.addDestination({ name: 'site-b', appliance: remote.url, token: made.token, pin: remote.pin });

  const r1 = await src.clones.clone('vm1', 'site-b', 'P1');
  const c1 = (r1 as { appliance: { segments: number; segmentsSent: number; bytesSent: number; skipped: boolean; verifiedAt: string } }).appliance;
  const s1 = await segmentsOf(src.ns, 'vm1', 'P1', 'vda.raw');
  t.equal(c1.segmentsSent, s1.size + 1, `the first clone sends every distinct segment (${s1.size} of vda.raw, 1 of vm.json)`);
  t.ok(c1.verifiedAt, 'verified on the destination');

  await src.point('vm1', 'P2', d2);
  const s2 = await segmentsOf(src.ns, 'vm1', 'P2', 'vda.raw');
  const fresh = [...s2.entries()].filter(([k]) => !s1.has(k));
  const freshBytes = fresh.reduce((s, [, n]) => s + n, 0);
  const r2 = await src.clones.clone('vm1', 'site-b', undefined);
  t.equal(r2.point, 'P2');
  const c2 = (r2 as { appliance: { segments: number; segmentsSent: number; segmentBytesSent: number; bytesSent: number; logicalBytes: number } }).appliance;
  t.equal(c2.segmentsSent, fresh.length + 1, `the second clone sends exactly the new segments (${fresh.length} of vda.raw, 1 of vm.json)`);
  // What else crosses: 36 bytes a segment asked, 37 a segment in the recipe, HTTP and verify.
  const overhead = 100 * (s2.size + 10) + 256 * 1024;
  t.ok(c2.bytesSent >= freshBytes, `bytes on the wire ${c2.bytesSent} >= the new segments' ${freshBytes} (incompressible)`);
  t.ok(c2.bytesSent <= freshBytes + overhead, `bytes on the wire ${c2.bytesSent} <= new segments ${freshBytes} + ${overhead} overhead`);
  t.ok(c2.bytesSent < c2.logicalBytes * 0.1, `${c2.bytesSent} bytes for a ${c2.logicalBytes}-byte point`);

  const r3 = await src.clones.clone('vm1', 'site-b', 'P2');
  t.equal((r3 as { appliance: { skipped: boolean } }).appliance.skipped, true, 'a re-run finds the point there (same roots) and skips it');
  t.same(src.clones.copiesOf('vm1', 'P1').map((c) => [c.destination, c.kind]), [['site-b', 'appliance']]);

  // The destination keeps the point's lock and enforces it, whoever asks.
  const snaps = await admin.json<{ snapshots: Array<{ name: string; lockedUntil?: string }> }>('GET', '/api/v1/replicas/shares/vm1/snapshots');
  t.equal(snaps.snapshots.find((s) => s.name === 'P1')?.lockedUntil, new Date(lock).toISOString(), 'the clone of P1 carries its lock end');
  await t.rejects(admin.request('DELETE', '/api/v1/shares/vm1/snapshots/P1'), { code: 'LOCKED' }, 'and the destination refuses to delete it (admin token)');

  // A replication token writes only into its own clone targets, and calls nothing else.
  await admin.json('POST', '/api/v1/shares', { name: 'private' });
  const repl = await TransferConnection.open({ url: remote.url, token: made.token, pinSha256: remote.pin });
  t.teardown(() => repl.close());
  await t.rejects(repl.json('POST', '/api/v1/replicas/shares', { share: 'private' }), { code: 'FORBIDDEN' }, 'may not claim a share it did not make');
  await t.rejects(repl.json('POST', '/api/v1/transfer/sessions', { protocol: 1, share: 'private', path: 'x', size: 1 }), { code: 'FORBIDDEN' }, 'may not send into it');
  await t.rejects(repl.json('POST', '/api/v1/replicas/shares/private/snapshots', { name: 'x' }), { code: 'FORBIDDEN' }, 'may not snapshot it');
  await t.rejects(repl.json('GET', '/api/v1/shares'), { code: 'FORBIDDEN' }, 'may not call admin routes');
  await t.rejects(repl.json('POST', '/api/v1/agents/register', { name: 'x' }), { code: 'FORBIDDEN' }, 'may not act as an agent');

  // The segment route serves a copy's segment by fingerprint (best-copy restore, repair).
  const source = await src.clones.openSource('site-b', 'vm1', 'P2');
  const [fp, len] = [...s2.entries()][5];
  t.equal((await source.fetch(Buffer.from(fp, 'hex')))?.length, len, 'the clone serves a segment by fingerprint');
  t.equal(await source.fetch(Buffer.alloc(32, 9)), null, 'and null for one it lacks');
  await source.close();

  // The clone restores identical: stop the destination, open its data, read the points back.
  await admin.close();
  await repl.close();
  await remote.stop();
  const { ns } = await openNs(t, remote.data);
  t.ok((await readFile(ns, '/vm1/.snapshots/P1/vda.raw')).equals(d1), 'P1 reads back identical from the second appliance');
  t.ok((await readFile(ns, '/vm1/.snapshots/P2/vda.raw')).equals(d2), 'P2 reads back identical from the second appliance');
  const mine = await snapshotFiles(src.ns, 'vm1', 'P2');
  const theirs = await snapshotFiles(ns, 'vm1', 'P2');
  t.same(
    theirs.map((f) => [f.path, f.version.root.toString('hex')]),
    mine.map((f) => [f.path, f.version.root.toString('hex')]),
    'the same files with the same segment-tree roots',
  );
});

t.test('a destination that does not answer fails the copy', async (t) => {
  const src = await cloneSource(t);
  await src.point('vm1', 'P1', Buffer.alloc(8192, 3));
  // A loopback port nobody listens on: refused at once.
  await src.clones.addDestination({ name: 'down', appliance: 'http://127.0.0.1:9', token: 'vva_' + '1'.repeat(64) });
  await t.rejects(src.clones.clone('vm1', 'down', 'P1'), { code: 'IO', message: /127\.0\.0\.1:9/ });
  t.same(src.clones.copiesOf('vm1', 'P1'), [], 'no copy recorded');
});
