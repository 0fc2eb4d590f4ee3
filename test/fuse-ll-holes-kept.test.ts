// The holes of a version already walked are taken again without a walk of its segment tree
// (src/fuse/ll-holes.ts, `kept`): a second open of the same committed file learns its holes from
// the first open's walk, and reads as before; once the file changed (a new version), the next
// open walks again and reads the new bytes, not the old holes. Through the real kernel over a
// real store and namespace; the walks are counted on the namespace's own zeroRuns (the real
// method, only wrapped to count). Every access is a child process, never this process.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fuse3Available } from '../src/fuse/ll/session.js';
import { mountStoreLl } from './helpers/ll-store-mount.js';
import { shScript } from './helpers/sh-script.js';

// make: data 1 MiB, hole 6 MiB, data 300 KiB, hole 5 MiB (the end), written as seek gaps; the
// model is kept beside. read: the whole file in 1 MiB reads from an empty page cache, and 100
// random reads of odd sizes, against the model. write: 200,000 bytes into the middle of the
// first hole, then the model likewise.
const PY = `
import os, random, sys
MiB = 1 << 20
what, f, m = sys.argv[1], sys.argv[2], sys.argv[3]
if what == 'make':
    parts = [os.urandom(MiB), bytes(6 * MiB), os.urandom(300 * 1024), bytes(5 * MiB)]
    with open(f, 'wb') as w:
        for p in parts:
            if any(p): w.write(p)
            else: w.seek(len(p), 1)
        w.truncate(sum(len(p) for p in parts))
        w.flush(); os.fsync(w.fileno())
    open(m, 'wb').write(b''.join(parts))
elif what == 'write':
    data = os.urandom(200000)
    at = 3 * MiB + 12345
    w = os.open(f, os.O_WRONLY)
    os.pwrite(w, data, at)
    os.fsync(w)
    os.close(w)
    model = bytearray(open(m, 'rb').read())
    model[at:at + len(data)] = data
    open(m, 'wb').write(model)
else:
    model = open(m, 'rb').read()
    rng = random.Random(11)
    r = os.open(f, os.O_RDONLY)
    os.posix_fadvise(r, 0, 0, os.POSIX_FADV_DONTNEED)
    bad = 0
    for off in range(0, len(model), MiB):
        if os.pread(r, MiB, off) != model[off:off + MiB]: bad += 1
    for k in range(100):
        off = rng.randrange(len(model)); n = 1 + rng.randrange(2 * MiB)
        if os.pread(r, n, off) != model[off:off + n]: bad += 1
    os.close(r)
    print(bad)
`;

const why = !fs.existsSync('/dev/fuse') ? 'no /dev/fuse' : process.getuid?.() !== 0 ? 'needs root' : !fuse3Available() ? 'the fuse3 addon is not built (libfuse3-dev)' : '';
if (why) {
  t.plan(0, `holes kept by version: ${why}`);
} else {
  t.test('a second open of the same version takes its holes without a walk; a changed file is walked again', async (t) => {
    let walks = 0;
    const { dir, mnt, session } = await mountStoreLl(t, 'vmvault-llholes-kept-', (ns) => {
      const zeroRuns = ns.nodes.zeroRuns.bind(ns.nodes);
      ns.nodes.zeroRuns = (...a: Parameters<typeof zeroRuns>) => {
        walks++;
        return zeroRuns(...a);
      };
    });
    fs.writeFileSync(path.join(dir, 't.py'), PY);
    const py = async (what: string) => {
      const r = await shScript(`python3 ${dir}/t.py ${what} ${mnt}/s/img ${dir}/model`);
      t.equal(r.code, 0, `python ${what} ran (${r.stderr.trim().slice(-400)})`);
      return r.stdout.trim();
    };
    t.equal((await shScript(`mkdir ${mnt}/s`)).code, 0, 'share made');
    await py('make');
    const made = walks;

    t.equal(await py('read'), '0', 'first open: every read equals the model');
    t.equal(walks, made + 1, 'the first open of the version walks its tree once');
    const holes1 = session.holeReads;
    t.ok(holes1 > 0, `${holes1} reads of holes answered by the addon`);

    t.equal(await py('read'), '0', 'second open: every read equals the model');
    t.equal(walks, made + 1, 'the second open of the same version takes the holes without a walk');
    t.ok(session.holeReads > holes1, `the second open's holes answered by the addon too (${session.holeReads - holes1})`);

    await py('write');
    const written = walks;
    t.equal(await py('read'), '0', 'after a write into a hole, a new open reads the new bytes');
    t.equal(walks, written + 1, 'the new version is walked');
  });
}
