// The power-loss test file system (test/powerfail/) against its own model: what was fsynced
// (file data by the file's fsync, names by the directory's fsync) survives a cut byte for byte;
// everything else is undone, in the hostile way the model allows. Real FUSE mount, real files.

import t from 'tap';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Rng } from './helpers/data.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';
import { type Powerfail, startPowerfail } from './powerfail/powerfail.js';

async function syncDir(dir: string): Promise<void> {
  const d = await fs.open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** Writes a whole file and fsyncs it; the name is durable only with `dirSync`. */
async function durable(file: string, data: Buffer, dirSync = true): Promise<void> {
  const fh = await fs.open(file, 'w');
  await fh.write(data, 0, data.length, 0);
  await fh.sync();
  await fh.close();
  if (dirSync) await syncDir(path.dirname(file));
}

async function readOrNull(file: string): Promise<Buffer | null> {
  return fs.readFile(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
}

async function cycle(pf: Powerfail) {
  const r = await pf.cut();
  await pf.powerOn();
  return r;
}

async function withPf(t: TestT, fn: (pf: Powerfail, d: string) => Promise<void>): Promise<void> {
  const dir = tmpDir(t, 'vmvault-pf-');
  const pf = await startPowerfail(t, dir, 4242);
  const d = path.join(pf.mount, 'd');
  await fs.mkdir(d);
  await syncDir(pf.mount);
  await fn(pf, d);
}

const bytes = (seed: number, n: number) => new Rng(seed).bytes(n);

t.test('data: unsynced writes are gone, fsynced ones kept, unsynced overwrites lost', (t) =>
  withPf(t, async (pf, d) => {
    const kept = bytes(1, 300_000);
    await durable(path.join(d, 'kept'), kept);
    // Name durable (directory fsynced), data never fsynced: at most a prefix survives.
    const fh = await fs.open(path.join(d, 'nosync'), 'w');
    await syncDir(d);
    const lost = bytes(2, 200_000);
    await fh.write(lost, 0, lost.length, 0);
    await fh.close();
    // An overwrite in the middle of a durable file, and a truncation of another, never fsynced.
    const ow = await fs.open(path.join(d, 'kept'), 'r+');
    await ow.write(Buffer.alloc(50_000, 0xee), 0, 50_000, 100_000);
    await ow.close();
    const cutme = bytes(3, 100_000);
    await durable(path.join(d, 'shrunk'), cutme);
    await fs.truncate(path.join(d, 'shrunk'), 10);
    t.equal((await fs.readFile(path.join(d, 'kept'))).subarray(100_000, 100_010).toString('hex'), 'ee'.repeat(10), 'before the cut the overwrite is visible');

    const r = await cycle(pf);
    t.ok((await readOrNull(path.join(d, 'kept')))?.equals(kept), 'the fsynced file reads back identical: its unsynced overwrite is lost');
    t.ok((await readOrNull(path.join(d, 'shrunk')))?.equals(cutme), 'an unsynced truncate is undone');
    const ns = await readOrNull(path.join(d, 'nosync'));
    t.ok(ns !== null && ns.length < lost.length && ns.equals(lost.subarray(0, ns.length)), `the unsynced file keeps a prefix at most (${ns?.length} of ${lost.length} bytes)`);
    t.ok(r.lostOverwrites >= 2, `the cut rolled back the overwrite and the truncation (${r.lostOverwrites} ranges: the kernel may split a write)`);
  }));

t.test('names: create and rename without a directory fsync are undone', (t) =>
  withPf(t, async (pf, d) => {
    const a = bytes(4, 5000);
    const b = bytes(5, 7000);
    await durable(path.join(d, 'a'), a);
    await durable(path.join(d, 'b'), b);
    // fsync of the file makes its data durable, not its name.
    await durable(path.join(d, 'new'), bytes(6, 100), false);
    await fs.rename(path.join(d, 'a'), path.join(d, 'b'));
    await fs.mkdir(path.join(d, 'sub'));
    await durable(path.join(d, 'sub', 'inner'), bytes(7, 100));
    await fs.unlink(path.join(d, 'b'));
    t.same((await fs.readdir(d)).sort(), ['new', 'sub'], 'before the cut: a renamed over b, then b unlinked');

    const r = await cycle(pf);
    t.same((await fs.readdir(d)).sort(), ['a', 'b'], 'after it: the creates, the mkdir, the rename and the unlink are undone');
    t.ok((await fs.readFile(path.join(d, 'a'))).equals(a), 'a holds its own bytes');
    t.ok((await fs.readFile(path.join(d, 'b'))).equals(b), 'b, replaced and unlinked, holds its own bytes again');
    t.equal(r.undoneOps, 4, `four name operations undone (${r.undone.join('; ')})`);
  }));

t.test('names: a directory fsync makes its entries durable', (t) =>
  withPf(t, async (pf, d) => {
    const v1 = bytes(8, 3000);
    const v2 = bytes(9, 4000);
    await durable(path.join(d, 'cur'), v1);
    // The atomic replace: temp file written and fsynced, renamed over, directory fsynced.
    await durable(path.join(d, 'cur.tmp'), v2, false);
    await fs.rename(path.join(d, 'cur.tmp'), path.join(d, 'cur'));
    await syncDir(d);
    await durable(path.join(d, 'gone'), v1);
    await fs.unlink(path.join(d, 'gone'));
    await syncDir(d);
    const r = await cycle(pf);
    t.same(await fs.readdir(d), ['cur'], 'the rename and the unlink stayed');
    t.ok((await fs.readFile(path.join(d, 'cur'))).equals(v2), 'cur is the new version');
    t.equal(r.undoneOps, 0, 'nothing to undo');
  }));

t.test('torn appends: the unsynced tail is cut at a random byte', (t) =>
  withPf(t, async (pf, d) => {
    const files = 8;
    const head = bytes(10, 4096);
    const tails: Buffer[] = [];
    for (let i = 0; i < files; i++) {
      await durable(path.join(d, `log${i}`), head);
      const tail = bytes(100 + i, 64 * 1024 + 17);
      tails.push(tail);
      await fs.appendFile(path.join(d, `log${i}`), tail);
    }
    const r = await cycle(pf);
    const sizes: number[] = [];
    let bad = 0;
    for (let i = 0; i < files; i++) {
      const got = await fs.readFile(path.join(d, `log${i}`));
      sizes.push(got.length - head.length);
      const want = Buffer.concat([head, tails[i]]);
      if (got.length < head.length || got.length > want.length || !got.equals(want.subarray(0, got.length))) bad++;
    }
    t.equal(bad, 0, `every file is its synced head plus a prefix of its tail (kept ${sizes.join(', ')} of ${tails[0].length} bytes)`);
    t.ok(r.tornFiles > 0 && sizes.some((n) => n > 0 && n < tails[0].length), `${r.tornFiles} tail(s) torn mid-way`);
  }));

t.test('power off: everything fails until it comes back; handles from before are dead', (t) =>
  withPf(t, async (pf, d) => {
    await durable(path.join(d, 'f'), bytes(11, 100));
    const fh = await fs.open(path.join(d, 'f'), 'r');
    await pf.cut();
    await t.rejects(fs.stat(path.join(d, 'f')), { code: 'EIO' }, 'stat while the power is off: EIO');
    await pf.powerOn();
    await t.rejects(fh.read(Buffer.alloc(10), 0, 10, 0), { code: 'EIO' }, 'a handle opened before the cut: EIO');
    await fh.close();
    t.equal((await fs.stat(path.join(d, 'f'))).size, 100, 'after power on the file is there');
  }));
