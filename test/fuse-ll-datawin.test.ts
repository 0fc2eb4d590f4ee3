// Data reads answered by the addon from the store's read-ahead windows (native/src/fuse3/
// datawin.c, src/fuse/ll-datawin.ts), through the real kernel over a real store and namespace:
// sequential reads equal the model and many are answered in C; writes through another
// descriptor, interleaved with the reads, are read back at once (the addon forgot the windows
// before the write was answered); the bytes the addon holds stay under its cap and are all
// given back at release. This process serves the mount, so every access is a child process.
//
// Checked to fail without the invalidation: with OpenFile's change listener of ll-datawin.ts
// removed, the 'interleaved' line reports stale reads.
//
// The store's decoded cache (src/store/decoded-cache.ts) is on throughout: 'seq2' and the later
// passes fill their windows from it, and the interleaved writes must be read back through it
// too. It is keyed by fingerprint, so it has no invalidation to switch off: a write makes new
// segments, and the new version names them.

import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { LlFileSystem } from '../src/fuse/ll-filesystem.js';
import { dispatchOps, fuse3Available, type LlOps, LlSession } from '../src/fuse/ll/session.js';
import { shScript } from './helpers/sh-script.js';

const MiB = 1 << 20;

// Writes a 64 MiB file of incompressible data (a hole of 3 MiB in it), then from a fresh page
// cache: passes 'seq' and 'seq2' read it in order in 64 KiB reads (the kernel's read-ahead
// makes them 1 MiB requests, which the store's read-ahead windows then serve); pass
// 'interleaved' reads it in order again while, every 8 MiB, another descriptor writes 4 KiB 2
// MiB ahead of the reader (in a window the addon holds by then) and fsyncs, and the reader's
// page cache of that page is dropped, so its read must reach the file system. Each read is
// compared with the model.
const PY = `
import os, sys
MiB = 1 << 20
f = sys.argv[1]
size = 64 * MiB
model = bytearray(os.urandom(size))
model[20 * MiB:23 * MiB] = bytes(3 * MiB)
with open(f, 'wb') as w:
    w.write(model[:20 * MiB]); w.seek(23 * MiB); w.write(model[23 * MiB:])
    w.flush(); os.fsync(w.fileno())
def seq(what, writer=None):
    r = os.open(f, os.O_RDONLY)
    os.posix_fadvise(r, 0, 0, os.POSIX_FADV_DONTNEED)
    bad = 0
    for off in range(0, size, 64 * 1024):
        if writer is not None and off % (8 * MiB) == 4 * MiB and off + 3 * MiB < size:
            at = off + 2 * MiB + 8192
            data = os.urandom(4096)
            os.pwrite(writer, data, at)
            os.fsync(writer)
            model[at:at + 4096] = data
            os.posix_fadvise(r, at, 4096, os.POSIX_FADV_DONTNEED)
        if os.pread(r, 64 * 1024, off) != model[off:off + 64 * 1024]: bad += 1
    os.close(r)
    print(what, bad)
    sys.stdout.flush()
seq('seq')
seq('seq2')
w = os.open(f, os.O_WRONLY)
seq('interleaved', w)
os.close(w)
seq('after-close')
`;

const why = !fs.existsSync('/dev/fuse') ? 'no /dev/fuse' : process.getuid?.() !== 0 ? 'needs root' : !fuse3Available() ? 'the fuse3 addon is not built (libfuse3-dev)' : '';
if (why) {
  t.plan(0, `data reads answered by the addon: ${why}`);
} else {
  t.test('data reads answered from read-ahead windows in C read as the model, with writes interleaved through another descriptor', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-lldatawin-'));
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    const store = await SegmentStore.open(path.join(dir, 'data'));
    const ns = await Namespace.open(store, { log: (l) => t.comment(l) });
    const llfs = new LlFileSystem(ns, { log: (l) => t.comment(l) });
    const session = await LlSession.mount(
      mnt,
      { fsname: 'vmvault-test', allowOther: true, defaultPermissions: true, maxThreads: 4, readAheadKb: 4096 },
      dispatchOps(llfs.ops() as Partial<LlOps>),
    );
    t.teardown(async () => {
      llfs.close();
      await session.unmount();
      await ns.close();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    // A cap below what the read-ahead would register (4 windows of 4 MiB): registrations past it
    // are refused and those reads go to JavaScript.
    const cap = 12 * MiB;
    session.setDataWindowCap(cap);
    fs.writeFileSync(path.join(dir, 't.py'), PY);
    const r = await shScript(`mkdir ${mnt}/s && python3 ${dir}/t.py ${mnt}/s/img`);
    t.equal(r.code, 0, `python ran (${r.stderr.trim().slice(-400)})`);
    t.same(r.stdout.trim().split('\n'), ['seq 0', 'seq2 0', 'interleaved 0', 'after-close 0'], 'every read equals the model, with writes interleaved through another descriptor');
    const st = session.dataWindows;
    t.ok(st.answered >= 10, `${st.answered} data reads answered by the addon`);
    t.ok(st.peak > 0 && st.peak <= cap, `bytes held by the addon peaked at ${st.peak}, under the cap ${cap}`);
    t.equal(st.bytes, 0, 'every window was given back once the files were closed');
    t.equal(st.windows, 0, 'no window entry left');
    const dc = store.reader.decodedCacheStats();
    t.ok(dc.hitBytes >= 48 * MiB, `later passes read ${(dc.hitBytes / MiB).toFixed(0)} MiB from the decoded cache (${dc.puts} segments decoded)`);
  });
}
