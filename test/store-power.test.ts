// A store created on a disk that then loses power keeps what it acknowledged: the directories
// it made (the data directory, possibly nested, and db/ inside it) must be durable in their
// parents before a synced write inside them counts. Runs on the power-loss file system.

import t from 'tap';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SegmentStore } from '../src/store/store.js';
import { runAndKill } from './helpers/kill-child.js';
import { tmpDir } from './helpers/tmpdir.js';
import { startPowerfail } from './powerfail/powerfail.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'store-power-child.js');

t.test('a new store survives a power cut after its first synced write', async (t) => {
  const dir = tmpDir(t, 'vmvault-store-power-');
  const pf = await startPowerfail(t, dir, 7);
  const store = path.join(pf.mount, 'srv', 'vmvault', 'data');
  // Killed as soon as it is ready, and the power cut at once.
  let cut: Promise<unknown> | undefined;
  await runAndKill(child, [store], (kill) => {
    kill();
    cut = pf.cut();
    return () => {};
  });
  const r = (await cut) as { undone: string[] };
  await pf.powerOn();
  t.comment(`the cut undid: ${r.undone.join('; ') || 'nothing'}`);
  const s = await SegmentStore.open(store, { mustExist: true }).catch((err: Error) => err);
  t.notOk(s instanceof Error, `the store is still there: ${s instanceof Error ? `${s.message} (${String((s as { cause?: unknown }).cause)})` : 'yes'}`);
  if (s instanceof Error) return;
  try {
    t.equal(String(await s.db.get(Buffer.from('power-probe'))), 'acknowledged', 'the synced write survived');
  } finally {
    await s.close();
  }
});
