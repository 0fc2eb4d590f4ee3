// A read across two adjacent data windows is answered by the addon (native/src/fuse3/datawin.c),
// both parts from their windows, under the same rule as a read inside one: a later window
// registered, or a read in the second window went to JavaScript already. The store's windows
// follow the reader from where its read-ahead began, so a kernel request may straddle two of them:
// a `.files/` file's next extent continues the image's windows 4 KiB off the kernel's 1 MiB
// requests, and every fourth request of it went to JavaScript (filesread2).
//
// A real libfuse3 mount of a one-file tree whose open registers three windows [0, 4), [4, 8),
// [8, 12) MiB of the model's bytes; a child reads with read-ahead off (POSIX_FADV_RANDOM), so
// each pread is one request of exactly its range. The JS read handler answers from the model and
// records what reached it. Checked to fail before the change: the read across [4 MiB) reached
// JavaScript (the list was 3.5, 7.5, 11.5 MiB) and 2 reads were answered by the addon.

import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dispatchOps, fuse3Available, type LlOps, LlSession } from '../src/fuse/ll/session.js';
import type { LlAttr } from '../src/fuse/ll/types.js';
import { shScript } from './helpers/sh-script.js';

const MiB = 1 << 20;
const SIZE = 16 * MiB;
const FH = 7;

// argv: the file, then offsets (in KiB) to read 1 MiB at; "drop" drops the file's cache first.
// Prints one line per read: "<offset KiB> <equal to the model: 1/0>".
const PY = `
import os, sys, random
f = sys.argv[1]
model = random.Random(42).randbytes(${SIZE})
fd = os.open(f, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
for a in sys.argv[2:]:
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    off = int(a) * 1024
    b = os.pread(fd, 1 << 20, off)
    print(a, 1 if b == model[off:off + (1 << 20)] else 0)
os.close(fd)
`;

const why = !fs.existsSync('/dev/fuse') ? 'no /dev/fuse' : process.getuid?.() !== 0 ? 'needs root' : !fuse3Available() ? 'the fuse3 addon is not built (libfuse3-dev)' : '';
if (why) {
  t.plan(0, `reads across two data windows: ${why}`);
} else {
  t.test('a read across two adjacent data windows is answered by the addon from both', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-dwspan-'));
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    fs.writeFileSync(path.join(dir, 't.py'), PY);
    // The model, the same bytes as Python's (it prints them to a file once; read back here).
    const made = await shScript(`python3 -c "import random,sys; sys.stdout.buffer.write(random.Random(42).randbytes(${SIZE}))" > ${dir}/model`);
    t.equal(made.code, 0, 'model written');
    const model = fs.readFileSync(path.join(dir, 'model'));
    // The windows' own buffers (JavaScript's memory, as the store's windows are).
    const wins = [0, 4, 8].map((m) => ({ start: m * MiB, buf: Buffer.from(model.subarray(m * MiB, (m + 4) * MiB)) }));
    const toJs: number[] = [];
    const now = Date.now();
    const attrOf = (ino: bigint): LlAttr => (ino === 1n ? { ino, mode: 0o040755, nlink: 2, uid: 0, gid: 0, size: 0, atimeMs: now, mtimeMs: now, ctimeMs: now } : { ino, mode: 0o100444, nlink: 1, uid: 0, gid: 0, size: SIZE, atimeMs: now, mtimeMs: now, ctimeMs: now });
    let session: LlSession | undefined;
    const ops: Partial<LlOps> = {
      lookup: (r, s) => {
        if (r.parent === 1n && r.name === 'f') s.replyEntry(r.id, { ino: 2n, generation: 1n, attr: attrOf(2n), attrTimeout: 1, entryTimeout: 1 });
        else s.replyErr(r.id, os.constants.errno.ENOENT);
      },
      getattr: (r, s) => void s.replyAttr(r.id, attrOf(r.ino), 1),
      open: (r, s) => {
        for (const w of wins) t.ok(s.setDataWindow(2n, FH, w.start, w.buf), `window at ${w.start / MiB} MiB registered`);
        s.replyOpen(r.id, FH);
      },
      read: (r, s) => {
        toJs.push(r.offset);
        s.replyData(r.id, model.subarray(r.offset, Math.min(SIZE, r.offset + r.size)));
      },
      flush: (r, s) => void s.replyErr(r.id, 0),
      release: (r, s) => {
        s.clearDataWindows(2n, FH);
        s.replyErr(r.id, 0);
      },
    };
    session = await LlSession.mount(mnt, { fsname: 'vmvault-test', allowOther: true, defaultPermissions: true, maxThreads: 4, readAheadKb: 4096 }, dispatchOps(ops));
    t.teardown(async () => {
      await session?.unmount();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const kib = (m: number) => String(m * 1024);
    // Inside [0, 4) with later windows; across [0,4)|[4,8) with [8,12) after; across [4,8)|[8,12),
    // the second the last window: the first such read goes to JavaScript, the same again is
    // answered here; past the last window's end: JavaScript.
    const r = await shScript(`python3 ${dir}/t.py ${mnt}/f ${kib(1)} ${kib(3.5)} ${kib(7.5)} ${kib(7.5)} ${kib(11.5)}`);
    t.equal(r.code, 0, `python ran (${r.stderr.trim().slice(-400)})`);
    t.same(r.stdout.trim().split('\n').map((l) => l.split(' ')[1]), ['1', '1', '1', '1', '1'], 'every read equals the model');
    t.same(toJs.map((o) => o / MiB), [7.5, 11.5], 'only the first read into the last window and the read past it reached JavaScript');
    const st = session.dataWindows;
    t.equal(st.answered, 3, 'three reads answered by the addon, one of them across two windows');
    t.equal(st.windows, 0, 'the windows were dropped at release');
  });
}
