// The golden store: test/fixtures/store-v1/, a data directory written by format version 1
// (tools/make-golden-store.ts), read by today's code. Every value pinned in expected.json is
// checked: container bytes by hash, every LevelDB record (key -> value, not LevelDB's files,
// which are not byte-stable), the inode records decoded, every file's content and tree root
// through the namespace and the store, symlinks, the snapshot and the clone; then a full
// verify is clean and ingest goes on. The fixture is copied first and never written.
// src/store/FORMAT.md and src/namespace/FORMAT.md say what a later format owes this test.

import t from 'tap';
import { ClassicLevel } from 'classic-level';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Namespace } from '../src/namespace/namespace.js';
import { runVerify } from '../src/namespace/maintenance.js';
import { decodeInode } from '../src/namespace/records.js';
import { INODE } from '../src/namespace/keys.js';
import { internalsOf } from '../src/store/internals.js';
import { SegmentStore } from '../src/store/store.js';
import { listContainers, readLayout } from './helpers/containers.js';
import { readFile, writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/test -> repository root
const fixture = path.resolve(here, '..', '..', 'test', 'fixtures', 'store-v1');

interface Expected {
  storeFormat: number;
  snapshot: string;
  files: Array<{ path: string; size: number; sha256: string; version: { root: string; size: number; height: number } }>;
  symlinks: Record<string, string>;
  hashes: Record<string, { size: number; sha256: string }>;
  records: Record<string, string>;
  inodes: Array<Record<string, unknown> & { key: string }>;
}

const expected = JSON.parse(fs.readFileSync(path.join(fixture, 'expected.json'), 'utf8')) as Expected;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Every file of a directory with its hash, for "the fixture was not written". */
function snapshotTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = sha256(fs.readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

t.test('golden store v1: pinned bytes and records, read by today\'s code', async (t) => {
  const before = snapshotTree(fixture);
  const dir = path.join(tmpDir(t), 'data');
  fs.cpSync(path.join(fixture, 'data'), dir, { recursive: true });

  // Files other than LevelDB's, byte for byte (containers, store.json).
  for (const [rel, h] of Object.entries(expected.hashes)) {
    const b = fs.readFileSync(path.join(dir, rel));
    t.same({ size: b.length, sha256: sha256(b) }, h, `${rel}: pinned size and hash`);
  }

  // Every LevelDB record, read with LevelDB alone, before any vmvault code opens it.
  const db = new ClassicLevel<Buffer, Buffer>(path.join(dir, 'db'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  const records: Record<string, string> = {};
  const inodes: Array<Record<string, unknown>> = [];
  for await (const [k, v] of db.iterator()) {
    records[k.toString('hex')] = v.toString('hex');
    if (k[0] === INODE) {
      const n = decodeInode(v);
      inodes.push({ key: k.toString('hex'), vol: k.readUInt32BE(1), ...n, version: { root: n.version.root.toString('hex'), size: n.version.size, height: n.version.height } });
    }
  }
  await db.close();
  t.same(records, expected.records, `all ${Object.keys(expected.records).length} LevelDB records as pinned (key -> value)`);
  t.same(JSON.parse(JSON.stringify(inodes)), expected.inodes, `${expected.inodes.length} inode records decode to the pinned fields`);

  // Through the store and the namespace.
  const store = await SegmentStore.open(dir, { mustExist: true });
  const ns = await Namespace.open(store, { log: (l) => t.comment(l) });
  let closed = false;
  t.teardown(async () => {
    if (closed) return;
    await ns.close();
    await store.close();
  });
  t.equal(store.config.format, expected.storeFormat, 'store.json format');
  // The code's table decoder agrees with the test's own parse of the bytes (helpers/containers.ts).
  for (const id of listContainers(dir)) {
    const own = readLayout(dir, id).records.map((r) => ({ ...r, fp: r.fp.toString('hex') }));
    const code = (await internalsOf(store).files.readTable(id)).map((r) => ({ fp: Buffer.from(r.fp).toString('hex'), offset: r.offset, storedLen: r.storedLen, rawLen: r.rawLen, kind: r.kind, codec: r.codec }));
    t.same(code, own, `container ${id}: the store's table decoder reads what FORMAT.md says is there (${own.length} records)`);
  }
  t.equal(store.recovery, undefined, 'closed cleanly: no recovery ran');
  for (const f of expected.files) {
    const r = await ns.ctx.resolve(f.path);
    const v = r.inode.version;
    t.same({ root: v.root.toString('hex'), size: v.size, height: v.height }, f.version, `${f.path}: pinned tree root`);
    const viaNs = await readFile(ns, f.path);
    t.same({ size: viaNs.length, sha256: sha256(viaNs) }, { size: f.size, sha256: f.sha256 }, `${f.path}: content through the namespace`);
    const viaStore = await store.read(v, 0, v.size);
    t.equal(sha256(viaStore), f.sha256, `${f.path}: content through the store from the pinned root`);
  }
  for (const [p, target] of Object.entries(expected.symlinks)) t.equal(await ns.fs.readlink(p), target, `${p} -> ${target}`);
  t.same((await ns.shares.list()).map((s) => s.name).sort(), ['vm1', 'vm1-clone'], 'the shares');
  t.same((await ns.snapshots.list('vm1')).map((s) => s.name), [expected.snapshot], 'the snapshot');
  t.same(
    (await ns.fs.readdir(`/vm1/.snapshots/${expected.snapshot}`)).map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort(),
    ['disks', 'empty', 'hole.raw', 'latest', 'vm.json', 'vm.json.bak'],
    'the snapshot holds the share as it was',
  );

  const run = await runVerify(ns, { full: true });
  t.same(run.problems, [], `full verify is clean (${run.segmentsChecked} segments checked)`);
  t.ok(run.segmentsChecked > 0, 'verify read segments');

  // A v1 store takes new data, and reopens with both.
  const extra = Buffer.from('written after the fixture\n'.repeat(1000));
  await writeFile(ns, '/vm1/new.txt', extra);
  await ns.close();
  await store.close();
  closed = true;
  const store2 = await SegmentStore.open(dir, { mustExist: true });
  const ns2 = await Namespace.open(store2, { log: (l) => t.comment(l) });
  try {
    t.ok((await readFile(ns2, '/vm1/new.txt')).equals(extra), 'new data reads back after a reopen');
    t.equal(sha256(await readFile(ns2, expected.files[0].path)), expected.files[0].sha256, 'and the fixture\'s data too');
  } finally {
    await ns2.close();
    await store2.close();
  }

  t.same(snapshotTree(fixture), before, 'the fixture itself was not written');
});
