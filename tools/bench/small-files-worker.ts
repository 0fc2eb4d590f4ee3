// The small-file workload, run in a child process against a directory (a FUSE mount's or a
// plain one): the process serving a mount must never make system calls on it itself.
//   node dist/tools/bench/small-files-worker.js DIR COUNT
// Prints one JSON object: seconds per phase and the operations each phase made.
//
// create: open(O_CREAT|O_TRUNC) + write 4 KiB + close of COUNT new files.
// stat:   stat of every file after the kernel's dentry and inode caches are dropped (when we
//         may), so each stat reaches the file system rather than the kernel's attribute cache.
// readdir: READDIR_PASSES full listings of the directory (counted in entries).
// unlink: unlink of every file.

import fs from 'node:fs';
import path from 'node:path';

const [dir, countArg] = process.argv.slice(2);
const count = Number(countArg);
if (!dir || !Number.isInteger(count) || count < 1) {
  process.stderr.write('usage: small-files-worker DIR COUNT\n');
  process.exit(2);
}
const READDIR_PASSES = 5;
const data = Buffer.alloc(4096, 0x5a);
const names = Array.from({ length: count }, (_, i) => path.join(dir, `f${String(i).padStart(6, '0')}`));
const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const dropDentries = (): void => {
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '2');
  } catch {
    // not root: stats may partly come from the kernel's cache
  }
};

let t = process.hrtime.bigint();
for (let i = 0; i < count; i++) {
  // Each file gets its own content, as real small files do (no dedup shortcut).
  data.writeUInt32LE(i, 0);
  fs.writeFileSync(names[i], data);
}
const create = seconds(t);

dropDentries();
t = process.hrtime.bigint();
for (const n of names) {
  if (fs.statSync(n).size !== 4096) throw new Error(`${n}: wrong size`);
}
const stat = seconds(t);

t = process.hrtime.bigint();
for (let p = 0; p < READDIR_PASSES; p++) {
  const listed = fs.readdirSync(dir).length;
  if (listed < count) throw new Error(`readdir listed ${listed} of ${count}`);
}
const readdir = seconds(t);

t = process.hrtime.bigint();
for (const n of names) fs.unlinkSync(n);
const unlink = seconds(t);

process.stdout.write(
  JSON.stringify({
    create: { seconds: create, ops: count },
    stat: { seconds: stat, ops: count },
    readdir: { seconds: readdir, ops: count * READDIR_PASSES },
    unlink: { seconds: unlink, ops: count },
  }) + '\n',
);
