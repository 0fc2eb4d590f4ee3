// A crash during snapshot creation leaves either no snapshot or a complete one: a child
// takes snapshots of a share in a loop and is killed with SIGKILL at random moments. Every
// other kill is aimed into a snapshot (a few ms after the child logs its start), and the test
// counts the kills that did land inside one: without any, it proves nothing and fails.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VOLUME } from '../src/namespace/keys.js';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { Rng } from './helpers/data.js';
import { FILES, fileContent } from './helpers/snapshot-child.js';
import { after, inNext, runAndKill } from './helpers/kill-child.js';
import { tmpDir } from './helpers/tmpdir.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'snapshot-child.js');

t.test('SIGKILL during snapshot creation: no snapshot or a complete one', async (t) => {
  const dir = tmpDir(t);
  const store = path.join(dir, 'store');
  const log = path.join(dir, 'done.log');
  const rng = new Rng(77);
  let seen = 0;
  let inside = 0;
  for (let round = 0; round < 8; round++) {
    const ms = rng.range(50, 600);
    await runAndKill(child, [store, log], round % 2 === 1 ? inNext(log, /^start /m, ms % 15, 1) : after(ms));
    const lines = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
    // The last line is `start sK` when the kill came after sK began and before it was logged done.
    const last = lines[lines.length - 1] ?? '';
    if (last.startsWith('start ')) {
      inside++;
      t.comment(`round ${round}: killed inside snapshot ${last.slice(6)}`);
    }
    const done = lines.filter((l) => !l.startsWith('start '));
    const s = await SegmentStore.open(store);
    const ns = await Namespace.open(s, { log: () => {} });
    try {
      const snaps = await ns.snapshots.list('vms');
      const names = new Set(snaps.map((x) => x.name));
      const missing = done.filter((d) => !names.has(d));
      t.same(missing, [], `round ${round}: every snapshot reported done exists (${snaps.length} listed)`);
      let incomplete = 0;
      for (const snap of snaps) {
        const entries = await ns.fs.readdir(`/vms/.snapshots/${snap.name}/d`);
        if (entries.length !== FILES || snap.files !== FILES) incomplete++;
      }
      t.equal(incomplete, 0, `round ${round}: every listed snapshot is complete`);
      if (snaps.length > 0) {
        const last = snaps[snaps.length - 1].name;
        let bad = 0;
        for (const i of [0, 1, FILES >> 1, FILES - 1]) {
          const p = `/vms/.snapshots/${last}/d/f${i}`;
          const fh = await ns.fs.open(p, 0);
          const got = await ns.fs.read(fh, 0, 1 << 20);
          await ns.fs.release(fh);
          if (!got.equals(fileContent(i))) bad++;
        }
        t.equal(bad, 0, `round ${round}: the newest snapshot's files read back`);
      }
      let volumes = 0;
      for await (const _ of s.db.keys({ gte: Buffer.from([VOLUME]), lt: Buffer.from([VOLUME + 1]) })) volumes++;
      t.equal(volumes, 1 + snaps.length, `round ${round}: no half-made volume is left`);
      seen = snaps.length;
    } finally {
      await ns.close();
      await s.close();
    }
  }
  t.ok(seen > 0, `the child finished ${seen} snapshots across the kills`);
  t.ok(inside > 0, `${inside} of the 8 kills landed in the middle of a snapshot`);
});
