// Crash test: a child ingesting and editing is killed with SIGKILL at random moments, again
// and again. After each kill the store is reopened: every version the child had committed
// (and logged after the commit returned) reads back identical, and no tree references a
// segment that is not in the store.

import t from 'tap';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SegmentStore } from '../src/store/store.js';
import { decodeVersion } from '../src/store/tree/version.js';
import { readLog, regenerate } from './helpers/crash-child.js';
import { Rng } from './helpers/data.js';
import { after, runAndKill } from './helpers/kill-child.js';
import { tmpDir } from './helpers/tmpdir.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'crash-child.js');
// 16 in the default suite (CI's time budget); `npm run test:crash` runs 100.
const ROUNDS = Number(process.env.VMVAULT_CRASH_ROUNDS ?? 16);


t.test(`SIGKILL during ingest, ${ROUNDS} times`, async (t) => {
  const dir = tmpDir(t);
  const log = path.join(dir, 'committed.log');
  const store = path.join(dir, 'store');
  const rng = new Rng(2026);
  let checked = 0;
  let repaired = 0;
  for (let round = 0; round < ROUNDS; round++) {
    await runAndKill(child, [store, log, String(rng.next())], after(rng.range(150, 1500)));
    const lines = readLog(log);
    const s = await SegmentStore.open(store);
    try {
      if (s.recovery && s.recovery.containersRepaired + s.recovery.removedEmpty > 0) repaired++;
      const memo = new Map<number, Buffer>();
      let bad = 0;
      // Everything committed since the last round, and a sample of what came before.
      const sample = lines.filter((l) => l.n >= checked || rng.int(lines.length) < 8);
      for (const l of sample) {
        const v = decodeVersion(Buffer.from(l.version, 'hex'));
        const got = await s.read(v, 0, v.size);
        if (!got.equals(regenerate(lines, l.n, memo))) bad++;
      }
      t.equal(bad, 0, `round ${round}: ${lines.length - checked} new and ${sample.length - (lines.length - checked)} older committed versions read back identical`);
      checked = lines.length;
      const roots = lines.map((l) => ({ version: decodeVersion(Buffer.from(l.version, 'hex')), label: `version ${l.n}` }));
      const report = await s.verifyTrees(roots, { full: round % 6 === 5 });
      t.same(report.problems, [], `round ${round}: no dangling reference`);
    } finally {
      await s.close();
    }
  }
  t.ok(checked > ROUNDS, `the child committed ${checked} versions across the kills`);
  t.ok(repaired > 0, `recovery repaired a torn container after ${repaired} of ${ROUNDS} kills`);
  const s = await SegmentStore.open(store);
  const lines = readLog(log);
  const memo = new Map<number, Buffer>();
  let bad = 0;
  for (const l of lines) {
    const v = decodeVersion(Buffer.from(l.version, 'hex'));
    if (!(await s.read(v, 0, v.size)).equals(regenerate(lines, l.n, memo))) bad++;
  }
  t.equal(bad, 0, `at the end, all ${lines.length} committed versions read back identical`);
  const full = await s.verify({ full: true });
  await s.close();
  t.same(full.problems, [], `full container verify after all kills (${full.containers} containers, ${full.records} records)`);
  t.ok(full.containers > 0 && full.records > 0, 'the verify saw the data');
});
