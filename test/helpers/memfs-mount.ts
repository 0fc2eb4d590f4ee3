// A separate process serving a Memfs mount (on the libfuse3 binding) until killed: the
// stale-mount tests SIGKILL (or SIGSTOP) it to leave a mount without a working server. Prints
// one JSON line when mounted; SIGTERM unmounts and exits 0.
import { Memfs } from './memfs.js';
import { PathMount } from './path-mount.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: memfs-mount.js <mount point>');

const mount = new PathMount(dir, new Memfs());
await mount.mount();
process.stdout.write(JSON.stringify({ mounted: dir }) + '\n');

process.on('SIGTERM', () => {
  mount.unmount().then(() => process.exit(0), () => process.exit(1));
});
