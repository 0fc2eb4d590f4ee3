// Child for the GC crash test: keeps a share where files come and go, runs garbage
// collection over and over, and is killed with SIGKILL at random moments. It logs the
// content seed of every file once it is committed (fsync returned), and each name it is about
// to delete, so the parent knows which files must read back.

import fs from 'node:fs';
import { runGc } from '../../src/namespace/maintenance.js';
import { Namespace } from '../../src/namespace/namespace.js';
import { SegmentStore } from '../../src/store/store.js';
import { generate, Rng } from './data.js';

export function gcContent(seed: number): Buffer {
  const rng = new Rng(seed);
  return Buffer.concat([generate(rng, 'random', 600 * 1024), generate(rng, 'text', 600 * 1024)]);
}

async function main(): Promise<void> {
  const [dir, log, seedArg] = process.argv.slice(2);
  const store = await SegmentStore.open(dir, { chunker: { minSize: 1024, avgSize: 4096, maxSize: 16384 } });
  const ns = await Namespace.open(store, { log: () => {} });
  if ((await ns.shares.list()).length === 0) await ns.shares.create('vms');
  const fd = fs.openSync(log, 'a');
  const note = (line: string): void => {
    fs.writeSync(fd, line + '\n');
    fs.fsyncSync(fd);
  };
  const rng = new Rng(Number(seedArg));
  process.send?.('ready');
  let made = 0;
  for (let round = 0; ; round++) {
    for (let k = 0; k < 3; k++) {
      const seed = rng.next();
      // Unique across children: a killed child may have made a file it never logged.
      const name = `f${process.pid}-${made++}`;
      const fh = await ns.fs.create(`/vms/${name}`, 0o644);
      await ns.write(fh, 0, gcContent(seed));
      await ns.fs.fsync(fh);
      await ns.fs.release(fh);
      note(`add ${name} ${seed}`);
    }
    const names = (await ns.fs.readdir('/vms')).map((e) => e.name).filter((n) => n.startsWith('f'));
    for (const n of names.slice(0, Math.max(0, names.length - 4))) {
      // Logged before: a file deleted but not yet logged would look lost to the parent.
      note(`del ${n}`);
      await ns.fs.unlink(`/vms/${n}`);
    }
    // Markers for the parent (page cache is enough: it reads them after this process died).
    fs.writeSync(fd, 'gc-start\n');
    await runGc(ns, { copyForwardBelow: 0.9 });
    fs.writeSync(fd, 'gc-end\n');
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/.*\//, ''))) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
