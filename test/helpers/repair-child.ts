// Child for the repair crash test: repairs one damaged segment of the store in `dir` with the
// bytes of the healthy copy in `copyDir`, and stops for SIGKILL at a chosen point:
// - "before-batch": the fresh record is appended and fsynced, the LevelDB batch that would
//   point the index at it is held back (its write never returns);
// - "after-batch": the repair has returned (its batch is written).
// It tells the parent when it has reached that point; the parent kills it there.

import { SegmentStore } from '../../src/store/store.js';
import { internalsOf } from '../../src/store/internals.js';

async function main(): Promise<void> {
  const [dir, copyDir, mode, fpHex] = process.argv.slice(2);
  const fp = Buffer.from(fpHex, 'hex');
  const copy = await SegmentStore.open(copyDir, { mustExist: true, workers: 1 });
  const bytes = await copy.segment(fp);
  if (!bytes) throw new Error('the copy lacks the segment');
  const store = await SegmentStore.open(dir, { mustExist: true, workers: 1, log: () => {} });
  const db = internalsOf(store).db;
  if (mode === 'before-batch') {
    const batch = db.batch.bind(db);
    (db as unknown as { batch: () => unknown }).batch = () => {
      const b = batch();
      (b as unknown as { write: () => Promise<void> }).write = () => {
        process.send?.('ready');
        return new Promise<void>(() => {}); // held until the kill
      };
      return b;
    };
  }
  await store.repairSegment(fp, bytes);
  process.send?.('ready');
  await new Promise<void>(() => {});
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
