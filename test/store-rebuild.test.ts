// An index rebuild reconstructs the index from the containers alone and yields the same
// answers: the same fingerprints at the same locations, the same counters, every version
// reading back identical. Also when the index is gone entirely, when entries are wrong or
// stale, when the whole LevelDB directory is lost, and when a container's table or trailer is
// damaged (the rebuild then scans that container's records).

import t from 'tap';
import { ClassicLevel } from 'classic-level';
import fs from 'node:fs';
import path from 'node:path';
import { isVmvaultError } from '../src/errors.js';
import { decodeLocation, encodeLocation, INDEX_PREFIX, indexKey } from '../src/store/index/segment-index.js';
import { SegmentStore, type FileVersion, type StoreStats } from '../src/store/store.js';
import { flipByte, listContainers, readLayout, setContainerVersion } from './helpers/containers.js';
import { generate, Rng } from './helpers/data.js';
import { outcomes, withStore } from './helpers/store-outcomes.js';
import { indexSnapshot, readOutcome } from './helpers/store-probe.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';
import { internalsOf } from '../src/store/internals.js';

interface Stored {
  name: string;
  version: FileVersion;
  content: Buffer;
}

type Counters = Pick<StoreStats, 'segments' | 'treeNodes' | 'uniqueBytes' | 'containers' | 'storedBytes'>;

function counters(s: StoreStats): Counters {
  return { segments: s.segments, treeNodes: s.treeNodes, uniqueBytes: s.uniqueBytes, containers: s.containers, storedBytes: s.storedBytes };
}

/** Versions of several kinds, edits and copies among them, committed and sealed. */
async function build(dir: string): Promise<Stored[]> {
  const rng = new Rng(31337);
  const store = await SegmentStore.open(dir, { workers: 1 });
  const files: Stored[] = [];
  const add = async (name: string, content: Buffer): Promise<void> => {
    const { version } = await store.writeBuffer(content);
    files.push({ name, version, content });
  };
  await add('text', generate(rng, 'text', 3_000_000));
  await add('random', generate(rng, 'random', 12_000_000));
  await add('sparse', generate(rng, 'sparse', 4_000_000));
  await add('shifted text', Buffer.concat([Buffer.from('>>'), files[0].content]));
  for (const off of [17, 5_000_000, 11_999_000]) {
    const base = files[1];
    const patch = generate(rng, 'random', 9000);
    const r = await store.writeAt(base.version, off, patch);
    const content = Buffer.alloc(Math.max(base.content.length, off + patch.length));
    base.content.copy(content);
    patch.copy(content, off);
    files.push({ name: `random patched at ${off}`, version: r.version, content });
  }
  await store.commit();
  await store.close();
  return files;
}

