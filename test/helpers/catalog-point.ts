// A share `web01` whose snapshot `p1` holds `disk` as vda.raw, cataloged: the set-up of the
// tests that read guest files through `<image>.files/`. Each part's close goes onto `undo`
// (run in reverse by the caller, even on failure).

import fs from 'node:fs';
import path from 'node:path';
import { CatalogService } from '../../src/catalog/catalog-service.js';
import { Namespace } from '../../src/namespace/namespace.js';
import { SegmentStore } from '../../src/store/store.js';

export async function catalogedPoint(dir: string, disk: string, undo: Array<() => unknown>): Promise<{ store: SegmentStore; ns: Namespace; cat: CatalogService }> {
  const store = await SegmentStore.open(path.join(dir, 'store'));
  undo.push(() => store.close());
  const ns = await Namespace.open(store, { log: () => {} });
  undo.push(() => ns.close());
  await ns.shares.create('web01');
  const fh = await ns.fs.create('/web01/vda.raw', 0o644);
  await ns.write(fh, 0, fs.readFileSync(disk));
  await ns.fs.release(fh);
  await ns.flushAll();
  await ns.snapshots.create('web01', 'p1');
  const cat = new CatalogService(ns, { dataDir: path.join(dir, 'data') });
  undo.push(() => cat.close());
  await cat.build('web01', 'p1');
  return { store, ns, cat };
}
