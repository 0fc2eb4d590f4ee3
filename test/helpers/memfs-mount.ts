// A separate process serving a Memfs mount until killed: the stale-mount tests SIGKILL (or
// SIGSTOP) it to leave a mount without a working server. Prints one JSON line when mounted,
// naming the libfuse.so the process actually mapped.
import { readFile } from 'node:fs/promises';
import { FuseMount } from '../../src/fuse/binding.js';
import { Memfs } from './memfs.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: memfs-mount.js <mount point>');

const mount = new FuseMount(dir, new Memfs());
await mount.mount();
const maps = await readFile('/proc/self/maps', 'utf8');
const libfusePath = maps.split('\n').map((l) => l.split(/\s+/).pop() ?? '').find((p) => /libfuse\.so/.test(p));
process.stdout.write(JSON.stringify({ mounted: dir, libfuse: FuseMount.libfuse(), libfusePath }) + '\n');

process.on('SIGTERM', () => {
  mount.unmount().then(() => process.exit(0), () => process.exit(1));
});
