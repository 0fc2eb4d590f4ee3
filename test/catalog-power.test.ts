// A catalog its job reported built must survive a power cut: CatalogWriter.finish() syncs the
// file, renames it into place and syncs the directory (without the last step the rename was
// lost to a cut within the file system's commit interval, after its job had said it was
// built). The power-loss file system (test/powerfail) drops every name operation and byte not
// synced when it is cut.

import t from 'tap';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CatalogReader, CatalogWriter } from '../src/catalog/catalog-db.js';
import { mkdirDurable } from '../src/files/durable.js';
import { tmpDir } from './helpers/tmpdir.js';
import { startPowerfail } from './powerfail/powerfail.js';

const N = 500;

async function write(file: string, from?: string): Promise<void> {
  const w = new CatalogWriter(file, { share: 's', point: path.basename(file) }, from ? { from } : {});
  w.addVolume(w.addImage('vda.raw', 1 << 30, 'raw'), { name: 'p1', fs: 'ext', offset: 1 << 20, size: 1 << 29 });
  for (let i = 0; i < N; i++) w.add({ path: `/d/f${i}`, type: 'file', size: i, mtimeMs: 0, mode: 0o644, uid: 0, gid: 0, inode: 100 + i, deps: [{ logical: 0, physical: 4096 * (i + 1), length: 4096 }] });
  w.endVolume();
  await w.finish();
}

t.test('a finished catalog is there after a power cut, in both write modes', async (t) => {
  const pf = await startPowerfail(t, tmpDir(t, 'vmvault-catpower-'), 11);
  // A share's catalog directory, made as the catalog service makes it at the share's first build.
  const dir = path.join(pf.mount, 'catalogs', 'vm1');
  await mkdirDurable(dir);
  const a = path.join(dir, 'a.db');
  const b = path.join(dir, 'b.db');
  await write(a);
  await write(b, a); // copy mode: edited in memory, written once
  const cut = await pf.cut();
  t.comment(`the cut undid ${cut.undoneOps} name op(s), dropped ${cut.droppedBytes} bytes`);
  await pf.powerOn();
  for (const f of [a, b]) {
    const names = await fs.readdir(dir);
    t.ok(names.includes(path.basename(f)), `${path.basename(f)} is there (directory: ${names.join(', ')})`);
    if (!names.includes(path.basename(f))) continue;
    const r = new CatalogReader(f);
    try {
      t.equal(r.volumes().length, 1, `${path.basename(f)}: its volume`);
      t.equal(r.findByName('f499', { limit: 10 }).length, 1, `${path.basename(f)}: its rows`);
    } finally {
      r.close();
    }
  }
});
