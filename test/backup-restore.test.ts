// Restore of a point out of its snapshot through the namespace (real store, real LevelDB, real
// qemu-img): raw is sparse and byte-identical, qcow2 converts back to the same bytes, an existing
// target is refused, and a failed restore leaves nothing behind.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { isVmvaultError } from '../src/errors.js';
import { dataRanges, type PointSource, primaryFile, restorePoint } from '../src/backup/restore.js';
import { generate, Rng } from './helpers/data.js';
import { openNs, writeFile } from './helpers/ns.js';
import { runTool } from './helpers/run-tool.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** 24 MiB: data, then 8 MiB of zeros, then data, then zeros to the end. */
function disk(seed: number): Buffer {
  const rng = new Rng(seed);
  const b = Buffer.alloc(24 * MiB);
  generate(rng, 'random', 6 * MiB).copy(b, 0);
  generate(rng, 'text', 4 * MiB).copy(b, 14 * MiB);
  return b;
}

async function setup(t: TestT) {
  const dir = tmpDir(t);
  const { ns } = await openNs(t, path.join(dir, 'store'));
  await ns.shares.create('web01');
  const vda = disk(1);
  const vdb = disk(2);
  await writeFile(ns, '/web01/vda.raw', vda);
  await writeFile(ns, '/web01/vdb.raw', vdb);
  await writeFile(ns, '/web01/vm.json', Buffer.from('{"name":"web01"}\n'));
  await ns.snapshots.create('web01', '2026-12-05T12-00-00Z');
  // The share moves on after the point: the restore must not see this.
  const fh = await ns.fs.open('/web01/vda.raw', 2);
  await ns.write(fh, 0, Buffer.alloc(MiB, 7));
  await ns.fs.release(fh);
  return { dir, ns, vda, vdb };
}

t.test('raw restore is byte-identical and sparse', async (t) => {
  const { dir, ns, vda, vdb } = await setup(t);
  const to = path.join(dir, 'out');
  let advanced = 0;
  const files = await restorePoint(ns, 'web01', '2026-12-05T12-00-00Z', ['vda', 'vdb'], to, { format: 'raw', advance: (n) => (advanced += n) });
  t.same(files.map((f) => path.basename(f)), ['vda.raw', 'vdb.raw', 'vm.json']);
  t.equal(sha(fs.readFileSync(path.join(to, 'vda.raw'))), sha(vda), 'vda is the point\'s bytes');
  t.equal(sha(fs.readFileSync(path.join(to, 'vdb.raw'))), sha(vdb), 'vdb is the point\'s bytes');
  t.equal(fs.readFileSync(path.join(to, 'vm.json'), 'utf8'), '{"name":"web01"}\n');
  t.equal(advanced, 48 * MiB, 'progress covers both disks');
  const st = fs.statSync(path.join(to, 'vda.raw'));
  t.ok(st.blocks * 512 <= 10.5 * MiB, `zeros are holes: ${st.blocks * 512} bytes allocated of ${st.size}`);
  t.same(fs.readdirSync(to).sort(), ['vda.raw', 'vdb.raw', 'vm.json'], 'no partial files left');
});

t.test('qcow2 restore converts back to the same bytes', async (t) => {
  const { dir, ns, vda } = await setup(t);
  const to = path.join(dir, 'q');
  await restorePoint(ns, 'web01', '2026-12-05T12-00-00Z', ['vda'], to, { format: 'qcow2' });
  const info = await runTool('qemu-img', ['info', '--output=json', path.join(to, 'vda.qcow2')]);
  t.equal(JSON.parse(info.stdout).format, 'qcow2');
  const back = path.join(dir, 'back.raw');
  const conv = await runTool('qemu-img', ['convert', '-O', 'raw', path.join(to, 'vda.qcow2'), back]);
  t.equal(conv.code, 0, conv.stderr);
  t.equal(sha(fs.readFileSync(back)), sha(vda));
  t.same(fs.readdirSync(to).sort(), ['vda.qcow2', 'vm.json'], 'the raw intermediate is gone');
});

