// The per-point catalog over real ext4 images (mkfs.ext4 -d of known trees) written into shares
// through the namespace and snapshotted: every file of the source tree listed with its size,
// mode and mtime and read back byte-identical by its extents; search across 3 points and 2
// shares; a changed file's versions; an unchanged volume reused, not walked; damaged and
// foreign images noted, never fatal.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { CatalogService } from '../src/catalog/catalog-service.js';
import { CatalogReader, CatalogWriter } from '../src/catalog/catalog-db.js';
import { decodeExtents, encodeExtents } from '../src/catalog/extents-codec.js';
import { VmvaultError } from '../src/errors.js';
import { openNs, writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';
import { listTree, makeExtDisk, makeTree, seeded } from './helpers/ext-image.js';

const BASE = {
  'etc/nginx/nginx.conf': 'worker_processes 2;\n',
  'etc/passwd': 'root:x:0:0:root:/root:/bin/bash\n',
  'var/lib/app/data.bin': 300_000,
  'var/log/empty/': '',
  'home/u/notes.txt': 'hello\n',
} as Record<string, string | number>;
for (let i = 0; i < 60; i++) BASE[`usr/share/doc/pkg${i}/README`] = `package ${i}\n`.repeat(i + 1);

function throwsCode(t: { ok(v: unknown, m: string): void }, fn: () => unknown, code: string, what: string): void {
  try {
    fn();
    t.ok(false, `${what}: no error, expected ${code}`);
  } catch (err) {
    t.ok(err instanceof VmvaultError && err.code === code, `${what}: ${code}${err instanceof VmvaultError ? '' : ` (got ${(err as Error).message})`}`);
  }
}

t.test('extents encode compactly and decode to the same runs', async (t) => {
  const ext = [
    { logical: 0, physical: 35844096, length: 4096 },
    { logical: 8192, physical: 4096, length: 1 << 20 },
    { logical: (1 << 20) + 8192, physical: 1 << 30, length: 4096 },
  ];
  const b = encodeExtents(ext);
  t.same(decodeExtents(b), ext, 'round trip');
  t.ok(b.length < 20, `${b.length} bytes for three extents`);
  t.throws(() => decodeExtents(Buffer.from([9, 0])), { code: 'UNSUPPORTED_FORMAT' }, 'an unknown encoding is refused');
  t.throws(() => decodeExtents(Buffer.from([1, 12, 0x80])), { code: 'CORRUPT_RECORD' }, 'a cut varint is refused');
});

t.test('catalog of 3 points and 2 shares: listing, bytes, search, versions, reuse, notes', async (t) => {
  const dir = tmpDir(t);
  const { ns } = await openNs(t, path.join(dir, 'store'));
  const cat = new CatalogService(ns, { dataDir: path.join(dir, 'data') });
  t.teardown(() => cat.close());

  const put = async (share: string, name: string, file: string) => writeFile(ns, `/${share}/${name}`, fs.readFileSync(file));
  const rewrite = async (share: string, name: string, file: string) => {
    await ns.fs.unlink(`/${share}/${name}`);
    await put(share, name, file);
  };

  // web01: day 1, day 2 (passwd changed, a file added), day 3 (nothing changed).
  const t1 = path.join(dir, 'tree1');
  makeTree(t1, BASE);
  fs.symlinkSync('../etc/passwd', path.join(t1, 'home/u/pw'));
  fs.utimesSync(path.join(t1, 'etc/passwd'), 1_700_000_000, 1_700_000_000);
  const d1 = path.join(dir, 'web01-1.raw');
  makeExtDisk(d1, t1);
  await ns.shares.create('web01');
  await put('web01', 'vda.raw', d1);
  await writeFile(ns, '/web01/junk.img', seeded('junk', 2 << 20));
  await ns.snapshots.create('web01', 'p1');

  const t2 = path.join(dir, 'tree2');
  fs.cpSync(t1, t2, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  fs.writeFileSync(path.join(t2, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\nweb:x:1000:1000::/home/web:/bin/sh\n');
  fs.utimesSync(path.join(t2, 'etc/passwd'), 1_700_086_400, 1_700_086_400);
  fs.writeFileSync(path.join(t2, 'etc/new.conf'), 'new\n');
  const d2 = path.join(dir, 'web01-2.raw');
  makeExtDisk(d2, t2);
  await rewrite('web01', 'vda.raw', d2);
  await ns.snapshots.create('web01', 'p2');
  await ns.snapshots.create('web01', 'p3');

  // db01: its own tree, also with an nginx.conf; and a disk whose partition points past its end.
  const t4 = path.join(dir, 'tree4');
  makeTree(t4, { 'etc/nginx/nginx.conf': 'other\n', 'srv/db/base.dat': 70_000 }, 'db');
  const d4 = path.join(dir, 'db01.raw');
  makeExtDisk(d4, t4);
  const bad = Buffer.alloc(1 << 20);
  fs.readFileSync(d4).copy(bad, 0, 0, 512);
  bad.writeUInt32LE(1 << 24, 446 + 12); // sectors: far past the end of a 1 MiB disk
  await ns.shares.create('db01');
  await put('db01', 'vda.raw', d4);
  await writeFile(ns, '/db01/vdb.raw', bad);
  await ns.snapshots.create('db01', 'p1');

  const r1 = await cat.build('web01', 'p1');
  t.equal(r1.images, 2, 'both images of web01 p1 looked at');
  t.ok(r1.notes.some((n) => n.startsWith('junk.img:')), `the image that is not a disk is noted: ${r1.notes.join(' | ')}`);
  const r2 = await cat.build('web01', 'p2');
  t.equal(r2.reusedVolumes, 0, 'p2 changed: walked');
  const r3 = await cat.build('web01', 'p3');
  t.equal(r3.reusedVolumes, 1, 'p3 equals p2: its volume is copied from the catalog of p2, not walked');
  t.equal(r3.files, r2.files, 'with every row');
  const r4 = await cat.build('db01', 'p1');
  t.ok(r4.notes.some((n) => /vdb\.raw: p1: .*past the end/.test(n)), `a partition past the end is noted: ${r4.notes.join(' | ')}`);

  // Every entry of the source tree, with its attributes, and every file's bytes.
  for (const [point, tree] of [['p1', t1], ['p2', t2], ['p3', t2]] as const) {
    const reader = cat.reader('web01', point)!;
    const vol = reader.volumes().find((v) => v.name === 'p1')!;
    const want = new Map([...listTree(tree)].map(([k, v]) => [k, { ...v, mtimeMs: Math.floor(v.mtimeMs / 1000) }]));
    const got = new Map<string, { type: string; size: number; mode: number; mtimeMs: number }>();
    const walk = (id: number) => {
      for (const row of reader.list(id)) {
        const p = reader.pathOf(row);
        if (p === '/lost+found') continue;
        // mkfs.ext4 -d stores whole seconds (its nanoseconds are 0): compared in seconds.
        got.set(p, { type: row.type, size: row.type === 'dir' ? 0 : row.size, mode: row.mode, mtimeMs: Math.floor(row.mtimeMs / 1000) });
        if (row.type === 'dir') walk(row.id);
      }
    };
    walk(vol.root!);
    t.same([...got.keys()].sort(), [...want.keys()].sort(), `${point}: the catalog lists exactly the source tree`);
    let same = 0;
    for (const [p, w] of want) {
      if (JSON.stringify(got.get(p)) === JSON.stringify(w)) same++;
      else t.comment(`${point}:${p}: catalog ${JSON.stringify(got.get(p))}, source ${JSON.stringify(w)}`);
    }
    t.equal(same, want.size, `${point}: type, size, mode and mtime of all ${want.size} entries match`);
    let bytes = 0;
    for (const [p, w] of want) {
      if (w.type !== 'file') continue;
      const loc = cat.locate('web01', point, p);
      const buf = await cat.read(loc, 0, loc.row.size + 10);
      if (!buf.equals(fs.readFileSync(path.join(tree, p)))) t.fail(`${point}:${p} differs`);
      else bytes++;
    }
    t.ok(bytes > 60, `${point}: all ${bytes} files read back identical by their extents`);
    t.equal(cat.locate('web01', point, '/home/u/pw').row.target, '../etc/passwd', `${point}: symlink target kept`);
  }
  const mid = cat.locate('web01', 'p1', '/var/lib/app/data.bin');
  t.ok((await cat.read(mid, 123_457, 5000)).equals(seeded('tree:var/lib/app/data.bin', 300_000).subarray(123_457, 128_457)), 'a range in the middle of a file');

  const hits = await cat.find({ pattern: 'nginx.conf', shares: ['web01', 'db01'] });
  t.same(
    hits.map((h) => `${h.share} ${h.point} ${h.image} ${h.volume} ${h.path} ${h.size}`).sort(),
    ['db01 p1 vda.raw p1 /etc/nginx/nginx.conf 6', ...['p1', 'p2', 'p3'].map((p) => `web01 ${p} vda.raw p1 /etc/nginx/nginx.conf 20`)],
    'find: every point of both shares that holds nginx.conf',
  );
  t.equal((await cat.find({ pattern: '*.conf', shares: ['web01'], pathPrefix: '/etc' })).length, 3 + 2, 'a glob with a path prefix');
  const big = Object.entries(BASE).filter(([k, v]) => k.endsWith('README') && String(v).length >= 100).length;
  t.equal((await cat.find({ pattern: 'README', shares: ['web01'], minSize: 100 })).length, 3 * big, `a size bound (${big} of 60 per point)`);
  t.equal((await cat.find({ pattern: 'README', shares: ['web01'], limit: 7 })).length, 7, 'a limit');
  t.same(await cat.find({ pattern: 'nginx.conf', shares: ['web01'], sinceMs: Date.now() + 60_000 }), [], 'nothing since the future');

  const versions = await cat.versions('web01', '/etc/passwd');
  t.same(versions.map((v) => [v.point, v.change]), [['p1', 'new'], ['p2', 'size'], ['p3', null]], 'the points where /etc/passwd changed');

  const st = await cat.status(['web01', 'db01']);
  t.same(st.map((s) => [s.share, s.point, s.state]), [['web01', 'p1', 'cataloged'], ['web01', 'p2', 'cataloged'], ['web01', 'p3', 'cataloged'], ['db01', 'p1', 'cataloged']]);
  t.equal(st[2].images!.find((i) => i.path === 'vda.raw')!.volumes[0].reusedFrom, 'p2', 'status says which point a volume was reused from');
  t.match(st[0].images!.find((i) => i.path === 'junk.img')!, { format: 'raw' }, 'the junk image is listed');

  // Bad input.
  throwsCode(t, () => cat.locate('web01', 'p1', 'etc/passwd'), 'INVALID_ARGUMENT', 'a relative path is refused');
  throwsCode(t, () => cat.locate('web01', 'p1', '/nope'), 'NOT_FOUND', 'a missing file is NOT_FOUND');
  throwsCode(t, () => cat.locate('web01', '../x', '/a'), 'INVALID_ARGUMENT', 'a bad point name');
  await t.rejects(cat.build('web01', 'p9'), { code: 'NOT_FOUND' }, 'building a point that does not exist');
  await t.rejects(cat.read(cat.locate('web01', 'p1', '/etc'), 0, 10), { code: 'INVALID_ARGUMENT' }, 'reading a directory');

  // A catalog written by a newer schema is refused, not misread.
  const f = cat.fileOf('web01', 'p1');
  const copy = path.join(dir, 'newer.db');
  fs.copyFileSync(f, copy);
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(copy);
  db.pragma('user_version = 99');
  db.close();
  throwsCode(t, () => new CatalogReader(copy), 'UNSUPPORTED_FORMAT', 'a newer schema is refused');
});

t.test('a point changed in place keeps the rows whose bytes did not change, and equals a full walk', async (t) => {
  const dir = tmpDir(t);
  const { ns } = await openNs(t, path.join(dir, 'store'));
  const cat = new CatalogService(ns, { dataDir: path.join(dir, 'data') });
  t.teardown(() => cat.close());
  const tree = path.join(dir, 'tree');
  makeTree(tree, BASE);
  fs.symlinkSync('../etc/passwd', path.join(tree, 'home/u/pw'));
  const d1 = path.join(dir, 'd1.raw');
  makeExtDisk(d1, tree);
  await ns.shares.create('vm');
  await writeFile(ns, '/vm/vda.raw', fs.readFileSync(d1));
  await ns.snapshots.create('vm', 'p1');

  // Day 2, as a guest changes its disk: in place (debugfs on a copy), written back as an
  // incremental (only the 64 KiB pieces that differ).
  const d2 = path.join(dir, 'd2.raw');
  fs.copyFileSync(d1, d2);
  fs.writeFileSync(path.join(dir, 'new.txt'), 'a new file\n');
  const { execFileSync } = await import('node:child_process');
  execFileSync('debugfs', ['-w', '-f', '-', `${d2}?offset=${1 << 20}`], {
    input: [
      `write ${path.join(dir, 'new.txt')} /etc/new.conf`,
      'mkdir /srv',
      `write ${path.join(dir, 'new.txt')} /srv/x`,
      'rm /usr/share/doc/pkg7/README',
      'set_inode_field /home/u/notes.txt mtime 20240102',
      'set_inode_field /etc/nginx/nginx.conf atime 20240101', // an access: the entry is the same
    ].join('\n'),
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  const a = fs.readFileSync(d1);
  const b = fs.readFileSync(d2);
  const fh = await ns.fs.open('/vm/vda.raw', 2);
  for (let at = 0; at < b.length; at += 65536) {
    if (!a.subarray(at, at + 65536).equals(b.subarray(at, at + 65536))) await ns.write(fh, at, Buffer.from(b.subarray(at, at + 65536)));
  }
  await ns.fs.release(fh);
  await ns.flushAll();
  await ns.snapshots.create('vm', 'p2');

  await cat.build('vm', 'p1');
  const logs: string[] = [];
  const r2 = await cat.build('vm', 'p2', { log: (l) => logs.push(l) });
  t.equal(r2.partlyReusedVolumes, 1, `p2 is walked reusing p1's rows: ${logs.join(' | ')}`);
  t.ok(r2.keptRows > r2.files - 12, `${r2.keptRows} of ${r2.files} rows kept (the changed ones, their directories and '/' read again)`);

  // The same point walked whole, with no previous catalog: the same rows.
  const { buildCatalog } = await import('../src/catalog/catalog-build.js');
  const rows = (file: string) => {
    const r = new CatalogReader(file);
    const db = (r as unknown as { db: import('better-sqlite3').Database }).db;
    const out = new Map<string, string>();
    for (const row of db.prepare('SELECT id, name, type, size, mtime, mode, uid, gid, inode, target, hex(extents) AS e, hex(inline) AS i, hex(deps) AS d FROM files').all() as Array<{ id: number }>) {
      const { id, ...rest } = row;
      out.set(r.pathOf(r.get(id)!), JSON.stringify(rest));
    }
    r.close();
    return out;
  };
  const whole = path.join(dir, 'whole.db');
  const rw = await buildCatalog(ns, { share: 'vm', point: 'p2', file: whole });
  t.equal(rw.partlyReusedVolumes, 0, 'walked whole');
  const got = rows(cat.fileOf('vm', 'p2'));
  const want = rows(whole);
  t.same([...got.keys()].sort(), [...want.keys()].sort(), 'the same paths');
  t.same([...got].filter(([k, v]) => want.get(k) !== v), [], 'every row equal to the full walk');
  t.ok(got.has('/srv/x') && !got.has('/usr/share/doc/pkg7/README') && got.has('/usr/share/doc/pkg8/README'), 'the new, the removed and the untouched');
  t.match(JSON.parse(got.get('/home/u/notes.txt')!), { mtime: Date.UTC(2024, 0, 2) }, 'the changed mtime');
  // p2's file started as a copy of p1's (CatalogWriter's copy mode): no row of p1's is left over.
  const r2db = new CatalogReader(cat.fileOf('vm', 'p2'));
  t.equal(r2db.fileCount(), r2.files, 'no rows left over from the previous point');
  t.equal(r2db.volumes().length, 1, 'one volume row');
  r2db.close();
  // A third point like the second, from p2's copy: the volume reused whole, the same rows.
  await ns.snapshots.create('vm', 'p3');
  const r3 = await cat.build('vm', 'p3');
  t.equal(r3.reusedVolumes, 1, 'p3 reuses p2\'s volume whole');
  t.same(rows(cat.fileOf('vm', 'p3')), want, 'p3: every row equal to the full walk');

  // A previous catalog from before `deps` (an older vmvault): walked in full, with a log line.
  const old = path.join(dir, 'old.db');
  fs.copyFileSync(cat.fileOf('vm', 'p1'), old);
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(old);
  db.exec('ALTER TABLE files DROP COLUMN deps');
  db.close();
  const logs2: string[] = [];
  const ro = await buildCatalog(ns, { share: 'vm', point: 'p2', file: path.join(dir, 'o2.db'), previous: { file: old, point: 'p1' } }, { log: (l) => logs2.push(l) });
  t.equal(ro.partlyReusedVolumes, 0, 'nothing reused below the volume');
  t.ok(logs2.some((l) => /older vmvault.*walked in full/.test(l)), `said so: ${logs2.join(' | ')}`);
  t.same(rows(path.join(dir, 'o2.db')), want, 'the same rows');
});

t.test('in-place edit (only changed rows touched) equals a full walk: renamed, moved, deleted, grown, two points in a row', async (t) => {
  const dir = tmpDir(t);
  const { ns } = await openNs(t, path.join(dir, 'store'));
  const cat = new CatalogService(ns, { dataDir: path.join(dir, 'data') });
  t.teardown(() => cat.close());
  const tree = path.join(dir, 'tree');
  makeTree(tree, BASE);
  fs.symlinkSync('../etc/passwd', path.join(tree, 'home/u/pw'));
  const d1 = path.join(dir, 'd1.raw');
  makeExtDisk(d1, tree);
  await ns.shares.create('vm');
  await writeFile(ns, '/vm/vda.raw', fs.readFileSync(d1));
  await ns.snapshots.create('vm', 'p1');
  const { execFileSync } = await import('node:child_process');
  const { buildCatalog } = await import('../src/catalog/catalog-build.js');
  fs.writeFileSync(path.join(dir, 'grown.bin'), seeded('grown', 700_000));
  fs.writeFileSync(path.join(dir, 'small.txt'), 'a new file\n');

  // A guest's changes, in place (debugfs on a copy of the last disk), written as an incremental.
  let last = d1;
  const change = async (name: string, cmds: string[]) => {
    const next = path.join(dir, `${name}.raw`);
    fs.copyFileSync(last, next);
    execFileSync('debugfs', ['-w', '-f', '-', `${next}?offset=${1 << 20}`], { input: cmds.join('\n'), stdio: ['pipe', 'ignore', 'ignore'] });
    const a = fs.readFileSync(last);
    const b = fs.readFileSync(next);
    const fh = await ns.fs.open('/vm/vda.raw', 2);
    for (let at = 0; at < b.length; at += 65536) {
      if (!a.subarray(at, at + 65536).equals(b.subarray(at, at + 65536))) await ns.write(fh, at, Buffer.from(b.subarray(at, at + 65536)));
    }
    await ns.fs.release(fh);
    await ns.flushAll();
    await ns.snapshots.create('vm', name);
    last = next;
  };
  const rows = (file: string) => {
    const r = new CatalogReader(file);
    const db = (r as unknown as { db: import('better-sqlite3').Database }).db;
    const out = new Map<string, string>();
    const twice: string[] = [];
    for (const row of db.prepare('SELECT id, name, type, size, mtime, mode, uid, gid, inode, target, hex(extents) AS e, hex(inline) AS i, hex(deps) AS d FROM files').all() as Array<{ id: number }>) {
      const { id, ...rest } = row;
      const p = r.pathOf(r.get(id)!);
      if (out.has(p)) twice.push(p);
      out.set(p, JSON.stringify(rest));
    }
    t.same(twice, [], 'each path listed once');
    r.close();
    return out;
  };
  const check = async (point: string, expect: (got: Map<string, string>) => void) => {
    const logs: string[] = [];
    const r = await cat.build('vm', point, { log: (l) => logs.push(l) });
    t.equal(r.partlyReusedVolumes, 1, `${point}: edited in place: ${logs.join(' | ')}`);
    t.ok(logs.some((l) => /rows kept in place/.test(l)), `${point}: the in-place edit ran`);
    const whole = path.join(dir, `${point}-whole.db`);
    await buildCatalog(ns, { share: 'vm', point, file: whole });
    const got = rows(cat.fileOf('vm', point));
    const want = rows(whole);
    t.same([...got.keys()].sort(), [...want.keys()].sort(), `${point}: the same paths as a full walk`);
    t.same([...got].filter(([k, v]) => want.get(k) !== v), [], `${point}: every row equal to the full walk`);
    const rd = new CatalogReader(cat.fileOf('vm', point));
    t.equal(rd.volumes()[0].files, rd.fileCount(), `${point}: the volume's count is its rows'`);
    t.equal(r.files, rd.fileCount(), `${point}: the build's count too`);
    rd.close();
    expect(got);
  };

  await cat.build('vm', 'p1');
  const p1 = rows(cat.fileOf('vm', 'p1'));
  await change('p2', [
    'ln /usr/share/doc/pkg3/README /usr/share/doc/pkg3/README.old', // renamed
    'unlink /usr/share/doc/pkg3/README',
    'ln /usr/share/doc/pkg5 /home/u/pkg5', // a directory moved
    'unlink /usr/share/doc/pkg5',
    'rm /usr/share/doc/pkg9/README', // a directory deleted with its file
    'rmdir /usr/share/doc/pkg9',
    'rm /var/lib/app/data.bin', // grown: written anew, larger
    `write ${path.join(dir, 'grown.bin')} /var/lib/app/data.bin`,
    'mkdir /srv',
    `write ${path.join(dir, 'small.txt')} /srv/x`,
    'set_inode_field /home/u/notes.txt mtime 20240102',
    'set_inode_field /etc/nginx/nginx.conf atime 20240101',
  ]);
  await check('p2', (got) => {
    t.ok(got.has('/usr/share/doc/pkg3/README.old') && !got.has('/usr/share/doc/pkg3/README'), 'the renamed file');
    t.ok(got.has('/home/u/pkg5/README') && !got.has('/usr/share/doc/pkg5/README') && !got.has('/usr/share/doc/pkg5'), 'the moved directory');
    t.ok(!got.has('/usr/share/doc/pkg9') && !got.has('/usr/share/doc/pkg9/README'), 'the deleted directory');
    t.match(JSON.parse(got.get('/var/lib/app/data.bin')!), { size: 700_000 }, 'the grown file');
    t.not(got.get('/var/lib/app/data.bin'), p1.get('/var/lib/app/data.bin'), 'its row changed');
    t.equal(got.get('/usr/share/doc/pkg8/README'), p1.get('/usr/share/doc/pkg8/README'), 'an untouched row as it was');
  });
  // A second change on top of the edited catalog (its ids no longer in walk order).
  await change('p3', [
    `write ${path.join(dir, 'small.txt')} /home/u/pkg5/NEWS`, // into the moved directory
    'ln /home/u/pkg5 /usr/share/doc/pkg5', // and moved back
    'unlink /home/u/pkg5',
    'rm /srv/x',
    'rmdir /srv',
    'rm /etc/passwd', // a name that now names another inode (the link home/u/pw dangles)
    `write ${path.join(dir, 'small.txt')} /etc/passwd`,
  ]);
  await check('p3', (got) => {
    t.ok(got.has('/usr/share/doc/pkg5/NEWS') && got.has('/usr/share/doc/pkg5/README') && !got.has('/home/u/pkg5'), 'moved back, with the new file');
    t.ok(!got.has('/srv'), 'the directory gone');
    t.match(JSON.parse(got.get('/etc/passwd')!), { size: 11 }, 'the rewritten file');
  });
});

t.test('copy mode: more rows read again than one insert batch, under the ids of the rows they replace', async (t) => {
  // The writer's own API over two real SQLite files (no file system walked): 6,000 rows of a
  // previous catalog all read again in place. Rows must not go in before the carried rows they
  // replace are deleted (a batch flushed at 5,000 rows hit the primary key).
  const dir = tmpDir(t);
  const a = path.join(dir, 'a.db');
  const N = 6000;
  const w1 = new CatalogWriter(a, { share: 's', point: 'a' });
  w1.addVolume(w1.addImage('vda.raw', 1 << 30, 'raw'), { name: 'p1', fs: 'ext', offset: 1 << 20, size: 1 << 29 });
  for (let i = 0; i < N; i++) w1.add({ path: `/d/f${i}`, type: 'file', size: i, mtimeMs: 0, mode: 0o644, uid: 0, gid: 0, inode: 100 + i, deps: [{ logical: 0, physical: 4096 * (i + 1), length: 4096 }] });
  w1.endVolume();
  await w1.finish();
  const ra = new CatalogReader(a);
  const vol = ra.volumes()[0];
  const b = path.join(dir, 'b.db');
  const w2 = new CatalogWriter(b, { share: 's', point: 'b' }, { from: a });
  w2.rememberPrevious(ra.volumes());
  ra.close();
  t.ok(w2.carries(vol.id), 'the previous volume is carried in the copy');
  w2.addVolume(w2.addImage('vda.raw', 1 << 30, 'raw'), { name: 'p1', fs: 'ext', offset: 1 << 20, size: 1 << 29 }, vol.id);
  const prev = w2.beginReuse(a, vol.id)!;
  t.ok(prev && prev.rows.length === N + 2, `the previous rows, in place: ${prev?.rows.length}`);
  const byId = new Map(prev.rows.map((r) => [r.id, r]));
  for (const r of prev.rows) {
    if (r.id === prev.root || r.name === 'd') {
      w2.keepRow(r.id);
      continue;
    }
    w2.addRow(w2.idOfPrev(r.id), w2.idOfPrev(byId.get(r.parent)!.id), { path: `/d/${r.name}`, type: 'file', size: 7, mtimeMs: 0, mode: 0o600, uid: 0, gid: 0, inode: r.inode });
  }
  w2.endReuse();
  t.equal(w2.endVolume(), N + 2, 'every row once');
  await w2.finish();
  const rb = new CatalogReader(b);
  const d = rb.resolve(rb.volumes()[0], '/d')!;
  const kids = rb.list(d.id);
  t.equal(kids.length, N, 'all entries listed');
  t.ok(kids.every((k) => k.size === 7 && k.mode === 0o600), 'each with what was read now');
  t.equal(rb.fileCount(), N + 2, 'no carried row left over');
  rb.close();
});

t.test('copy mode edits in memory and writes the file once; the same rows as an edit on disk', async (t) => {
  // A previous catalog up to CatalogWriter's bound is edited in memory (deserialized), and
  // nothing lies under the .partial name until finish() writes it; above the bound (memoryMax 0
  // here) the copy is edited on disk as before. Both must give the same rows.
  const dir = tmpDir(t);
  const a = path.join(dir, 'a.db');
  const w1 = new CatalogWriter(a, { share: 's', point: 'a' });
  w1.addVolume(w1.addImage('vda.raw', 1 << 30, 'raw'), { name: 'p1', fs: 'ext', offset: 1 << 20, size: 1 << 29 });
  for (let i = 0; i < 3000; i++) w1.add({ path: `/d${i % 7}/f${i}`, type: 'file', size: i, mtimeMs: 0, mode: 0o644, uid: 0, gid: 0, inode: 100 + i, deps: [{ logical: 0, physical: 4096 * (i + 1), length: 4096 }] });
  w1.endVolume();
  await w1.finish();
  const edit = async (out: string, memoryMax?: number) => {
    const ra = new CatalogReader(a);
    const vol = ra.volumes()[0];
    const w = new CatalogWriter(out, { share: 's', point: 'b' }, { from: a, ...(memoryMax === undefined ? {} : { memoryMax }) });
    w.rememberPrevious(ra.volumes());
    ra.close();
    w.addVolume(w.addImage('vda.raw', 1 << 30, 'raw'), { name: 'p1', fs: 'ext', offset: 1 << 20, size: 1 << 29 }, vol.id);
    const rows = w.beginEdit()!;
    const d3 = rows.meta().find((r) => r.name === 'd3')!;
    t.equal(w.editDrop([d3.id], [d3.id]), 430, 'the directory and the 429 rows under it dropped');
    const f5 = rows.children(rows.meta().find((r) => r.name === 'd5')!.id).find((r) => r.name === 'f5')!;
    w.editRow(f5.id, f5.parent, f5.name, { path: '/d5/f5', type: 'file', size: 99, mtimeMs: 5, mode: 0o600, uid: 1, gid: 1, inode: f5.inode });
    w.editAdd(d3.parent, 'new', { path: '/new', type: 'file', size: 1, mtimeMs: 0, mode: 0o644, uid: 0, gid: 0, inode: 9000 });
    w.endEdit();
    const n = w.endVolume();
    const partialBefore = fs.existsSync(`${out}.partial`);
    await w.finish();
    return { n, partialBefore };
  };
  const mem = path.join(dir, 'mem.db');
  const disk = path.join(dir, 'disk.db');
  const m = await edit(mem);
  const k = await edit(disk, 0);
  t.equal(m.partialBefore, false, 'in memory: no .partial file before finish()');
  t.equal(k.partialBefore, true, 'on disk: the copy is the .partial file');
  t.equal(m.n, 3008 - 430 + 1, 'rows after the edit: d3 and its 429 files gone, one added');
  t.equal(m.n, k.n, 'the same count either way');
  const dump = (f: string) => {
    const r = new CatalogReader(f);
    const out: string[] = [];
    const walk = (id: number, p: string) => {
      for (const c of r.list(id)) {
        out.push(`${p}/${c.name} ${c.id} ${c.type} ${c.size} ${c.mode} ${c.mtimeMs} ${JSON.stringify(r.extents(c.id))}`);
        if (c.type === 'dir') walk(c.id, `${p}/${c.name}`);
      }
    };
    walk(r.volumes()[0].root!, '');
    t.equal(r.fileCount(), m.n, `${path.basename(f)}: every row reachable and counted`);
    r.close();
    return out;
  };
  const rm = dump(mem);
  t.same(rm, dump(disk), 'the same rows, ids and extents in memory as on disk');
  t.ok(rm.some((l) => l.startsWith('/d5/f5 ') && l.includes(' 99 ')), 'the row read again is in');
  t.notOk(rm.some((l) => l.startsWith('/d3')), 'the dropped subtree is gone');
});

// catalog9: add() keeps the last parent it looked up (a walk gives a directory's entries
// together) and compares the next entry's directory with it in place. Entries in any order,
// with directories whose names are prefixes of others ('/a', '/ab', '/a/b'), still land under
// their own parents, placeholders and all.
t.test('rows land under their own parents whatever the order of the entries', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'p.db');
  const w = new CatalogWriter(file, { share: 's', point: 'p' });
  const img = w.addImage('vda.raw', 1, 'raw');
  w.addVolume(img, { name: 'p1', fs: 'ext', size: 1 });
  const at = { size: 1, mtimeMs: 0, mode: 0o644, uid: 0, gid: 0 };
  const order = ['/a/x', '/ab/y', '/a/z', '/a', '/ab', '/a/b/c', '/ab/b/d', '/a/b', '/a/bc', '/x', '/a/b/e', '/ab/b', '/a/y'];
  let inode = 12;
  for (const p of order) {
    const isDir = ['/a', '/ab', '/a/b', '/ab/b'].includes(p);
    w.add({ path: p, type: isDir ? 'dir' : 'file', ...at, inode: inode++ });
  }
  w.endVolume();
  await w.finish();
  const r = new CatalogReader(file);
  t.teardown(() => r.close());
  const [vol] = r.volumes();
  for (const p of order) {
    const row = r.resolve(vol, p);
    t.ok(row, `${p} is found from the root`);
    if (row) t.equal(r.pathOf(row), p, `${p}: its parents are its own`);
  }
  t.same(r.list(r.resolve(vol, '/a')!.id).map((x) => x.name), ['b', 'bc', 'x', 'y', 'z'], "/a's children");
  t.same(r.list(r.resolve(vol, '/ab')!.id).map((x) => x.name), ['b', 'y'], "/ab's children");
  t.same(r.list(vol.root!).map((x) => x.name), ['a', 'ab', 'x'], "the root's children");
  t.equal(r.fileCount(), order.length + 1, 'every entry once, and the root');
});
