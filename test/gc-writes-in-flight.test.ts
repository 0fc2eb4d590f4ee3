// A garbage collection that starts while a write is still building its tree keeps what that
// write stored so far (store/gc/write-holds.ts). A commit, an agent's send and a stream append
// segments to containers before any file names them; GC seals the open container at its start
// and may sweep every container sealed by then, so without the holds the finished file would
// later read "segment ... is referenced but not in the store" (the send below did, before).
// A full backup's stream is covered by disk-copy-full.test.ts.
//
// Every part is real: a store on disk, and for the send the namespace and the transfer protocol
// over HTTP on loopback with the receiver behind the control plane.

import t from 'tap';
import { createHash } from 'node:crypto';
import { runGc } from '../src/namespace/maintenance.js';
import { SegmentStore } from '../src/store/store.js';
import { TransferConnection } from '../src/transfer/client.js';
import { sendFile } from '../src/transfer/sender.js';
import { generate, Rng } from './helpers/data.js';
import { readFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';
import { bufferSource, transferAppliance } from './helpers/transfer-appliance.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test('a GC while a store writer is half way keeps what it appended; writers that end or fail hold nothing', async (t) => {
  const store = await SegmentStore.open(tmpDir(t));
  t.teardown(() => store.close());
  // Garbage in older containers: no root names it, so the sweep has work besides the writer's.
  await store.writeBuffer(generate(new Rng(1), 'random', 8 * MiB));
  t.equal(store.writesInProgress, 0, 'a finished writer holds nothing');
  const data = generate(new Rng(2), 'random', 48 * MiB);
  const w = store.writer();
  await w.write(data.subarray(0, 32 * MiB));
  // No root at all: the writer's 32 MiB are named by nothing but the writer itself.
  const noRoots = async function* () {};
  const report = await store.collectGarbage({ roots: noRoots, copyForwardBelow: 1 });
  t.ok(report.containersRemoved > 0, `the GC swept the older garbage (${report.containersRemoved} containers)`);
  t.ok(report.containersHeld > 0, `and left the writer's containers for a later run (${report.containersHeld})`);
  await w.write(data.subarray(32 * MiB));
  const { version, deps } = await w.finish();
  await store.commit([], deps);
  t.equal(sha(await store.read(version, 0, version.size)), sha(data), 'the version reads back whole');
  t.equal(store.writesInProgress, 0, 'the finished writer holds nothing');
  await t.rejects(store.edit(version, [{ kind: 'old', from: 0, to: version.size + 1 }]), /outside the old version/);
  t.equal(store.writesInProgress, 0, 'an edit that failed holds nothing');
  const ended = store.writer();
  await ended.write(data.subarray(0, MiB));
  await ended.abort();
  t.equal(store.writesInProgress, 0, 'an aborted writer holds nothing');
});

t.test('a GC during an agent send keeps the segments sent so far, named by the recipe or not yet', async (t) => {
  const a = await transferAppliance(t);
  await a.ns.shares.create('vms');
  const { token } = await a.tokens.create('host-a');
  const conn = await TransferConnection.open({ url: a.url, token });
  t.teardown(() => conn.close());
  const data = generate(new Rng(3), 'random', 64 * MiB);
  const src = bufferSource(data);
  const before = (await a.ns.store.stats()).storedBytes;
  let gc: Promise<unknown> | undefined;
  let storedAtGc = 0;
  const source = {
    size: src.size,
    async read(offset: number, length: number): Promise<Buffer> {
      // Past the middle, once 16 MiB have arrived (some named by a recipe frame, the last
      // batch's perhaps not yet): a whole GC runs before the send goes on.
      if (gc === undefined && offset >= 40 * MiB) {
        for (let i = 0; i < 500 && (await a.ns.store.stats()).storedBytes - before < 16 * MiB; i++) await new Promise((r) => setTimeout(r, 10));
        storedAtGc = (await a.ns.store.stats()).storedBytes - before;
        gc = runGc(a.ns, { copyForwardBelow: 1 });
        await gc;
      }
      return src.read(offset, length);
    },
  };
  await sendFile(conn, source, { share: 'vms', path: 'web01/vda.raw', size: data.length });
  t.ok(gc, 'a GC ran during the send');
  t.ok(storedAtGc >= 16 * MiB, `${storedAtGc} bytes had arrived when the GC started`);
  t.equal(sha(await readFile(a.ns, '/vms/web01/vda.raw')), sha(data), 'the file reads back whole after the GC');
  t.equal(a.ns.store.writesInProgress, 0, 'the finished session holds nothing');
  await runGc(a.ns, { copyForwardBelow: 1 });
  t.equal(sha(await readFile(a.ns, '/vms/web01/vda.raw')), sha(data), 'and after a second GC with the send done');
});
