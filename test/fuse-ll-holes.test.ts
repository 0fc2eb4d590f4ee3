// Reads inside a file's holes answered by the addon without JavaScript (native/src/fuse3/
// holes.c, src/fuse/ll-holes.ts), through the real kernel over a real store and namespace:
// every read equals the model, holes are answered in C, and a write into a hole through
// another descriptor is read back through the first one (the addon forgot the hole at once).
// This process serves the mount, so every access is a child process, never this process.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fuse3Available } from '../src/fuse/ll/session.js';
import { mountStoreLl } from './helpers/ll-store-mount.js';
import { shScript } from './helpers/sh-script.js';

// Layout (MiB unless said): data 1, hole 6, data 300 KiB, hole 5 + 12345 bytes, data 4097 bytes,
// hole 3 (the end of the file). Holes are written as ftruncate/seek gaps: the store keeps them
// as zero segments. Pass 1 reads it in order (the addon learns the holes), pass 2 again from
// an empty page cache, then random reads of odd sizes across every boundary; then another
// descriptor writes into the middle of the second hole, and the first reads it back.
const PY = `
import os, random, sys
MiB = 1 << 20
f = sys.argv[1]
rng = random.Random(7)
parts = [os.urandom(MiB), bytes(6 * MiB), os.urandom(300 * 1024), bytes(5 * MiB + 12345), os.urandom(4097), bytes(3 * MiB)]
model = bytearray(b''.join(parts))
with open(f, 'wb') as w:
    for p in parts:
        if any(p): w.write(p)
        else: w.seek(len(p), 1)
    w.truncate(len(model))
    w.flush(); os.fsync(w.fileno())
r = os.open(f, os.O_RDONLY)
def check(what):
    bad = 0
    os.posix_fadvise(r, 0, 0, os.POSIX_FADV_DONTNEED)
    for off in range(0, len(model), MiB):
        if os.pread(r, MiB, off) != model[off:off + MiB]: bad += 1
    os.posix_fadvise(r, 0, 0, os.POSIX_FADV_DONTNEED)
    for k in range(200):
        off = rng.randrange(len(model)); n = 1 + rng.randrange(2 * MiB)
        if os.pread(r, n, off) != model[off:off + n]: bad += 1
        if k % 50 == 0: os.posix_fadvise(r, 0, 0, os.POSIX_FADV_DONTNEED)
    print(what, bad)
check('pass1'); check('pass2')
sys.stdout.flush()
# A write into the second hole through another descriptor, read back through the first.
at = 1 * MiB + 6 * MiB + 300 * 1024 + 2 * MiB + 4096
data = os.urandom(200000)
w = os.open(f, os.O_WRONLY)
os.pwrite(w, data, at)
model[at:at + len(data)] = data
check('after-write')
os.close(w)
check('after-close')
os.ftruncate(os.open(f, os.O_WRONLY), 9 * MiB)
del model[9 * MiB:]
check('after-truncate')
`;

const why = !fs.existsSync('/dev/fuse') ? 'no /dev/fuse' : process.getuid?.() !== 0 ? 'needs root' : !fuse3Available() ? 'the fuse3 addon is not built (libfuse3-dev)' : '';
if (why) {
  t.plan(0, `holes answered by the addon: ${why}`);
} else {
  t.test('hole reads answered without JavaScript read as the model, and a write into a hole shows at once', async (t) => {
    const { dir, mnt, session } = await mountStoreLl(t, 'vmvault-llholes-');
    fs.writeFileSync(path.join(dir, 't.py'), PY);
    const r = await shScript(`mkdir ${mnt}/s && python3 ${dir}/t.py ${mnt}/s/img`);
    t.equal(r.code, 0, `python ran (${r.stderr.trim().slice(-400)})`);
    t.same(r.stdout.trim().split('\n'), ['pass1 0', 'pass2 0', 'after-write 0', 'after-close 0', 'after-truncate 0'], 'every read equals the model, before and after a write into a hole and a truncation');
    t.ok(session.holeReads > 10, `${session.holeReads} reads of holes answered by the addon`);
  });
}
