// The JS thread as the reader of /dev/fuse (native/src/fuse3/jsreader.c, LlMountOptions.jsReader):
// no libfuse worker thread runs; the event loop polls the session's fd, reads what is there and
// hands it to JavaScript in the same turn. Through the real kernel over a real store and
// namespace: an rsync of a tree of small and large files (the write ring's blocks too) and
// parallel copies with only 2 request slots (reading must pause when the slots run out and
// resume at the answers, never wait on the JS thread nor spin) read back byte for byte, and every
// request was read by the JS thread. This process serves the mount, so every access is a child
// process, never this process.

import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { LlFileSystem } from '../src/fuse/ll-filesystem.js';
import { fuse3Available, LlSession } from '../src/fuse/ll/session.js';
import { shScript } from './helpers/sh-script.js';

/** A tree of 200 small files (0..9 KiB, some equal), 3 of 1-3 MiB and a symlink, under `root`. */
function makeTree(root: string): void {
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  for (let d = 0; d < 5; d++) {
    const dir = path.join(root, `d${d}`, d % 2 ? 'sub' : '');
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 40; f++) {
      const n = rnd(10 * 1024);
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = f % 7 === 0 ? 65 : rnd(256);
      fs.writeFileSync(path.join(dir, `f${f}.txt`), b);
    }
  }
  for (let k = 1; k <= 3; k++) {
    const b = Buffer.alloc(k * 1024 * 1024 + 777);
    for (let i = 0; i < b.length; i += 4096) b.writeUInt32LE(rnd(2 ** 31), i);
    fs.writeFileSync(path.join(root, `big${k}.bin`), b);
  }
  fs.symlinkSync('d0/f1.txt', path.join(root, 'link'));
}

const why = !fs.existsSync('/dev/fuse') ? 'no /dev/fuse' : process.getuid?.() !== 0 ? 'needs root' : !fuse3Available() ? 'the fuse3 addon is not built (libfuse3-dev)' : '';
if (why) {
  t.plan(0, `the JS thread reading /dev/fuse: ${why}`);
} else {
  t.test('requests read by the JS thread itself: rsync and parallel copies through 2 slots read back byte for byte', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-lljsreader-'));
    const mnt = path.join(dir, 'mnt');
    const src = path.join(dir, 'src');
    fs.mkdirSync(mnt);
    fs.mkdirSync(src);
    makeTree(src);
    const store = await SegmentStore.open(path.join(dir, 'data'));
    const ns = await Namespace.open(store, { log: (l) => t.comment(l) });
    await ns.shares.create('s');
    const llfs = new LlFileSystem(ns, { log: (l) => t.comment(l) });
    const session = await LlSession.mount(
      mnt,
      { fsname: 'vmvault-test', allowOther: true, defaultPermissions: true, readdirplus: false, writeRing: true, maxInFlight: 2, jsReader: true },
      llfs.onBatch(),
    );
    t.teardown(async () => {
      await session.unmount();
      await ns.close();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const haveRsync = (await shScript('command -v rsync')).code === 0;
    const copy = haveRsync ? `rsync -a ${src}/ ${mnt}/s/r/` : `cp -a ${src} ${mnt}/s/r`;
    const r1 = await shScript(`${copy} && diff -r --no-dereference ${src} ${mnt}/s/r && echo same`);
    t.equal(r1.code, 0, `${haveRsync ? 'rsync' : 'cp -a'} and diff ran (${r1.stderr.trim().slice(-400)})`);
    t.equal(r1.stdout.trim(), 'same', 'the copy reads back as the source');
    // Eight writers at once through 2 request slots: the reader runs out of slots and must
    // resume once answers free them (a reader that never resumed would hang here; one that
    // waited for a slot on the JS thread would deadlock).
    const r2 = await shScript(
      `cd ${src} && ls d0/*.txt big*.bin | xargs -P 8 -I{} sh -c 'mkdir -p ${mnt}/s/p/$(dirname {}) && cp {} ${mnt}/s/p/{}' && ` +
        `for f in d0/*.txt big*.bin; do cmp $f ${mnt}/s/p/$f || exit 1; done && echo same`,
    );
    t.equal(r2.code, 0, `parallel copies ran (${r2.stderr.trim().slice(-400)})`);
    t.equal(r2.stdout.trim(), 'same', 'every parallel copy reads back as its source');
    const st = session.stats;
    t.ok(st.jsReads > 500, `${st.jsReads} requests read by the JS thread`);
    t.ok(st.jsReads >= st.requests, `every request JavaScript handled (${st.requests}) was read by the JS thread (${st.jsReads}, answered in C included)`);
  });
}
