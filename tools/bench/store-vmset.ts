// The VM image set bench (`npm run bench:vmset -- DIR`): the three sample images of DIR
// (vm1-day1.raw, vm1-day2.raw, vm2-day1.raw; see /work/shared/testdata/make-vm-images.sh)
// ingested in that order into one new store with the default segment sizes, each read whole
// (holes included, as a copy over the mount would send them) and committed.
//
//   vmset.ingest      MB/s of apparent size (10^6 bytes of the images' length per second)
//   vmset.stored      bytes of container files after all three
//   vmset.added.day2  bytes the second day of vm1 added
//   vmset.added.vm2   bytes the second VM added
//
// Then the same three images through the doors users take, each into a fresh store
// (vmset-mount.ts): day 1, a snapshot, day 2 copied over it, the second VM, then a GC.
//   vmset.mount.stored            bytes of container files after `cp --sparse=always` through the mount, after GC
//   vmset.mount.vs_ingest         that over vmset.stored (1.0: the same bytes cost the same)
//   vmset.namespace.stored        the same copy pattern straight into the namespace, after GC
//   vmset.namespace.vs_ingest     that over vmset.stored
// --no-mount skips the mount (it needs /dev/fuse), --no-doors both.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SegmentStore } from '../../src/store/store.js';
import { type Figure, ingestFile, mbps, note, now } from './store-io.js';
import { viaMount, viaNamespace, workDir } from './vmset-mount.js';

export const IMAGES = ['vm1-day1.raw', 'vm1-day2.raw', 'vm2-day1.raw'];

export async function benchVmset(opts: { dir: string; storeDir?: string; mount?: boolean; doors?: boolean; emit: (f: Figure) => void }): Promise<void> {
  const files = IMAGES.map((n) => path.join(opts.dir, n));
  for (const f of files) if (!fs.existsSync(f)) throw new Error(`${f} is missing (make-vm-images.sh builds the set)`);
  const dir = opts.storeDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-bench-vmset-'));
  const store = await SegmentStore.open(dir);
  const stored: number[] = [];
  try {
    let apparent = 0;
    let busy = 0;
    for (const f of files) {
      const size = fs.statSync(f).size;
      const t0 = now();
      await ingestFile(store, f);
      const s = now() - t0;
      busy += s;
      apparent += size;
      const st = await store.stats();
      stored.push(st.storedBytes);
      note(`${path.basename(f)}: ${mbps(size, s)} MB/s, stored ${st.storedBytes} B, ${st.segments} segments, zero ${st.zeroBytes} B`);
    }
    opts.emit({ figure: 'vmset.ingest', value: mbps(apparent, busy), unit: 'MB/s' });
    opts.emit({ figure: 'vmset.stored', value: stored[2], unit: 'B' });
    opts.emit({ figure: 'vmset.added.day2', value: stored[1] - stored[0], unit: 'B' });
    opts.emit({ figure: 'vmset.added.vm2', value: stored[2] - stored[1], unit: 'B' });
  } finally {
    await store.close();
    if (!opts.storeDir) fs.rmSync(dir, { recursive: true, force: true });
  }
  if (opts.doors === false) return;
  const ratio = (v: number): number => Math.round((v / stored[2]) * 1000) / 1000;
  const door = async (name: string, f: typeof viaMount): Promise<void> => {
    const work = workDir(`vmvault-bench-vmset-${name}-`);
    try {
      const r = await f(files, work);
      opts.emit({ figure: `vmset.${name}.stored`, value: r.afterGc, unit: 'B' });
      opts.emit({ figure: `vmset.${name}.stored_before_gc`, value: r.steps[2], unit: 'B' });
      opts.emit({ figure: `vmset.${name}.vs_ingest`, value: ratio(r.afterGc), unit: 'ratio' });
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  };
  await door('namespace', viaNamespace);
  if (opts.mount !== false) await door('mount', viaMount);
}
