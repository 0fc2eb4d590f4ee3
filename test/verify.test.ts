// Verify through the namespace: a damaged segment is reported for every share, snapshot and
// file that reaches it; reads of affected data fail with a typed error while other files stay
// readable; quick mode checks references, full mode reads and re-hashes.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { isVmvaultError } from '../src/errors.js';
import { fpHex } from '../src/store/codec/fingerprint.js';
import { runVerify } from '../src/namespace/maintenance.js';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { allRecords, containerPath, flipByte, RECORD_HEADER_BYTES } from './helpers/containers.js';
import { generate, Rng } from './helpers/data.js';
import { dataUses } from './helpers/store-probe.js';
import { writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

async function readAll(ns: Namespace, p: string): Promise<Buffer | string> {
  try {
    const fh = await ns.fs.open(p, 0);
    try {
      return await ns.fs.read(fh, 0, (await ns.fs.getattr(p)).size);
    } finally {
      await ns.fs.release(fh);
    }
  } catch (err) {
    return isVmvaultError(err) ? err.code : String(err);
  }
}

t.test('a damaged segment is reported for every file that reaches it', async (t) => {
  const dir = tmpDir(t);
  let store = await SegmentStore.open(dir);
  let ns = await Namespace.open(store, { log: () => {} });
  const rng = new Rng(3);
  await ns.shares.create('vms');
  const shared = generate(rng, 'text', 4 * MiB);
  const other = generate(rng, 'random', 2 * MiB);
  await writeFile(ns, '/vms/a.img', shared);
  await writeFile(ns, '/vms/other.img', other);
  await ns.snapshots.fastcopy('vms', 'a.img', 'b.img');
  await ns.snapshots.create('vms', 's');
  const quickClean = await runVerify(ns, {});
  t.same(quickClean.problems, [], 'a quick verify of a healthy store is clean');
  // Damage one data segment of a.img (and so of b.img and the snapshot's copies).
  const inode = await ns.ctx.resolve('/vms/a.img');
  const uses = await dataUses(store, inode.inode.version);
  const victim = [...uses.keys()][3];
  await ns.close();
  await store.close();
  const rec = allRecords(dir).find((r) => fpHex(r.fp) === victim)!;
  t.ok(rec, 'the segment is found in a container');
  flipByte(containerPath(dir, rec.cid), rec.offset + RECORD_HEADER_BYTES + 7);
  store = await SegmentStore.open(dir);
  ns = await Namespace.open(store, { log: () => {} });
  t.teardown(async () => {
    await ns.close();
    await store.close();
  });
  const full = await runVerify(ns, { full: true });
  // (The container pass reports the record too, without a root.)
  const roots = full.problems.filter((p) => p.root !== undefined).map((p) => p.root).sort();
  t.same(
    roots,
    ['share vms, file a.img', 'share vms, file b.img', 'snapshot vms/s, file a.img', 'snapshot vms/s, file b.img'],
    'every share, snapshot and file reaching the segment is named',
  );
  t.ok(full.problems.every((p) => p.container === rec.cid && p.fingerprint === victim), 'with the container and fingerprint');
  t.ok(full.problems[0].message.includes(rec.cid.toString(16).padStart(8, '0')), `and a message naming the container: ${full.problems[0].message}`);
  const one = await runVerify(ns, { share: 'vms', snapshot: 's', full: true });
  t.same(one.problems.map((p) => p.root).sort(), ['snapshot vms/s, file a.img', 'snapshot vms/s, file b.img'], 'a snapshot verify reports its own files');
  const quick = await runVerify(ns, {});
  t.same(quick.problems.filter((p) => p.kind !== 'corrupt-container'), [], 'quick mode checks references only (the bytes are there)');
  t.equal(await readAll(ns, '/vms/a.img'), 'CORRUPT_SEGMENT', 'reading the damaged file fails with a typed error');
  const ok = await readAll(ns, '/vms/other.img');
  t.ok(Buffer.isBuffer(ok) && ok.equals(other), 'another file reads fine');
  // A missing container (lost while the appliance was down): quick verify finds it too.
  await ns.close();
  await store.close();
  fs.rmSync(containerPath(dir, rec.cid));
  store = await SegmentStore.open(dir);
  ns = await Namespace.open(store, { log: () => {} });
  const missing = await runVerify(ns, { share: 'vms' });
  t.ok(missing.problems.length >= 2 && missing.problems.some((p) => p.root === 'share vms, file a.img'), `a missing container is reported (${missing.problems.length} problems)`);
  t.equal(await readAll(ns, '/vms/a.img'), 'MISSING_SEGMENT', 'and reads of its data fail with MISSING_SEGMENT');
  t.ok(path.isAbsolute(dir));
});
