// Child for the snapshot crash test: fills a share with files once, then takes snapshots in
// a loop, logging each after it returned, until killed. Before each it writes `start <name>`
// (page cache is enough: the parent reads it after this process died), so the parent can tell
// a kill that landed inside a snapshot from one between two.

import fs from 'node:fs';
import { Namespace } from '../../src/namespace/namespace.js';
import { SegmentStore } from '../../src/store/store.js';

export const FILES = 400;

export function fileContent(i: number): Buffer {
  return Buffer.from(`file ${i} `.repeat(1 + (i % 50)));
}

async function main(): Promise<void> {
  const [dir, log] = process.argv.slice(2);
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {} });
  if ((await ns.shares.list()).length === 0) {
    await ns.shares.create('vms');
    await ns.fs.mkdir('/vms/d', 0o755);
    for (let i = 0; i < FILES; i++) {
      const fh = await ns.fs.create(`/vms/d/f${i}`, 0o644);
      await ns.write(fh, 0, fileContent(i));
      await ns.fs.release(fh);
    }
    // Made durable before the loop (files and names): the test kills this process at any
    // moment after 'ready', and what was not fsynced may be lost by a crash (ARCHITECTURE.md,
    // "Commit rules"); the test is about snapshots, not about the files it starts from.
    await ns.flushAll();
    await ns.fs.fsyncdir('/vms/d');
  }
  const fd = fs.openSync(log, 'a');
  process.send?.('ready');
  for (let k = (await ns.snapshots.list('vms')).length; ; k++) {
    fs.writeSync(fd, `start s${k}\n`);
    await ns.snapshots.create('vms', `s${k}`);
    fs.writeSync(fd, `s${k}\n`);
    fs.fsyncSync(fd);
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/.*\//, ''))) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
