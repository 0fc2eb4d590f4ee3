// The namespace caches share and snapshot names (each FUSE operation starts with one). A path
// must follow the name as it is now: a share or snapshot removed and made again under the same
// name, or one that did not exist when first asked for, must not be served from the cache.

import t from 'tap';
import { Namespace } from '../src/namespace/namespace.js';
import { openNs, readFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';
import type { TestT } from './helpers/tap-types.js';

async function open(t: TestT): Promise<Namespace> {
  const { ns } = await openNs(t, tmpDir(t));
  return ns;
}

async function put(ns: Namespace, path: string, text: string): Promise<void> {
  const fh = await ns.fs.create(path, 0o644);
  await ns.write(fh, 0, Buffer.from(text));
  await ns.fs.release(fh);
}

const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code);

t.test('a share removed and made again under its name is the new one', async (t) => {
  const ns = await open(t);
  t.equal(await code(ns.fs.getattr('/s')), 'NOT_FOUND', 'absent before it is made (and that answer is cached)');
  await ns.shares.create('s');
  t.equal((await ns.fs.getattr('/s')).type, 2, 'made: found, not the cached absence');
  await put(ns, '/s/f', 'old');
  t.equal((await readFile(ns, '/s/f')).toString(), 'old');
  await ns.shares.remove('s', { force: true });
  t.equal(await code(ns.fs.getattr('/s/f')), 'NOT_FOUND', 'removed: its files are gone');
  t.equal(await code(ns.fs.getattr('/s')), 'NOT_FOUND');
  await ns.shares.create('s');
  t.same((await ns.fs.readdir('/s')).map((e) => e.name), ['.snapshots'], 'the new share is empty');
  await put(ns, '/s/f', 'new');
  t.equal((await readFile(ns, '/s/f')).toString(), 'new');
});

t.test('snapshot names follow create, remove and re-create', async (t) => {
  const ns = await open(t);
  await ns.shares.create('s');
  await put(ns, '/s/f', 'one');
  t.equal(await code(ns.fs.getattr('/s/.snapshots/p/f')), 'NOT_FOUND', 'absent before it is taken');
  await ns.snapshots.create('s', 'p');
  t.equal((await readFile(ns, '/s/.snapshots/p/f')).toString(), 'one');
  await ns.fs.unlink('/s/f');
  await put(ns, '/s/f', 'two');
  await ns.snapshots.remove('s', 'p');
  t.equal(await code(ns.fs.getattr('/s/.snapshots/p/f')), 'NOT_FOUND', 'removed');
  await ns.snapshots.create('s', 'p');
  t.equal((await readFile(ns, '/s/.snapshots/p/f')).toString(), 'two', 'the new snapshot, not the old one');
});

t.test('a clone is found under its new name', async (t) => {
  const ns = await open(t);
  await ns.shares.create('s');
  await put(ns, '/s/f', 'x');
  await ns.snapshots.create('s', 'p');
  t.equal(await code(ns.fs.getattr('/c/f')), 'NOT_FOUND');
  await ns.snapshots.clone('s', 'p', 'c');
  t.equal((await readFile(ns, '/c/f')).toString(), 'x');
});
