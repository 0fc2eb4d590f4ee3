// SegmentStore.commitSynced (the group commit's commit, under the namespace lock): after
// syncData, it indexes the records syncData made durable and leaves the records appended since
// for a later commit, so it fsyncs no container while the caller holds its lock (commit() would
// fsync and index them too). Both versions read back after a later commit and a reopen.
// Seam: ContainerWriter.prototype.sync is wrapped to count container fsyncs (the real fsync runs).

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { ContainerWriter } from '../src/store/container/writer.js';
import { SegmentStore } from '../src/store/store.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('commitSynced fsyncs no container for records appended after syncData', async (t) => {
  const dir = tmpDir(t);
  let store = await SegmentStore.open(dir);
  t.teardown(() => store.close().catch(() => {}));
  const a = randomBytes(300_000);
  const b = randomBytes(300_000);
  const wa = await store.writeBuffer(a);
  await store.syncData();
  // Another file's data arrives while the round waits for the lock: appended, not durable.
  const wb = await store.writeBuffer(b);
  const proto = ContainerWriter.prototype as unknown as { sync: () => Promise<void> };
  const orig = proto.sync;
  let syncs = 0;
  proto.sync = function (this: unknown) {
    syncs++;
    return orig.call(this);
  };
  t.teardown(() => {
    proto.sync = orig;
  });
  await store.commitSynced([], wa.deps);
  t.equal(syncs, 0, 'no container fsync in commitSynced');
  await store.commit([], wb.deps);
  t.ok(syncs > 0, 'the later commit fsyncs the records left for it');
  proto.sync = orig;
  t.same(await store.read(wb.version, 0, b.length), b, 'the later file reads back before reopening');
  await store.close();
  store = await SegmentStore.open(dir);
  t.same(await store.read(wa.version, 0, a.length), a, 'the first file reads back after reopening');
  t.same(await store.read(wb.version, 0, b.length), b, 'the second file reads back after reopening');
  const report = await store.verify({ full: true });
  t.same(report.problems, [], 'a full verify finds no problem');
});
