// Directory listings are cached (namespace/meta.ts). Whatever changes a directory's names must
// show in its next listing: create, mkdir, symlink, link, unlink, rmdir, rename within and
// across directories, fastcopy; and a listing read while a change lands must not be kept.

import t from 'tap';
import { Namespace } from '../src/namespace/namespace.js';
import { openNs } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';
import type { TestT } from './helpers/tap-types.js';

async function open(t: TestT): Promise<Namespace> {
  const { ns } = await openNs(t, tmpDir(t));
  await ns.shares.create('s');
  return ns;
}

const names = async (ns: Namespace, path: string) => (await ns.fs.readdir(path)).map((e) => e.name).sort();

async function touch(ns: Namespace, path: string): Promise<void> {
  await ns.fs.release(await ns.fs.create(path, 0o644));
}

t.test('every name change shows in the next listing', async (t) => {
  const ns = await open(t);
  await ns.fs.mkdir('/s/d', 0o755);
  await ns.fs.mkdir('/s/e', 0o755);
  t.same(await names(ns, '/s/d'), [], 'empty, and now cached');
  await touch(ns, '/s/d/a');
  t.same(await names(ns, '/s/d'), ['a'], 'create');
  await ns.fs.mkdir('/s/d/sub', 0o755);
  t.same(await names(ns, '/s/d'), ['a', 'sub'], 'mkdir');
  await ns.fs.symlink('a', '/s/d/l');
  t.same(await names(ns, '/s/d'), ['a', 'l', 'sub'], 'symlink');
  await ns.fs.link('/s/d/a', '/s/d/h');
  t.same(await names(ns, '/s/d'), ['a', 'h', 'l', 'sub'], 'link');
  await ns.fs.rename('/s/d/h', '/s/d/h2');
  t.same(await names(ns, '/s/d'), ['a', 'h2', 'l', 'sub'], 'rename within the directory');
  t.same(await names(ns, '/s/e'), [], 'the other directory, cached');
  await ns.fs.rename('/s/d/h2', '/s/e/h3');
  t.same(await names(ns, '/s/d'), ['a', 'l', 'sub'], 'rename away: gone from the source');
  t.same(await names(ns, '/s/e'), ['h3'], 'rename away: in the target');
  await touch(ns, '/s/e/x');
  await ns.fs.rename('/s/e/x', '/s/e/h3');
  t.same(await names(ns, '/s/e'), ['h3'], 'rename over an existing name');
  await ns.fs.unlink('/s/d/l');
  t.same(await names(ns, '/s/d'), ['a', 'sub'], 'unlink');
  await ns.fs.rmdir('/s/d/sub');
  t.same(await names(ns, '/s/d'), ['a'], 'rmdir');
  await ns.snapshots.fastcopy('s', 'd/a', 'd/copy');
  t.same(await names(ns, '/s/d'), ['a', 'copy'], 'fastcopy through the control plane');
  t.same(await names(ns, '/s'), ['.snapshots', 'd', 'e'], 'the share root');
});

t.test('a listing read while a change lands is not kept', async (t) => {
  const ns = await open(t);
  for (let i = 0; i < 3000; i++) await touch(ns, `/s/f${i}`);
  // A new share's listing is cached from its making on: forget it, so the listing is read.
  ns.ctx.meta.forgetVolume((await ns.ctx.meta.shareVolumeId('s'))!);
  // Start a listing (a LevelDB read of 3,000 entries, tens of ms), and once its read is under
  // way (a turn of the event loop), change the directory: a one-entry batch lands first.
  const listing = ns.fs.readdir('/s');
  await new Promise((r) => setImmediate(r));
  await touch(ns, '/s/late');
  await listing;
  const now = await names(ns, '/s');
  t.ok(now.includes('late'), 'the file made during the first listing is in the next one');
  t.equal(now.length, 3002, '3,000 files, late, .snapshots');
});

