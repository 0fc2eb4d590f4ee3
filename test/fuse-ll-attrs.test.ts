// Attributes through the mount when the addon answers getattr of directories by itself
// (native/src/fuse3/attrs.c, src/fuse/ll-attrs.ts): a model of two directories and a file,
// changed by writes, truncation, chmod and utimens from two descriptors, links, mkdir, rename,
// rmdir, unlink, and by the control plane (a fastcopy, a restore from a snapshot). After each
// step the test waits out the kernel's own attribute cache (1 s), so the stat reaches the file
// system: a table entry not dropped when its node changed answers the old attributes (mode,
// nlink, mtime), and the step fails. At the end the appliance restarts and every attribute
// read from the store must equal what the mount showed before.

import t from 'tap';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Appliance, startAppliance } from './helpers/appliance.js';
import { tmpDir } from './helpers/tmpdir.js';

const ATTR_TIMEOUT_WAIT_MS = 1200;

interface Seen {
  mode: number;
  nlink: number;
  size: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

t.test('directory and file attributes stay true through every kind of change', async (t) => {
  const dir = tmpDir(t);
  let app: Appliance = await startAppliance(t, dir);
  t.equal((await app.api('POST', '/shares', { name: 'at' })).status, 201, 'share at created');
  const p = (...rel: string[]) => path.join(app.mount, 'at', ...rel);
  const seen = (s: import('node:fs').BigIntStats): Seen => ({ mode: Number(s.mode & 0o7777n), nlink: Number(s.nlink), size: Number(s.size), mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs });
  const stat = async (rel: string): Promise<Seen> => seen(await fs.stat(p(rel), { bigint: true }));
  // Directories held open: fstat of one asks getattr once the kernel's attributes time out (a
  // stat by name after the entry timed out too asks lookup instead, which JavaScript answers).
  const held = new Map<string, fs.FileHandle>();
  const last = new Map<string, Seen>();
  /** After the kernel's cache times out: `rel`'s attributes, checked against the model. */
  const check = async (step: string, rel: string, want: Partial<Omit<Seen, 'mtimeNs' | 'ctimeNs'>> & { moved?: boolean; mtimeNs?: bigint }) => {
    // fstat first: a stat by name would refresh the kernel's attributes through a lookup.
    const h = held.get(rel);
    const f = h ? seen(await h.stat({ bigint: true })) : undefined;
    const s = await stat(rel);
    if (f) t.same(f, s, `${step}: fstat of ${rel} held open agrees with its stat by name`);
    const before = last.get(rel);
    const { moved, ...exact } = want;
    const got: Record<string, unknown> = {};
    for (const k of Object.keys(exact)) got[k] = s[k as keyof Seen];
    t.same(got, exact, `${step}: ${rel} ${JSON.stringify(exact, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`);
    if (moved && before) t.ok(s.mtimeNs > before.mtimeNs && s.ctimeNs > before.ctimeNs, `${step}: ${rel}'s mtime and ctime moved (${before.mtimeNs} -> ${s.mtimeNs})`);
    last.set(rel, s);
  };
  const settle = () => sleep(ATTR_TIMEOUT_WAIT_MS);

  await fs.mkdir(p('d'));
  await fs.mkdir(p('e'));
  held.set('d', await fs.open(p('d'), 'r'));
  held.set('e', await fs.open(p('e'), 'r'));
  t.teardown(async () => {
    for (const h of held.values()) await h.close().catch(() => {});
  });
  await settle();
  await check('mkdir', 'd', { mode: 0o755, nlink: 2 });
  await check('mkdir', 'e', { mode: 0o755, nlink: 2 });
  // Kernel-side time stamps are in ms: keep steps apart so a change always moves them.
  const step = async () => sleep(20);

  await fs.writeFile(p('d', 'f'), Buffer.alloc(100, 1));
  await settle();
  await check('create d/f', 'd', { nlink: 2, moved: true });
  await check('create d/f', 'd/f', { size: 100, nlink: 1 });

  // Two descriptors of one file: each change is seen by the other and by a stat of the name.
  const fd1 = await fs.open(p('d', 'f'), 'r+');
  const fd2 = await fs.open(p('d', 'f'), 'r+');
  try {
    await fd1.write(Buffer.alloc(5000, 2), 0, 5000, 0);
    await fd2.write(Buffer.alloc(500, 3), 0, 500, 10_000);
    t.equal((await fd1.stat()).size, 10_500, 'the other descriptor sees the size at once');
    await settle();
    await check('writes from two descriptors', 'd/f', { size: 10_500, moved: true });
    await fd2.truncate(3000);
    t.equal((await fd1.stat()).size, 3000, 'the other descriptor sees the truncation at once');
    await settle();
    await check('truncate', 'd/f', { size: 3000, moved: true });
    await fd1.chmod(0o640);
    await fd2.utimes(1_000_000, 1_234_567);
    await settle();
    await check('chmod, utimens', 'd/f', { mode: 0o640, size: 3000, mtimeNs: 1_234_567_000_000_000n });
  } finally {
    await fd1.close();
    await fd2.close();
  }

  await step();
  await fs.link(p('d', 'f'), p('e', 'g'));
  await settle();
  await check('link d/f e/g', 'e', { nlink: 2, moved: true });
  await check('link d/f e/g', 'd/f', { nlink: 2 });

  await step();
  await fs.mkdir(p('d', 'sub'));
  await settle();
  await check('mkdir d/sub', 'd', { nlink: 3, moved: true });

  await step();
  await fs.rename(p('d', 'sub'), p('e', 'sub'));
  await settle();
  await check('rename d/sub e/sub', 'd', { nlink: 2, moved: true });
  await check('rename d/sub e/sub', 'e', { nlink: 3, moved: true });

  await step();
  await fs.rmdir(p('e', 'sub'));
  await settle();
  await check('rmdir e/sub', 'e', { nlink: 2, moved: true });

  await fs.chmod(p('d'), 0o700);
  await fs.utimes(p('d'), 2_000_000, 2_000_000);
  await settle();
  await check('chmod, utimens of d', 'd', { mode: 0o700, nlink: 2, mtimeNs: 2_000_000_000_000_000n });

  await fs.unlink(p('d', 'f'));
  last.delete('d/f');
  await settle();
  await check('unlink d/f', 'd', { mode: 0o700, nlink: 2, moved: true });
  await check('unlink d/f', 'e/g', { nlink: 1, size: 3000 });

  // The control plane changes directories beside the kernel.
  await step();
  const fc = await app.api('POST', '/shares/at/fastcopy', { from: 'e/g', to: 'd/h' });
  t.equal(fc.status, 201, `fastcopy e/g -> d/h (${JSON.stringify(fc.body)})`);
  await settle();
  await check('fastcopy e/g d/h', 'd', { mode: 0o700, nlink: 2, moved: true });
  await check('fastcopy e/g d/h', 'd/h', { size: 3000 });

  const snap = await app.api('POST', '/shares/at/snapshots', { name: 'one' });
  t.equal(snap.status, 201, `snapshot one (${JSON.stringify(snap.body)})`);
  await step();
  const rs = await app.api('POST', '/fastcopy', { from: 'at/.snapshots/one/d', to: 'at/e/restored' });
  t.equal(rs.status, 201, `restore of d from snapshot one into e (${JSON.stringify(rs.body)})`);
  await settle();
  await check('restore into e', 'e', { nlink: 3, moved: true });
  await check('restore into e', 'e/restored', { mode: 0o700, nlink: 2 });

  // What the store holds, read by a fresh process: what the mount showed.
  for (const h of held.values()) await h.close();
  held.clear();
  const shown = new Map(last);
  t.equal(await app.stop(), 0, 'the appliance stopped cleanly');
  app = await startAppliance(t, dir);
  for (const [rel, s] of shown) t.same(await stat(rel), s, `after a restart ${rel} reads as the mount showed it`);
  await app.stop();
});
