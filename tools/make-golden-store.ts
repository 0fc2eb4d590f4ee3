// Writes the golden store fixture, test/fixtures/store-v1/: a small data directory made by
// today's format version (store.json, containers, LevelDB with the store's and the
// namespace's records; not bloom.bin, a 2 MiB cache), and expected.json beside it pinning what a later vmvault
// must still read from it (test/golden-store.test.ts; src/store/FORMAT.md and
// src/namespace/FORMAT.md, "Golden fixtures").
//
//   npm run build && node dist/tools/make-golden-store.js [outDir]
//
// Deterministic: content from a seeded generator, the clock fixed (Date.now, so container
// headers and inode times), store.json's id and time fixed, LevelDB's own LOG files removed.
// Container bytes depend on the LZ4 encoder: run it with the native addon built (the codec
// used is recorded in expected.json). LevelDB's files are not byte-stable across writers, so
// expected.json pins the records read back (key -> value), not the files. Regenerate only for
// a new format version, into a new directory (store-v2/): store-v1 stays as it is, forever.

import { ClassicLevel } from 'classic-level';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const FIXED_NOW = Date.UTC(2026, 0, 1, 0, 0, 0);
Date.now = () => FIXED_NOW;

const { Namespace } = await import('../src/namespace/namespace.js');
const { SegmentStore } = await import('../src/store/store.js');
const { codecImpl } = await import('../src/store/native.js');
const { decodeInode } = await import('../src/namespace/records.js');
const { INODE } = await import('../src/namespace/keys.js');
const { CONFIG_FILE } = await import('../src/store/store-config.js');

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** splitmix32-style bytes: the content of the fixture, the same on every run. */
function bytes(seed: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    b[i] = (z ^ (z >>> 16)) & 0xff;
  }
  return b;
}

function text(seed: number, n: number): Buffer {
  const words = 'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike'.split(' ');
  const r = bytes(seed, n);
  const parts: string[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const w = `${words[r[i % r.length] % words.length]}${i % 17 === 0 ? '\n' : ' '}`;
    parts.push(w);
    len += w.length;
  }
  return Buffer.from(parts.join('').slice(0, n));
}

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const out = path.resolve(process.argv[2] ?? path.join(repo, 'test', 'fixtures', 'store-v1'));
const dataDir = path.join(out, 'data');
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });

const KiB = 1024;
const vda = Buffer.concat([bytes(1, 96 * KiB), Buffer.alloc(256 * KiB), text(2, 160 * KiB)]);
const vdaEdited = Buffer.from(vda);
bytes(3, 4 * KiB).copy(vdaEdited, 100 * KiB);
const vmJson = Buffer.from(JSON.stringify({ name: 'vm1', disks: ['vda.raw'], memoryMiB: 2048 }, null, 2) + '\n');
const hole = Buffer.alloc(1024 * KiB);

const store = await SegmentStore.open(dataDir);
const ns = await Namespace.open(store, { log: (l) => process.stderr.write(l + '\n') });

async function put(p: string, data: Buffer, mode = 0o644): Promise<void> {
  const fh = await ns.fs.create(p, mode);
  for (let at = 0; at < data.length; at += 128 * KiB) await ns.write(fh, at, data.subarray(at, at + 128 * KiB));
  await ns.fs.release(fh);
}

await ns.shares.create('vm1');
await ns.fs.mkdir('/vm1/disks', 0o750);
await put('/vm1/disks/vda.raw', vda, 0o600);
await put('/vm1/vm.json', vmJson);
await put('/vm1/empty', Buffer.alloc(0));
await put('/vm1/hole.raw', hole);
await ns.fs.symlink('disks/vda.raw', '/vm1/latest');
await ns.fs.link('/vm1/vm.json', '/vm1/vm.json.bak');
const SNAP = '2026-01-01T00.00.00Z';
await ns.snapshots.create('vm1', SNAP);
// After the snapshot: an edit in place (shared subtrees), a fastcopy, a clone of the snapshot.
{
  const fh = await ns.fs.open('/vm1/disks/vda.raw', 2);
  await ns.write(fh, 100 * KiB, vdaEdited.subarray(100 * KiB, 104 * KiB));
  await ns.fs.release(fh);
}
await ns.snapshots.fastcopy('vm1', 'disks/vda.raw', 'disks/vda-copy.raw');
await ns.snapshots.clone('vm1', SNAP, 'vm1-clone');