t.test('a share made again under its name lists as the new one', async (t) => {
  const ns = await open(t);
  await touch(ns, '/s/old');
  t.same(await names(ns, '/s'), ['.snapshots', 'old']);
  await ns.shares.remove('s', { force: true });
  await ns.shares.create('s');
  t.same(await names(ns, '/s'), ['.snapshots'], 'empty');
});

t.test('a cached listing follows changes without reading LevelDB again, in key order', async (t) => {
  const dir = tmpDir(t);
  const odd = ['Z', 'a', 'é', '\uFFFD', '\u{1F600}', 'b\u{10000}', 'b\uE000', '~'];
  {
    const { ns, store } = await openNs(t, dir);
    await ns.shares.create('s');
    await ns.fs.mkdir('/s/d', 0o755);
    t.same(await names(ns, '/s/d'), [], 'listed once (cached)');
    // Counts the scans the namespace asks of the real database (nothing is changed).
    const db = store.db as unknown as { iterator: (...a: unknown[]) => unknown };
    const iterator = db.iterator;
    let scans = 0;
    db.iterator = function (this: unknown, ...a: unknown[]) {
      scans++;
      return iterator.apply(this, a);
    };
    t.teardown(() => {
      db.iterator = iterator;
    });
    for (let i = 0; i < 300; i++) await touch(ns, `/s/d/f${i}`);
    for (const n of odd) await touch(ns, `/s/d/${n}`);
    await ns.fs.unlink('/s/d/f7');
    await ns.fs.rename('/s/d/f8', '/s/d/g8');
    const listed = (await ns.fs.readdir('/s/d')).map((e) => e.name);
    t.equal(scans, 0, 'no LevelDB scan for the listing after 300 creates, an unlink and a rename');
    t.equal(listed.length, 300 - 1 + odd.length, 'every name');
    t.ok(listed.includes('g8') && !listed.includes('f8') && !listed.includes('f7'), 'the rename and the unlink show');
    db.iterator = iterator;
    await ns.close();
    await store.close();
    // The same directory read from LevelDB after a reopen: the same names in the same order.
    const again = await openNs(t, dir);
    t.same((await again.ns.fs.readdir('/s/d')).map((e) => e.name), listed, "the cached listing's order is LevelDB's");
  }
});

t.test('a new directory or share lists what was made in it without reading LevelDB, in key order', async (t) => {
  // Issue 10: the first listing of a freshly filled directory read it back from LevelDB
  // (2,000 entries: 30-70 ms on a loaded machine).
  const dir = tmpDir(t);
  const { ns, store } = await openNs(t, dir);
  const db = store.db as unknown as { iterator: (...a: unknown[]) => unknown };
  const iterator = db.iterator;
  let scans = 0;
  db.iterator = function (this: unknown, ...a: unknown[]) {
    scans++;
    return iterator.apply(this, a);
  };
  t.teardown(() => {
    db.iterator = iterator;
  });
  await ns.shares.create('s');
  await ns.fs.mkdir('/s/d', 0o755);
  // No surrogates: the fast order; with one: the UTF-8 comparison.
  const plain = ['Z', 'a', 'é', '\uFFFD', 'b\uE000', 'b', '~', 'B'];
  for (const n of plain) await touch(ns, `/s/d/${n}`);
  for (const n of plain) await touch(ns, `/s/${n}`);
  await touch(ns, '/s/\u{1F600}');
  const before = scans;
  const inD = (await ns.fs.readdir('/s/d')).map((e) => e.name);
  const inS = (await ns.fs.readdir('/s')).map((e) => e.name);
  t.equal(scans - before, 0, 'no LevelDB scan for either listing');
  t.equal(inD.length, plain.length, 'every name in the directory');
  t.equal(inS.length, plain.length + 3, 'every name in the share, d and .snapshots');
  db.iterator = iterator;
  await ns.close();
  await store.close();
  const again = await openNs(t, dir);
  t.same((await again.ns.fs.readdir('/s/d')).map((e) => e.name), inD, "the directory's order is LevelDB's");
  t.same((await again.ns.fs.readdir('/s')).map((e) => e.name), inS, "the share's order is LevelDB's");
});
