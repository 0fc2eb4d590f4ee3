// LevelDB makes a new log file when its memtable fills and never fsyncs the directory after; the
// kv layer (src/kv/db.ts syncDirIfChanged) does, after a synced write, when the directory
// changed since its last fsync. Whether it changed must not be read from the directory's times
// alone: they move in coarse ticks, and a log made in the tick of the last fsync went unsynced
// (CI's fast machine lost fsynced files in the power-cut test that way). Here the power-loss file
// system reports frozen directory times, the extreme of a coarse clock, and every synced write
// acknowledged before a real power cut (unsynced names and data dropped) must be there after it.

import t from 'tap';
import fs from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { type Db, writeBatch } from '../src/kv/db.js';
import { tmpDir } from './helpers/tmpdir.js';
import { startPowerfail } from './powerfail/powerfail.js';

const open = (dir: string): Db =>
  new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer', writeBufferSize: 4 * 1024 * 1024 });

t.test('synced writes into logs LevelDB made after the last directory fsync survive a power cut, with coarse directory times', async (t) => {
  const tmp = tmpDir(t, 'vmvault-kvdir-');
  let db: Db | undefined;
  const pf = await startPowerfail(t, tmp, 7, {
    frozenDirTimes: true,
    before: async () => {
      await db?.close().catch(() => {});
    },
  });
  const dir = path.join(pf.mount, 'db');
  db = open(dir);
  await db.open();
  // The database's own name is its creator's to make durable (the store does it at create).
  const parent = await fs.open(pf.mount, 'r');
  await parent.sync();
  await parent.close();
  const logs = async () => (await fs.readdir(dir)).filter((n) => n.endsWith('.log'));
  const logsAtStart = await logs();
  // Random 256 KiB values: LevelDB's flush of a full 4 MiB memtable then takes long enough (a
  // table of incompressible bytes through the power-loss file system) that the synced writes
  // made just after it switched logs land before its MANIFEST sync, which fsyncs the directory.
  const acked: string[] = [];
  let switched = false;
  for (let i = 0; i < 40 && !switched; i++) {
    const key = `k${String(i).padStart(4, '0')}`;
    await writeBatch(db, [{ type: 'put', key: Buffer.from(key), value: randomBytes(256 * 1024) }], true);
    acked.push(key);
    switched = (await logs()).some((n) => !logsAtStart.includes(n));
  }
  t.ok(switched, 'LevelDB switched to a new log during the writes');
  for (let i = 0; i < 2; i++) {
    const key = `after${i}`;
    await writeBatch(db, [{ type: 'put', key: Buffer.from(key), value: Buffer.from(key) }], true);
    acked.push(key);
  }
  const cut = await pf.cut();
  t.comment(`the cut undid ${cut.undoneOps} name op(s), dropped ${cut.droppedBytes} bytes`);
  await db.close().catch(() => {});
  db = undefined;
  await pf.powerOn();
  db = open(dir);
  await db.open();
  const missing: string[] = [];
  for (const k of acked) if ((await db.get(Buffer.from(k)).catch(() => undefined)) === undefined) missing.push(k);
  t.same(missing, [], `every acknowledged synced write is there after the cut (${acked.length} written)`);
  await db.close();
  db = undefined;
});
