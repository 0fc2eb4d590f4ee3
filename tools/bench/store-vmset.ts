// The VM image set bench (`npm run bench:vmset -- DIR`): the three sample images of DIR
// (vm1-day1.raw, vm1-day2.raw, vm2-day1.raw; see /work/shared/testdata/make-vm-images.sh)
// ingested in that order into one new store with the default segment sizes, each read whole
// (holes included, as a copy over the mount would send them) and committed.
//
//   vmset.ingest      MB/s of apparent size (10^6 bytes of the images' length per second)
//   vmset.stored      bytes of container files after all three
//   vmset.added.day2  bytes the second day of vm1 added
//   vmset.added.vm2   bytes the second VM added

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SegmentStore } from '../../src/store/store.js';
import { type Figure, ingestFile, mbps, note, now } from './store-io.js';

export const IMAGES = ['vm1-day1.raw', 'vm1-day2.raw', 'vm2-day1.raw'];

export async function benchVmset(opts: { dir: string; storeDir?: string; emit: (f: Figure) => void }): Promise<void> {
  const files = IMAGES.map((n) => path.join(opts.dir, n));
  for (const f of files) if (!fs.existsSync(f)) throw new Error(`${f} is missing (make-vm-images.sh builds the set)`);
  const dir = opts.storeDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-bench-vmset-'));
  const store = await SegmentStore.open(dir);
  try {
    const stored: number[] = [];
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
}
