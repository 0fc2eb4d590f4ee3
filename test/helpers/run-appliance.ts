// Runs the appliance in a child process for tests: the tests then drive the mount with real
// tools (qemu-img, fio, rsync, tar) without the test process serving FUSE itself.

import { main } from '../../src/appliance.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