t.test('an existing target is refused and a failed restore leaves nothing', async (t) => {
  const { dir, ns } = await setup(t);
  const to = path.join(dir, 'busy');
  fs.mkdirSync(to);
  fs.writeFileSync(path.join(to, 'vda.raw'), 'mine');
  const e1 = await restorePoint(ns, 'web01', '2026-12-05T12-00-00Z', ['vda'], to, { format: 'raw' }).catch((e) => e);
  t.ok(isVmvaultError(e1, 'ALREADY_EXISTS'), String(e1));
  t.equal(fs.readFileSync(path.join(to, 'vda.raw'), 'utf8'), 'mine', 'the operator\'s file is untouched');

  const to2 = path.join(dir, 'fail');
  const e2 = await restorePoint(ns, 'web01', '2026-12-05T12-00-00Z', ['vda', 'vdz'], to2, { format: 'raw' }).catch((e) => e);
  t.ok(isVmvaultError(e2, 'NOT_FOUND'), String(e2));
  t.same(fs.readdirSync(to2), [], 'vda, restored before vdz failed, is removed again');

  const ac = new AbortController();
  ac.abort();
  const e3 = await restorePoint(ns, 'web01', '2026-12-05T12-00-00Z', ['vda'], path.join(dir, 'c'), { format: 'raw', signal: ac.signal }).catch((e) => e);
  t.ok(isVmvaultError(e3, 'CANCELLED'), String(e3));
  t.same(fs.readdirSync(path.join(dir, 'c')), []);
});

/** The data runs as SEEK_DATA / SEEK_HOLE find them, one seek at a time (what dataRuns replaces). */
async function runsBySeek(ns: Awaited<ReturnType<typeof openNs>>['ns'], fh: number, size: number): Promise<Array<{ start: number; end: number }>> {
  const out: Array<{ start: number; end: number }> = [];
  for (let at = 0; at < size; ) {
    const start = await ns.nodes.seek(fh, at, 'data');
    if (start < 0) break;
    const end = Math.min(size, await ns.nodes.seek(fh, start, 'hole'));
    out.push({ start, end });
    at = end;
  }
  return out;
}

t.test('a point\'s data runs, found in one walk of its tree, are those SEEK_DATA/SEEK_HOLE find', async (t) => {
  const dir = tmpDir(t);
  const { ns, store } = await openNs(t, path.join(dir, 'store'));
  await ns.shares.create('web01');
  // 40 MiB of small random runs between zero runs: thousands of segments, a tree of height 3.
  const rng = new Rng(7);
  const b = Buffer.alloc(40 * MiB);
  for (let at = 0; at < b.length; ) {
    const data = 4096 + rng.int(3 * MiB);
    generate(rng, 'random', Math.min(data, b.length - at)).copy(b, at);
    at += data + 64 * 1024 + rng.int(2 * MiB);
  }
  await writeFile(ns, '/web01/vda.raw', b);
  await ns.snapshots.create('web01', 'p');
  const fh = await ns.fs.open('/web01/.snapshots/p/vda.raw', 0);
  t.teardown(() => ns.fs.release(fh));
  const want = await runsBySeek(ns, fh, b.length);
  t.ok(want.length >= 10, `${want.length} data runs`);
  const v = ns.fs.handle(fh).file.base;
  t.ok(v.height >= 2, `tree height ${v.height}`);
  t.same(await ns.nodes.dataRuns(fh), want, 'the whole file');
  // Every byte outside the runs is zero, every run starts and ends on data.
  let zerosOutside = true;
  let at = 0;
  for (const r of want) {
    if (!b.subarray(at, r.start).equals(Buffer.alloc(r.start - at))) zerosOutside = false;
    at = r.end;
  }
  t.ok(zerosOutside && b.subarray(at).equals(Buffer.alloc(b.length - at)), 'nothing but zeros outside the runs');
  // A window of the file: the runs clipped to it.
  const from = 5 * MiB + 12345;
  const to = 31 * MiB + 777;
  const clipped = want.flatMap((r) => (r.end <= from || r.start >= to ? [] : [{ start: Math.max(r.start, from), end: Math.min(r.end, to) }]));
  t.same(await store.view(v).dataRuns(from, to), clipped, 'a window of the file');

  // Restored in small chunks, so each reused read buffer carries many chunks in turn (and a
  // chunk shorter than the buffer at the end of each run): the same bytes, holes kept.
  await writeFile(ns, '/web01/vm.json', Buffer.from('{}'));
  await ns.snapshots.create('web01', 'q');
  const to2 = path.join(dir, 'small-chunks');
  await restorePoint(ns, 'web01', 'q', ['vda'], to2, { format: 'raw', chunkBytes: 192 * 1024 + 4096, inFlight: 3 });
  t.equal(sha(fs.readFileSync(path.join(to2, 'vda.raw'))), sha(b), 'restored in 196 KiB chunks, 3 in flight: the same bytes');

  // Bytes written and not yet committed count too (the walk commits them first, as seek does).
  const wfh = await ns.fs.open('/web01/vda.raw', 2);
  t.teardown(() => ns.fs.release(wfh));
  const hole = want[0].end + 1000;
  ns.fs.write(wfh, hole, Buffer.alloc(100, 9));
  const runs = await ns.nodes.dataRuns(wfh);
  t.same(runs, await runsBySeek(ns, wfh, b.length), 'an open file with fresh writes');
  t.ok(runs.some((r) => r.start <= hole && r.end >= hole + 100), 'the fresh bytes are in a data run');
});

