// Best copy against a real clone (issue 14's test "flip bytes in a primary container; the
// restore succeeds from the clone, identical, and says so"): the primary is this process's store
// and namespace with a VM point; the clone is a second appliance process in a network namespace
// (HTTPS, pinned, a replication token) that received the point by a clone copy. Bytes of the
// primary's containers are flipped; the restore reads those segments from the clone through
// clone's own SegmentSource (policy/copies.ts), is identical, names the clone in its log, and
// repairs the primary.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { restorePoint } from '../src/backup/restore.js';
import { runGc, runVerify } from '../src/namespace/maintenance.js';
import { BestCopy } from '../src/policy/best-copy.js';
import { internalsOf } from '../src/store/internals.js';
import { TransferConnection } from '../src/transfer/client.js';
import { encodeQueryReply, encodeSegments } from '../src/transfer/frames.js';
import { decodeSegmentsAnswer } from '../src/policy/copies.js';
import { fingerprint } from '../src/store/codec/fingerprint.js';
import { cloneSource, day1Disk, day2Disk } from './helpers/clone-source.js';
import { containerPath, flipByte, listContainers, readLayout, RECORD_HEADER_BYTES } from './helpers/containers.js';
import { makeNetNs, netnsAvailable } from './helpers/netns.js';
import { nsAppliance } from './helpers/ns-appliance.js';
import { tmpDir } from './helpers/tmpdir.js';

t.setTimeout(900_000);
const skip = netnsAvailable();

