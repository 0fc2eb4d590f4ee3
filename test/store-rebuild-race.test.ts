// An index rebuild while ingest goes on (the control plane starts one at any time) must keep
// the entries of containers written meanwhile. Found by the power-cut torture test: a file
// fsynced during a rebuild read back as MISSING_SEGMENT after the restart. The rebuild lists
// the containers, then corrects the index; a container sealed between the two was neither
// scanned nor open any more, so its entries were deleted as stale.
//
// The window is held open deterministically: the rebuild's listing of containers is wrapped
// (a seam on the real ContainerFiles object, not a double) so that a buffer is written,
// committed and its container sealed right after the listing, as a concurrent ingest would.

import t from 'tap';
import path from 'node:path';
import { internalsOf } from '../src/store/internals.js';
import { SegmentStore } from '../src/store/store.js';
import { generate, Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('a container sealed during an index rebuild keeps its entries', async (t) => {
  const dir = path.join(tmpDir(t), 'store');
  const rng = new Rng(99);
  const store = await SegmentStore.open(dir, { workers: 1 });
  try {
    const before = generate(rng, 'random', 3_000_000);
    const v1 = (await store.writeBuffer(before)).version;
    await store.commit();
    const during = generate(rng, 'random', 2_000_000);
    let v2: Awaited<ReturnType<SegmentStore['writeBuffer']>>['version'] | undefined;
    const files = internalsOf(store).files;
    const listIds = files.listIds.bind(files);
    files.listIds = async () => {
      const ids = await listIds();
      // Ingest meanwhile: written, committed (durable, acknowledged), container sealed.
      v2 = (await store.writeBuffer(during)).version;
      await store.commit();
      await internalsOf(store).sealOpen();
      await store.commit();
      return ids;
    };
    const r = await store.rebuildIndex();
    files.listIds = listIds;
    t.ok(v2, 'the ingest ran inside the rebuild');
    t.comment(`rebuild: ${JSON.stringify(r)}`);
    t.ok((await store.read(v1, 0, before.length)).equals(before), 'the file written before reads back');
    const got = await store.read(v2!, 0, during.length).catch((err: Error) => err);
    t.ok(Buffer.isBuffer(got) && got.equals(during), `the file written during the rebuild reads back (${got instanceof Error ? got.message : 'identical'})`);
    const { containerKey } = await import('../src/store/keys.js');
    const registered = await store.db.get(containerKey(Math.max(...(await files.listIds()))));
    t.ok(registered, 'the container sealed meanwhile is still in the registry');
    const v = await store.verify({ full: true });
    t.same(v.problems, [], 'and the store verifies clean');
  } finally {
    await store.close();
  }
});
