// The power-loss file system's own process (never the appliance's, never the test's: a process
// must not serve a mount it uses itself). Mounts <base>/root at <mount> and takes commands on
// stdin, one per line, answering each with one JSON line on stdout:
//   cut   -> {"cut":CutReport}  unsynced state dropped; every operation fails with EIO from now
//   on    -> {"on":true}        serving again, only what was durable (plus the torn tails)
// The first line out is {"mounted":"<mount>"}. SIGTERM unmounts and exits.
//
// usage: node powerfail-main.js <base> <mount> <seed>
// POWERFAIL_FROZEN_DIR_TIMES=1: directories report fixed times (PowerfailFs's frozenDirTimes).

import readline from 'node:readline';
import { PathMount } from '../helpers/path-mount.js';
import { PowerfailFs } from './powerfail-fs.js';

const [base, mnt, seedArg] = process.argv.slice(2);
if (!base || !mnt || !seedArg) throw new Error('usage: powerfail-main.js <base> <mount> <seed>');

const pfs = new PowerfailFs(base, Number(seedArg), { frozenDirTimes: process.env.POWERFAIL_FROZEN_DIR_TIMES === '1' });
await pfs.init();
// Served on the libfuse3 binding through the path adapter (helpers/path-mount.ts). No caching in
// the kernel: after a cut the backing files change under it, and a cached page, attribute or name
// would show what the power cut took away (every open drops the page cache: keepCache off).
// Writes are write-through anyway (no writeback cache).
const mount = new PathMount(mnt, pfs, {
  fsname: 'powerfail',
  attrTimeoutS: 0,
  entryTimeoutS: 0,
  negativeTimeoutS: 0,
  keepCache: false,
  mkdir: true,
});
await mount.mount();
const say = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
say({ mounted: mount.mountPath });

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const cmd = line.trim();
  const answer =
    cmd === 'cut' ? pfs.cut().then((r) => say({ cut: r }))
    : cmd === 'on' ? pfs.powerOn().then(() => say({ on: true }))
    : Promise.resolve(say({ error: `unknown command ${cmd}` }));
  answer.catch((err) => say({ error: String((err as Error).stack) }));
});

// SIGTERM, or the parent gone (stdin closed): unmount, so no mount outlives its user.
let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  rl.close();
  mount.unmount().then(() => process.exit(0), (err) => {
    process.stderr.write(`powerfail: unmount failed: ${(err as Error).message}\n`);
    process.exit(1);
  });
};
process.on('SIGTERM', stop);
rl.on('close', stop);