async function withDb(dir: string, fn: (db: ClassicLevel<Buffer, Buffer>) => Promise<void>): Promise<void> {
  const db = new ClassicLevel<Buffer, Buffer>(path.join(dir, 'db'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  try {
    await fn(db);
  } finally {
    await db.close();
  }
}

const sorted = (m: Map<string, string>) => [...m].sort((a, b) => (a[0] < b[0] ? -1 : 1));

t.test('an index rebuild reconstructs the index from the containers and yields the same answers', async (t) => {
  const dir = tmpDir(t);
  const files = await build(dir);
  const allIdentical = Object.fromEntries(files.map((f) => [f.name, 'identical']));
  const { index, stats } = await withStore(dir, async (s) => {
    t.same(await outcomes(s, files), allIdentical, 'every version reads back before any rebuild');
    return { index: await indexSnapshot(s), stats: counters(await s.stats()) };
  });
  t.ok(stats.containers >= 4, `${stats.containers} containers, ${stats.segments} segments (${stats.treeNodes} tree nodes)`);
  t.equal(index.size, stats.segments, 'one index entry per segment');

  const same = async (t: TestT, s: SegmentStore, label: string): Promise<void> => {
    t.same(sorted(await indexSnapshot(s)), sorted(index), `${label}: the same fingerprints at the same locations`);
    t.same(counters(await s.stats()), stats, `${label}: the same segment, node, byte and container counts`);
    t.same(await outcomes(s, files), allIdentical, `${label}: every version reads back identical`);
  };

  await t.test('the index range deleted', async (t) => {
    await withDb(dir, (db) => db.clear({ gte: Buffer.from([INDEX_PREFIX]), lt: Buffer.from([INDEX_PREFIX + 1]) }));
    await withStore(dir, async (s) => {
      t.equal((await indexSnapshot(s)).size, 0, 'the index is empty');
      const gone = await readOutcome(s, files[0].version, files[0].content);
      t.equal(gone, 'MISSING_SEGMENT', 'without it, reads fail with MISSING_SEGMENT');
      const report = await s.rebuildIndex();
      t.match(
        report,
        { containers: stats.containers, records: stats.segments, entriesAdded: stats.segments, entriesChanged: 0, entriesRemoved: 0, unreadableContainers: [] },
        'the rebuild read every container and added every entry',
      );
      await same(t, s, 'after the rebuild');
    });
    await withStore(dir, (s) => same(t, s, 'after a reopen'));
  });

  await t.test('wrong and stale entries, a damaged table and a damaged trailer', async (t) => {
    const ids = listContainers(dir);
    const tableDamaged = readLayout(dir, ids[1]);
    const trailerDamaged = readLayout(dir, ids[2]);
    flipByte(tableDamaged.file, tableDamaged.tableOffset + 40);
    flipByte(trailerDamaged.file, trailerDamaged.trailerOffset + 12);
    const [moved] = index.keys();
    const stale = Buffer.alloc(32, 0xab);
    await withDb(dir, async (db) => {
      const fp = Buffer.from(moved, 'hex');
      const loc = decodeLocation((await db.get(indexKey(fp)))!);
      await db.put(indexKey(fp), encodeLocation({ ...loc, offset: loc.offset + 1 }));
      await db.put(indexKey(stale), encodeLocation({ ...loc, offset: 64 }));
    });
    await withStore(dir, async (s) => {
      await t.rejects(internalsOf(s).files.readTable(tableDamaged.id), { code: 'CORRUPT_CONTAINER' }, 'one table fails its checksum');
      await t.rejects(internalsOf(s).files.readTable(trailerDamaged.id), { code: 'CORRUPT_CONTAINER' }, 'one trailer is unreadable');
      const report = await s.rebuildIndex();
      t.match(
        report,
        { containers: stats.containers, records: stats.segments, entriesAdded: 0, entriesChanged: 1, entriesRemoved: 1, unreadableContainers: [] },
        'the rebuild scanned the damaged containers, corrected one entry and removed the stale one',
      );
      await same(t, s, 'after the rebuild');
      const problems = (await s.verify({ full: true })).problems;
      t.same(
        problems.map((p) => [p.kind, p.container]).sort(),
        [
          ['corrupt-container', tableDamaged.id],
          ['corrupt-container', trailerDamaged.id],
        ],
        'verify still reports the damaged table and trailer, and nothing else',
      );
    });
  });

  await t.test('the whole LevelDB directory lost', async (t) => {
    fs.rmSync(path.join(dir, 'db'), { recursive: true });
    await withStore(dir, async (s) => {
      t.ok(s.recovery && s.recovery.containersScanned === stats.containers, 'with no checkpoint, recovery scans every container on open');
      const report = await s.rebuildIndex();
      t.same(report.unreadableContainers, [], 'the rebuild reads every container');
      await same(t, s, 'after recovery and the rebuild');
      t.same((await s.verify({ full: true })).problems.map((p) => p.kind), ['corrupt-container'], 'recovery re-sealed the container with the damaged trailer; the damaged table remains');
    });
  });

  await t.test('a container of a newer format stops the rebuild before it drops anything', async (t) => {
    await withStore(dir, async (s) => {
      const id = listContainers(dir)[0];
      const file = readLayout(dir, id).file;
      setContainerVersion(file, 9);
      internalsOf(s).files.forget(id);
      const err = await s.rebuildIndex().catch((e: unknown) => e);
      t.ok(isVmvaultError(err, 'UNSUPPORTED_FORMAT'), `refused: ${(err as Error).message}`);
      setContainerVersion(file, 1);
    });
    await withStore(dir, (s) => same(t, s, 'after the refused rebuild'));
  });
});