t.test('through the pool, each chunk written starts its disk writes before the final fsync, and the bytes stay exact', async (t) => {
  const { dir, ns, vda } = await setup(t);
  const to = path.join(dir, 'wb');
  // What the restore hands over: (fd, offset, length), and whether the target file was still
  // open (its fd valid) when each call ran. Before backup5 nothing was handed over: the final
  // fsync met all 10 MiB still dirty.
  const calls: Array<{ offset: number; length: number; open: boolean }> = [];
  const startWriteback = async (fd: number, offset: number, length: number) => {
    let open = true;
    try {
      fs.fstatSync(fd);
    } catch {
      open = false;
    }
    calls.push({ offset, length, open });
  };
  // The pool's buffered writes (the writer thread's writes are direct and start their own).
  await restorePoint(ns, 'web01', '2026-12-05T12-00-00Z', ['vda'], to, { format: 'raw', chunkBytes: 2 * MiB, startWriteback, writer: 'pool' });
  t.equal(sha(fs.readFileSync(path.join(to, 'vda.raw'))), sha(vda), 'vda is the point\'s bytes');
  calls.sort((a, b) => a.offset - b.offset);
  // Every byte of the point's data runs (segment-aligned: 0-~6 MiB and ~14-~18 MiB) is in a
  // call; calls may join chunks written while one ran (one call at a time), never past the file.
  const fh = await ns.fs.open('/web01/.snapshots/2026-12-05T12-00-00Z/vda.raw', 0);
  const want = await dataRanges(ns, fh, 24 * MiB);
  await ns.fs.release(fh);
  t.equal(want.length, 2, 'two data runs in the point');
  const covered = (x: number) => calls.some((c) => c.offset <= x && x < c.offset + c.length);
  const missing = want.flatMap((r) => Array.from({ length: Math.ceil((r.end - r.start) / 4096) }, (_, i) => r.start + i * 4096)).filter((x) => !covered(x));
  t.same(missing, [], 'every 4 KiB of data was handed over');
  t.ok(calls.length >= 1 && calls.every((c) => c.length > 0 && c.offset + c.length <= 24 * MiB), `${calls.length} calls, all inside the file`);
  t.ok(calls.every((c) => c.open), 'every call ran while the target was open');
});

