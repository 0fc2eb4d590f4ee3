// A restore starts its target's writeback while it goes on (restore.ts, EarlySync): an fdatasync
// each 64 MiB written, so the final fsync does not write the whole disk after the last read. The
// bytes, holes included, read back as the file's. The datasync calls are counted by wrapping
// FileHandle's own method (the real call still runs).

import t from 'tap';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { restoreFile } from '../src/backup/restore.js';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { generate, Rng } from './helpers/data.js';
import { writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test('a restore of 160 MiB syncs its target early while writing and reads back identical', async (t) => {
  const dir = tmpDir(t);
  const store = await SegmentStore.open(path.join(dir, 'store'));
  const ns = await Namespace.open(store, { log: () => {} });
  t.teardown(async () => {
    await ns.close();
    await store.close();
  });
  await ns.fs.mkdir('/s', 0o755);
  // Data, a 16 MiB hole, data: the hole must stay zeros in the target.
  const disk = Buffer.concat([generate(new Rng(31), 'random', 96 * MiB), Buffer.alloc(16 * MiB), generate(new Rng(32), 'random', 48 * MiB)]);
  await writeFile(ns, '/s/vda.raw', disk);

  const probe = await fsp.open(path.join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as { datasync(): Promise<void> };
  await probe.close();
  const real = proto.datasync;
  let datasyncs = 0;
  proto.datasync = function (this: unknown) {
    datasyncs++;
    return real.call(this);
  };
  t.teardown(() => {
    proto.datasync = real;
  });

  const to = path.join(dir, 'vda.raw');
  await restoreFile(ns, '/s/vda.raw', to, {});
  t.ok(datasyncs >= 1, `the target was synced ${datasyncs} times while being written (each 64 MiB)`);
  t.equal(sha(fs.readFileSync(to)), sha(disk), 'the target holds the file');
});
