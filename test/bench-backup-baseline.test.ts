// bench:backup's ingest baseline (issue 11, backup.full.vs_store) runs in a fresh process of its
// own, so the figure compares a cold ingest with the cold full backup (the bench process's first
// work) rather than an ingest warmed by that backup. This checks the child: another process, one
// round per fresh store, the first its first work, and the same bytes stored as an ingest here
// stores them (a real store and the real ingestFile path; nothing is faked).

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { SegmentStore } from '../src/store/store.js';
import { ingestInFreshProcess } from '../tools/bench/backup.js';
import { ingestFile } from '../tools/bench/store-io.js';

t.test('the ingest baseline runs in a fresh process, cold then warm, storing the same root', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-bench-baseline-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'input.raw');
  // 12 MiB: random bytes, a zero run, and a repeat of the first MiB (duplicates within one ingest).
  const head = crypto.randomBytes(1 << 20);
  fs.writeFileSync(file, Buffer.concat([head, crypto.randomBytes(7 << 20), Buffer.alloc(3 << 20), head]));

  const store = await SegmentStore.open(path.join(dir, 'here'));
  const here = await ingestFile(store, file);
  await store.close();

  const child = await ingestInFreshProcess(file, path.join(dir, 'child'), 2);
  t.not(child.pid, process.pid, 'the ingest ran in another process');
  t.equal(child.rounds.length, 2, 'a cold round and a warm round');
  for (const r of child.rounds) {
    t.equal(r.root, here.root.toString('hex'), 'the child stored the same tree as an ingest in this process');
    t.ok(r.seconds > 0 && r.cpu > 0, 'timed, with CPU seconds');
    t.match(r.costs, /minor faults \d+, GC pauses: .*code space -?\d+ KiB grown/, 'what the round paid beyond CPU');
  }
  t.same(fs.readdirSync(path.join(dir, 'child')), [], 'each round had a fresh store, removed after it');
});