t.test('flipped bytes in the primary: the restore reads them from the clone appliance, identical, says so, repairs', { skip }, async (t) => {
  const net = await makeNetNs(t);
  const remote = await nsAppliance(t, net, tmpDir(t, 'vmvault-bestcopy-dst-'));
  const admin = await TransferConnection.open({ url: remote.url, token: remote.admin, pinSha256: remote.pin });
  const made = await admin.json<{ token: string }>('POST', '/api/v1/agents/tokens', { name: 'site-a', scope: 'replication' });
  await admin.close();

  const src = await cloneSource(t);
  const disk = day1Disk();
  await src.point('vm1', 'P1', disk);
  await src.clones.addDestination({ name: 'site-b', appliance: remote.url, token: made.token, pin: remote.pin });
  await src.clones.clone('vm1', 'site-b', 'P1');
  t.same(src.clones.copiesOf('vm1', 'P1').map((c) => c.destination), ['site-b'], 'the clone copy is recorded');

  // Damage: a payload byte flipped in three data records of the primary's sealed containers.
  await src.store.commit();
  const storeDir = path.join(src.dir, 'store');
  const recs = listContainers(storeDir).flatMap((id) => {
    try {
      return readLayout(storeDir, id).records.filter((r) => r.kind === 0 && r.rawLen > 2048).map((r) => ({ ...r, cid: id }));
    } catch {
      return []; // the open container
    }
  });
  t.ok(recs.length >= 3, `${recs.length} sealed data records to damage`);
  const picks = [recs[1], recs[Math.floor(recs.length / 2)], recs[recs.length - 2]];
  for (const r of picks) flipByte(containerPath(storeDir, r.cid), r.offset + RECORD_HEADER_BYTES + (r.storedLen >> 1));
  src.store.reader.clearCaches();
  internalsOf(src.store).cache.clear();

  const log: string[] = [];
  const best = new BestCopy(src.ns, src.clones);
  const plan = await best.plan('vm1', 'vm1', 'P1', (l) => log.push(l));
  const to = path.join(tmpDir(t), 'out');
  await restorePoint(src.ns, 'vm1', 'P1', ['vda'], to, { format: 'raw', rescue: plan.rescue });
  await plan.finish(true);
  t.ok(fs.readFileSync(path.join(to, 'vda.raw')).equals(disk), 'the restore is identical');
  for (const r of picks) {
    const hex = r.fp.toString('hex').slice(0, 16);
    t.ok(log.includes(`primary segment ${hex}… in container ${r.cid.toString(16).padStart(8, '0')} failed verification; read from clone site-b`), `the job log says segment ${hex} came from clone site-b`);
  }
  t.ok(log.some((l) => l.startsWith('repair of the primary: 3 segment(s) repaired')), `the primary was repaired (${log.at(-1)})`);
  src.store.reader.clearCaches();
  internalsOf(src.store).cache.clear();
  t.same((await runVerify(src.ns, { full: true })).problems, [], 'verify of the primary is clean afterwards');

  // A point the primary lost entirely (its snapshot deleted, the share's files too, GC run) is
  // restored whole from the clone, saying so.
  const disk2 = day2Disk(disk);
  await src.point('vm1', 'P2', disk2);
  await src.clones.clone('vm1', 'site-b', 'P2');
  await src.ns.snapshots.remove('vm1', 'P2');
  await src.ns.fs.unlink('/vm1/vda.raw');
  await src.ns.fs.unlink('/vm1/vm.json');
  await runGc(src.ns);
  const lost: string[] = [];
  const plan2 = await best.plan('vm1', 'vm1', 'P2', (l) => lost.push(l));
  t.equal(lost[0], 'the primary no longer holds vm1 point P2; restoring it from clone site-b', 'the log says which copy');
  const to2 = path.join(tmpDir(t), 'out2');
  await restorePoint(src.ns, 'vm1', 'P2', ['vda'], to2, { format: 'raw', source: plan2.source, rescue: plan2.rescue });
  await plan2.finish(true);
  t.ok(fs.readFileSync(path.join(to2, 'vda.raw')).equals(disk2), 'the lost point restores identical from the clone');
  t.match(fs.readFileSync(path.join(to2, 'vm.json'), 'utf8'), /"point":"P2"/);
  // What this store still holds is read here (GC keeps a container while any of it is live), the rest from the clone.
  t.comment(`${plan2.rescue.damage.length} segment(s) of P2 came from the clone`);

  // The batch form of the clone's segment route: one request, an answer per fingerprint.
  const source = await src.clones.openSource('site-b', 'vm1', 'P1');
  try {
    const want = [picks[0].fp, Buffer.alloc(32, 9), picks[2].fp];
    const got = await source.fetchMany!(want);
    t.equal(got.length, 3, 'an answer per fingerprint');
    t.ok(got[0] && fingerprint(got[0]).equals(picks[0].fp) && got[2] && fingerprint(got[2]).equals(picks[2].fp), 'the clone serves the segments it holds');
    t.equal(got[1], null, 'and null for one it lacks');
  } finally {
    await source.close();
  }
});

t.test('the batch answer of the segment route: a prefix of the list, then its segments; lies refused', async (t) => {
  const a = Buffer.from('segment a');
  const fps = [fingerprint(a), Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
  // The answer covers the first two of three (its bytes were bounded): a is there, the second is not.
  const answer = Buffer.concat([encodeQueryReply([false, true]), encodeSegments([{ fp: fps[0], len: a.length, codec: 0, payload: a }])]);
  const d = decodeSegmentsAnswer(answer, 3);
  t.same(d.absent, [false, true]);
  t.ok(d.segments[0].payload.equals(a));
  t.throws(() => decodeSegmentsAnswer(answer, 1), { code: 'INVALID_ARGUMENT' }, 'an answer covering more than was asked');
  t.throws(() => decodeSegmentsAnswer(Buffer.concat([encodeQueryReply([false, false]), encodeSegments([{ fp: fps[0], len: a.length, codec: 0, payload: a }])]), 2), { code: 'INVALID_ARGUMENT' }, 'fewer segments than its reply says');
  t.throws(() => decodeSegmentsAnswer(answer.subarray(0, 20), 3), { code: 'INVALID_ARGUMENT' }, 'truncated');
});
