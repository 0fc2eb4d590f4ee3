// SIGKILL at any moment of garbage collection leaves a store that opens, verifies clean and
// reads every live file identically; a later run finishes the work.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runGc, runVerify } from '../src/namespace/maintenance.js';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { Rng } from './helpers/data.js';
import { gcContent } from './helpers/gc-child.js';
import { after, inNext, runAndKill } from './helpers/kill-child.js';
import { tmpDir } from './helpers/tmpdir.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'gc-child.js');

function liveFiles(log: string): Map<string, number> {
  const live = new Map<string, number>();
  if (!fs.existsSync(log)) return live;
  for (const line of fs.readFileSync(log, 'utf8').split('\n')) {
    const [op, name, seed] = line.split(' ');
    if (op === 'add' && seed !== undefined) live.set(name, Number(seed));
    else if (op === 'del' && name) live.delete(name);
  }
  return live;
}

t.test('SIGKILL during garbage collection', async (t) => {
  const dir = tmpDir(t);
  const store = path.join(dir, 'store');
  const log = path.join(dir, 'ops.log');
  const rng = new Rng(5);
  let duringGc = 0;
  for (let round = 0; round < 10; round++) {
    const ms = rng.range(300, 2500);
    await runAndKill(child, [store, log, String(rng.next())], round % 2 === 1 ? inNext(log, /gc-start/, ms % 40, 2) : after(ms));
    const lines = fs.readFileSync(log, 'utf8').trimEnd().split('\n');
    if (lines[lines.length - 1] === 'gc-start') duringGc++;
    const live = liveFiles(log);
    const s = await SegmentStore.open(store);
    const ns = await Namespace.open(s, { log: () => {} });
    try {
      let bad = 0;
      for (const [name, seed] of live) {
        const p = `/vms/${name}`;
        const fh = await ns.fs.open(p, 0);
        const got = await ns.fs.read(fh, 0, 4 << 20);
        await ns.fs.release(fh);
        if (!got.equals(gcContent(seed))) bad++;
      }
      t.equal(bad, 0, `round ${round}: all ${live.size} live files read back identical`);
      const v = await runVerify(ns, { full: round % 3 === 2 });
      t.same(v.problems, [], `round ${round}: verify (${round % 3 === 2 ? 'full' : 'quick'}) is clean`);
    } finally {
      await ns.close();
      await s.close();
    }
  }
  t.ok(duringGc > 0, `${duringGc} of the 10 kills landed in the middle of a collection`);
  const s = await SegmentStore.open(store);
  const ns = await Namespace.open(s, { log: () => {} });
  try {
    const before = (await s.stats()).storedBytes;
    const r = await runGc(ns, {});
    const again = await runGc(ns, {});
    t.equal(again.reclaimedBytes, 0, `a run after the kills finishes the work (it reclaimed ${r.reclaimedBytes} of ${before} bytes), and the next finds nothing`);
    const v = await runVerify(ns, { full: true });
    t.same(v.problems, [], 'and the store verifies clean');
  } finally {
    await ns.close();
    await s.close();
  }
});
