// Writes through a real mount (LlMount, which opts into the write ring) land in the ring's
// blocks (native/src/fuse3/ring.c, src/fuse/ll/write-ring.ts) and every block comes back once
// its commit is built: large sequential writes (handed over to the namespace), overwrites of
// them, and 128 KiB writes (copied at once). The ring hands a released block to the very next
// write (a stack), so a block released while the file still reads from it would show here as
// wrong bytes. This process serves the mount: every access is a child process.

import t from 'tap';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { LlMount } from '../src/fuse/ll-mount.js';
import { fuse3Available } from '../src/fuse/ll/session.js';
import { writeRingStats } from '../src/fuse/ll/write-ring.js';
import { generate, Rng } from './helpers/data.js';
import { shScript } from './helpers/sh-script.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const why = !fs.existsSync('/dev/fuse') ? 'no /dev/fuse' : process.getuid?.() !== 0 ? 'needs root' : !fuse3Available() ? 'the fuse3 addon is not built (libfuse3-dev)' : '';
if (why) {
  t.plan(0, `write ring: ${why}`);
} else {
  t.test('payloads go through the ring and every block comes back; the file reads as written', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-ring-'));
    const undo: Array<() => Promise<void>> = [];
    t.teardown(async () => {
      for (const u of undo.reverse()) await u().catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const store = await SegmentStore.open(path.join(dir, 'data'));
    undo.push(() => store.close());
    const ns = await Namespace.open(store, { log: (l) => t.comment(l) });
    undo.push(() => ns.close());
    await ns.shares.create('vm');
    const mnt = path.join(dir, 'mnt');
    const mount = new LlMount(mnt, ns, { mkdir: true, log: (l) => t.comment(l) });
    await mount.mount();
    undo.push(() => mount.unmount());

    // 48 MiB of data, then 3 MiB over it at an odd offset, then 2 MiB in 128 KiB writes.
    const data = generate(new Rng(31), 'random', 48 * MiB);
    const patch = generate(new Rng(32), 'random', 3 * MiB);
    const small = generate(new Rng(33), 'random', 2 * MiB);
    fs.writeFileSync(path.join(dir, 'data.bin'), data);
    fs.writeFileSync(path.join(dir, 'patch.bin'), patch);
    fs.writeFileSync(path.join(dir, 'small.bin'), small);
    const want = Buffer.from(data);
    patch.copy(want, 5 * MiB + 64 * 1024);
    small.copy(want, 40 * MiB);

    const before = writeRingStats();
    const file = path.join(mnt, 'vm', 'disk.img');
    const r = await shScript(
      [
        'set -e',
        `dd if=${dir}/data.bin of=${file} bs=1M status=none`,
        `dd if=${dir}/patch.bin of=${file} bs=1M seek=${5 * MiB + 64 * 1024} oflag=seek_bytes conv=notrunc status=none`,
        `dd if=${dir}/small.bin of=${file} bs=128k seek=320 conv=notrunc,fsync status=none`,
        `sha256sum ${file}`,
      ].join('\n'),
    );
    t.equal(r.code, 0, `the writes and the read succeed ${r.stderr}`);
    t.equal(r.stdout.split(' ')[0], sha(want), 'the file reads back as written (before any commit settled)');

    // Every block back once the commits are built (close commits; the 5 s tick at the latest).
    let after = writeRingStats();
    for (let i = 0; i < 100 && after.free < after.blocks; i++) {
      await new Promise((res) => setTimeout(res, 100));
      after = writeRingStats();
    }
    const taken = after.taken - before.taken;
    t.ok(taken >= 48 + 3 + 16, `payloads copied into the ring: ${taken} (missed ${after.missed - before.missed})`);
    t.equal(after.free, after.blocks, 'every ring block came back');
    t.equal(after.badReleases - before.badReleases, 0, 'no block was released twice');

    // And from the store alone: the mount's caches dropped, the namespace's versions read.
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    const again = await shScript(`sha256sum ${file}`);
    t.equal(again.stdout.split(' ')[0], sha(want), 'reads back after the caches are dropped');
  });
}
