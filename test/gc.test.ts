// Garbage collection on a real store: what is dead goes, what is live stays readable, and
// ingest, reads and snapshots go on during a collection without losing anything.

import t from 'tap';
import { createHash } from 'node:crypto';
import { runGc, runVerify } from '../src/namespace/maintenance.js';
import { generate, Rng } from './helpers/data.js';
import { openNs as open, readFile, writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function content(rng: Rng, size: number): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < size; at += MiB) parts.push(generate(rng, rng.int(2) ? 'random' : 'text', Math.min(MiB, size - at)));
  return Buffer.concat(parts);
}

t.test('deleted files and snapshots are reclaimed; live data stays', async (t) => {
  const { store, ns } = await open(t, tmpDir(t));
  const rng = new Rng(1);
  await ns.shares.create('vms');
  const keep = content(rng, 12 * MiB);
  const drop = content(rng, 12 * MiB);
  await writeFile(ns, '/vms/keep.img', keep);
  await writeFile(ns, '/vms/drop.img', drop);
  await ns.snapshots.create('vms', 'old');
  await ns.fs.unlink('/vms/drop.img');
  await ns.flushAll();
  const dry = await runGc(ns, { dryRun: true });
  t.equal(dry.reclaimedBytes, 0, 'a dry run frees nothing');
  t.equal(dry.reclaimableBytes, 0, 'the snapshot still holds the deleted file');
  await ns.snapshots.remove('vms', 'old');
  const before = await store.stats();
  const dry2 = await runGc(ns, { dryRun: true });
  t.ok(dry2.reclaimableBytes > 10 * MiB * 0.5, `with the snapshot gone, a dry run finds ${dry2.reclaimableBytes} reclaimable bytes`);
  const stats = await ns.stats();
  t.equal(stats.lastGc?.reclaimableBytes, dry2.reclaimableBytes, 'stats report what the last GC found reclaimable');
  const r = await runGc(ns, {});
  const after = await store.stats();
  t.ok(r.reclaimedBytes > 0, `reclaimed ${r.reclaimedBytes} bytes (${r.containersRemoved} containers removed, ${r.containersRewritten} rewritten)`);
  t.ok(after.storedBytes < before.storedBytes - 5 * MiB, `stored bytes fell from ${before.storedBytes} to ${after.storedBytes}`);
  t.ok(after.segments < before.segments, `segments fell from ${before.segments} to ${after.segments}`);
  // (Bytes per segment for the mark are measured at scale by bench:gc; here minimums dominate.)
  t.ok(r.markBytes > 0, `the mark used ${r.markBytes} bytes`);
  t.equal(sha(await readFile(ns, '/vms/keep.img')), sha(keep), 'the live file reads back');
  const v = await runVerify(ns, { full: true });
  t.same(v.problems, [], 'a full verify after GC is clean');
  const again = await runGc(ns, {});
  t.equal(again.reclaimedBytes, 0, 'a second GC has nothing left to do');
});

t.test('ingest, reads, snapshots and deletes during GC lose nothing', async (t) => {
  const { ns } = await open(t, tmpDir(t));
  const rng = new Rng(2);
  await ns.shares.create('vms');
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 8; i++) {
    const b = content(rng, 4 * MiB);
    files.set(`/vms/f${i}`, b);
    await writeFile(ns, `/vms/f${i}`, b);
  }
  // Garbage whose bytes come back while GC runs: a rewrite of the same content must keep them.
  const ghost = files.get('/vms/f0')!;
  for (const p of ['/vms/f0', '/vms/f1', '/vms/f2']) {
    await ns.fs.unlink(p);
    files.delete(p);
  }
  await ns.flushAll();
  let stop = false;
  const work = (async () => {
    let n = 0;
    while (!stop) {
      const name = `/vms/new${n++}`;
      const b = n % 2 === 0 ? ghost : content(rng, 2 * MiB);
      await writeFile(ns, name, b);
      files.set(name, b);
      const [p, want] = [...files.entries()][rng.int(files.size)];
      const got = await readFile(ns, p);
      if (sha(got) !== sha(want)) throw new Error(`read of ${p} during GC returned the wrong bytes`);
      if (n % 3 === 0) await ns.snapshots.create('vms', `s${n}`);
      if (n % 5 === 0) {
        const victim = [...files.keys()].find((k) => k.startsWith('/vms/new'));
        if (victim) {
          await ns.fs.unlink(victim);
          files.delete(victim);
        }
      }
    }
    return n;
  })();
  const reports = [];
  for (let i = 0; i < 3; i++) reports.push(await runGc(ns, { copyForwardBelow: 0.9 }));
  stop = true;
  const written = await work;
  t.ok(written >= 3, `${written} files were written while three collections ran`);
  t.ok(
    reports.some((r) => r.reclaimedBytes > 0),
    `the collections reclaimed ${reports.map((r) => r.reclaimedBytes).join(', ')} bytes`,
  );
  await ns.flushAll();
  let bad = 0;
  for (const [p, want] of files) if (sha(await readFile(ns, p)) !== sha(want)) bad++;
  t.equal(bad, 0, `all ${files.size} live files read back identical`);
  for (const s of await ns.snapshots.list('vms')) {
    const entries = await ns.fs.readdir(`/vms/.snapshots/${s.name}`);
    t.ok(entries.length > 0, `snapshot ${s.name} lists its files`);
  }
  const final = await runGc(ns, {});
  const v = await runVerify(ns, { full: true });
  t.same(v.problems, [], `a full verify after everything is clean (last GC reclaimed ${final.reclaimedBytes})`);
});
