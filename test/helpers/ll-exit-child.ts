// Mounts an LlMemfs at argv[2], says "mounted", then ends without unmount() the way argv[3]
// says: "exit" (process.exit) or "throw" (an uncaught exception). test/fuse-ll.test.ts checks
// that no dead mount is left behind.
import { dispatchOps, LlSession } from '../../src/fuse/ll/session.js';
import { LlMemfs } from './ll-memfs.js';

const [dir, how] = process.argv.slice(2);
if (!dir || (how !== 'exit' && how !== 'throw')) throw new Error('usage: ll-exit-child.js <mount point> exit|throw');
await LlSession.mount(dir, {}, dispatchOps(new LlMemfs().ops, { log: () => {} }));
process.stdout.write('mounted\n');
process.stdin.once('data', () => {
  if (how === 'exit') process.exit(3);
  throw new Error('uncaught, as the test asked');
});