const files: Array<{ path: string; content: Buffer }> = [
  { path: '/vm1/disks/vda.raw', content: vdaEdited },
  { path: '/vm1/disks/vda-copy.raw', content: vdaEdited },
  { path: '/vm1/vm.json', content: vmJson },
  { path: '/vm1/vm.json.bak', content: vmJson },
  { path: '/vm1/empty', content: Buffer.alloc(0) },
  { path: '/vm1/hole.raw', content: hole },
  { path: `/vm1/.snapshots/${SNAP}/disks/vda.raw`, content: vda },
  { path: `/vm1/.snapshots/${SNAP}/vm.json`, content: vmJson },
  { path: `/vm1/.snapshots/${SNAP}/hole.raw`, content: hole },
  { path: '/vm1-clone/disks/vda.raw', content: vda },
  { path: '/vm1-clone/vm.json.bak', content: vmJson },
];
const pinnedFiles = [];
for (const f of files) {
  const r = await ns.ctx.resolve(f.path);
  const v = r.inode.version;
  pinnedFiles.push({ path: f.path, size: f.content.length, sha256: sha256(f.content), version: { root: v.root.toString('hex'), size: v.size, height: v.height } });
}
const symlinks = { '/vm1/latest': 'disks/vda.raw', [`/vm1/.snapshots/${SNAP}/latest`]: 'disks/vda.raw', '/vm1-clone/latest': 'disks/vda.raw' };
await ns.close();
await store.close();

// Fixed identity, so the directory is the same on every run.
const cfgFile = path.join(dataDir, CONFIG_FILE);
const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
cfg.id = '00000000-0000-4000-8000-000000000001';
cfg.created = new Date(FIXED_NOW).toISOString();
fs.writeFileSync(cfgFile, JSON.stringify(cfg, null, 2) + '\n');
// bloom.bin is a cache (FORMAT.md: ignored unless the store was closed cleanly, rebuilt from
// the index otherwise) of 2 MiB at the smallest size: left out, the open rebuilds it.
fs.rmSync(path.join(dataDir, 'bloom.bin'));

// Pinned: every file but LevelDB's by hash, every LevelDB record by value.
const hashes: Record<string, { size: number; sha256: string }> = {};
const walk = (dir: string): void => {
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(dir, e.name);
    const rel = path.relative(dataDir, p);
    if (e.isDirectory()) {
      if (rel !== 'db') walk(p);
    } else {
      const b = fs.readFileSync(p);
      hashes[rel] = { size: b.length, sha256: sha256(b) };
    }
  }
};
walk(dataDir);

const db = new ClassicLevel<Buffer, Buffer>(path.join(dataDir, 'db'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
await db.open();
const records: Record<string, string> = {};
const inodes = [];
for await (const [k, v] of db.iterator()) {
  records[k.toString('hex')] = v.toString('hex');
  if (k[0] === INODE) {
    const n = decodeInode(v);
    inodes.push({
      key: k.toString('hex'),
      vol: k.readUInt32BE(1),
      ...n,
      version: { root: n.version.root.toString('hex'), size: n.version.size, height: n.version.height },
    });
  }
}
await db.close();
for (const f of fs.readdirSync(path.join(dataDir, 'db'))) if (/^LOG(\.old)?$/.test(f)) fs.rmSync(path.join(dataDir, 'db', f));

const expected = {
  about: 'Golden store fixture, format version 1: written by tools/make-golden-store.ts; checked by test/golden-store.test.ts. Never edit; a new format version gets a new directory.',
  storeFormat: 1,
  codec: codecImpl,
  clock: new Date(FIXED_NOW).toISOString(),
  snapshot: SNAP,
  files: pinnedFiles,
  symlinks,
  hashes,
  records,
  inodes,
};
fs.writeFileSync(path.join(out, 'expected.json'), JSON.stringify(expected, null, 1) + '\n');
const total = Object.values(hashes).reduce((s, h) => s + h.size, 0);
process.stdout.write(`golden store written to ${out}: ${Object.keys(hashes).length} files (${total} bytes) besides db/, ${Object.keys(records).length} LevelDB records, codec ${codecImpl}\n`);