t.test('the data runs are walked window by window, the copy starting after the first', async (t) => {
  const dir = tmpDir(t);
  const { ns } = await openNs(t, path.join(dir, 'store'));
  await ns.shares.create('web01');
  // 100 MiB, data in 1 MiB runs, two of them across the first windows' ends (16 and 48 MiB).
  const b = Buffer.alloc(100 * MiB);
  const rng = new Rng(11);
  for (const at of [1, 15.5, 30, 47.5, 70, 98.5]) generate(rng, 'random', MiB).copy(b, at * MiB);
  await writeFile(ns, '/web01/vda.raw', b);
  await writeFile(ns, '/web01/vm.json', Buffer.from('{}'));
  await ns.snapshots.create('web01', 'p');
  // The point through a source that is the primary's own file with every walk and read
  // logged (real store, real tree): the order of events is what the test looks at.
  const events: string[] = [];
  const source: PointSource = {
    name: 'logged primary',
    files: async () => [],
    open: async (name) => {
      const f = await primaryFile(ns, `/web01/.snapshots/p/${name}`);
      return {
        size: f.size,
        dataRanges: async () => {
          events.push('walk all');
          return f.dataRanges();
        },
        dataRangesIn: async (from, to) => {
          events.push(`walk ${from / MiB}-${to / MiB}`);
          return f.dataRangesIn!(from, to);
        },
        read: async (pos, len, into) => {
          events.push('read');
          return f.read(pos, len, into);
        },
        close: () => f.close(),
      };
    },
    close: async () => {},
  };
  const to = path.join(dir, 'out');
  let advanced = 0;
  await restorePoint(ns, 'web01', 'p', ['vda'], to, { format: 'raw', source, advance: (n) => (advanced += n) });
  t.equal(sha(fs.readFileSync(path.join(to, 'vda.raw'))), sha(b), 'the point\'s bytes');
  t.equal(advanced, 100 * MiB, 'progress counts every byte once, holes window by window');
  t.ok(fs.statSync(path.join(to, 'vda.raw')).blocks * 512 <= 8 * MiB, 'holes stay holes');
  const walks = events.filter((e) => e.startsWith('walk'));
  t.same(walks, ['walk 0-16', 'walk 16-48', 'walk 48-100'], 'windows of 16 MiB, then twice as large, to the end');
  const firstRead = events.indexOf('read');
  t.ok(firstRead > 0 && firstRead < events.indexOf('walk 48-100'), `a read before the last window was walked: ${events.slice(0, 6).join(', ')}`);
});

t.test('the writer thread writes the data directly in whole blocks, a last partial block the ordinary way', async (t) => {
  const dir = tmpDir(t);
  const { ns } = await openNs(t, path.join(dir, 'store'));
  await ns.shares.create('web01');
  // Data runs that start and end off any 4 KiB block (segment boundaries fall anywhere), zero
  // 64 KiB blocks inside data, and a size that is no multiple of 4 KiB, data to its last byte.
  const size = 20 * MiB + 1000;
  const b = Buffer.alloc(size);
  const rng = new Rng(21);
  generate(rng, 'random', 3 * MiB + 123).copy(b, 777);
  generate(rng, 'text', 2 * MiB).copy(b, 9 * MiB + 5);
  b.fill(0, 9 * MiB + 256 * 1024, 9 * MiB + 512 * 1024);
  generate(rng, 'random', MiB + 1000).copy(b, size - MiB - 1000);
  await writeFile(ns, '/web01/vda.raw', b);
  await writeFile(ns, '/web01/vm.json', Buffer.from('{}'));
  await ns.snapshots.create('web01', 'p');
  for (const direct of [true, false]) {
    const to = path.join(dir, direct ? 'direct' : 'plain');
    const seen: Array<{ direct: number; plain: number }> = [];
    let advanced = 0;
    await restorePoint(ns, 'web01', 'p', ['vda'], to, { format: 'raw', direct, written: (w) => seen.push({ ...w }), advance: (n) => (advanced += n) });
    t.equal(sha(fs.readFileSync(path.join(to, 'vda.raw'))), sha(b), `direct ${direct}: the point's bytes`);
    t.equal(fs.statSync(path.join(to, 'vda.raw')).size, size, 'the size');
    t.equal(advanced, size, 'progress counts every byte once');
    t.ok(fs.statSync(path.join(to, 'vda.raw')).blocks * 512 <= 7 * MiB, `holes stay holes: ${fs.statSync(path.join(to, 'vda.raw')).blocks * 512} bytes allocated`);
    t.equal(seen.length, 1, 'one report for the one disk');
    const w = seen[0] ?? { direct: 0, plain: 0 };
    // ~5.75 MiB of data, widened to blocks, less the zero 64 KiB blocks in it.
    t.ok(w.direct + w.plain >= 5.7 * MiB && w.direct + w.plain <= 6.2 * MiB, `${w.direct + w.plain} bytes written`);
    if (direct) {
      // /tmp here is ext4, which takes O_DIRECT: every whole block direct, the last 1000 bytes not.
      t.equal(w.plain, 1000, 'only the last partial block the ordinary way');
      t.ok(w.direct > 5.7 * MiB, `${w.direct} bytes direct`);
    } else t.equal(w.direct, 0, 'no direct write when told not to');
  }
});
