// What a day-2 catalog edit reads, held to its answers: (1) the tree compare stepping through
// both segment trees with cursors gives exactly the ranges the descend-per-range compare gave
// (kept here as the reference) and fetches far fewer tree nodes; (2) after ExtFs.changedInodes
// has read this point's changed inode-table bytes, the records an edit asks for come from them
// (the same records a fresh reader gives), and a record outside them is read alone, not as its
// group's whole table. Real store, real ext4 images (mkfs.ext4 -d, debugfs), no doubles.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { namespaceSource } from '../src/catalog/catalog-build.js';
import { RangeSet, TreeDiff } from '../src/catalog/changed-ranges.js';
import { ExtFs, sameEntryFields } from '../src/catalog/fs/ext.js';
import { fileSource } from '../src/catalog/read-cache.js';
import { findVolumes, openDisk, walkFilesystem, type Volume } from '../src/catalog/source.js';
import type { SegmentReads } from '../src/store/segment-reader.js';
import type { Entry } from '../src/store/tree/node.js';
import { TreeView } from '../src/store/tree/reader.js';
import { makeExtDisk, makeTree, seeded } from './helpers/ext-image.js';
import { openNs, writeFile } from './helpers/ns.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

// The compare as it was before the cursors (entryAt / leaves from the root each time): the reference.
function same(a: Entry, b: Entry): boolean {
  return a.len === b.len && a.zero === b.zero && a.fp.equals(b.fp);
}
async function refCompare(a: TreeView, b: TreeView, level: number, lo: number, hi: number, out: Array<[number, number]>): Promise<void> {
  let ea = await a.entryAt(level, lo);
  let eb = await b.entryAt(level, lo);
  const next = async (v: TreeView, e: { entry: Entry; start: number }) => {
    const at = e.start + e.entry.len;
    return at < hi && at < v.size ? v.entryAt(level, at) : undefined;
  };
  for (;;) {
    if (ea.start === eb.start && same(ea.entry, eb.entry)) {
      const na = await next(a, ea);
      const nb = await next(b, eb);
      if (!na || !nb) return;
      ea = na;
      eb = nb;
      continue;
    }
    const from = Math.max(lo, Math.min(ea.start, eb.start));
    let endA = ea.start + ea.entry.len;
    let endB = eb.start + eb.entry.len;
    while (endA !== endB && Math.min(endA, endB) < hi) {
      if (endA < endB) {
        ea = (await next(a, ea))!;
        endA = ea.start + ea.entry.len;
      } else {
        eb = (await next(b, eb))!;
        endB = eb.start + eb.entry.len;
      }
    }
    const to = Math.min(hi, endA, endB);
    if (endA !== endB) {
      out.push([from, hi]);
      return;
    }
    if (level === 1) out.push([from, to]);
    else await refCompare(a, b, level - 1, from, to, out);
    if (to >= hi) return;
    const na = await next(a, ea);
    const nb = await next(b, eb);
    if (!na || !nb) return;
    ea = na;
    eb = nb;
  }
}
async function refLeaves(a: TreeView, b: TreeView, lo: number, hi: number, out: Array<[number, number]>): Promise<void> {
  const ia = a.leaves(lo, hi)[Symbol.asyncIterator]();
  const ib = b.leaves(lo, hi)[Symbol.asyncIterator]();
  let ra = await ia.next();
  let rb = await ib.next();
  while (!ra.done && !rb.done) {
    const pa = ra.value;
    const pb = rb.value;
    const endA = pa.start + pa.entry.len;
    const endB = pb.start + pb.entry.len;
    if (!(pa.entry.zero && pb.entry.zero) && !(pa.start === pb.start && same(pa.entry, pb.entry))) {
      const from = Math.max(lo, pa.start, pb.start);
      const to = Math.min(hi, endA, endB);
      if (to > from) {
        const last = out[out.length - 1];
        if (last && last[1] === from) last[1] = to;
        else out.push([from, to]);
      }
    }
    if (endA <= endB) ra = await ia.next();
    if (endB <= endA) rb = await ib.next();
  }
}
async function refRefine(a: TreeView, b: TreeView, wanted: Array<[number, number]>): Promise<{ coarse: RangeSet; refined: RangeSet }> {
  const regions: Array<[number, number]> = [];
  const common = Math.min(a.size, b.size);
  const tail: Array<[number, number]> = a.size !== b.size ? [[common, Math.max(a.size, b.size)]] : [];
  const top = Math.min(a.height, b.height) - 1;
  if (top < 1) regions.push([0, common]);
  else await refCompare(a, b, top, 0, common, regions);
  const want = RangeSet.of(wanted);
  const out: Array<[number, number]> = [...tail];
  for (const [lo, hi] of regions) {
    let at = lo;
    for (const [x, y] of want.within(lo, hi)) {
      if (x > at) out.push([at, x]);
      await refLeaves(a, b, x, y, out);
      at = y;
    }
    if (at < hi) out.push([at, hi]);
  }
  return { coarse: RangeSet.of([...regions, ...tail]), refined: RangeSet.of(out) };
}

/** A TreeView over the same version whose node fetches are counted. */
function counted(v: TreeView): { view: TreeView; nodes: () => number } {
  const inner = (v as unknown as { reader: SegmentReads }).reader;
  let n = 0;
  const reads: SegmentReads = {
    node: (fp) => (n++, inner.node(fp)),
    nodesOf: (fps) => ((n += fps.length), inner.nodesOf(fps)),
    segments: (fps, cache) => inner.segments(fps, cache),
    readInto: (out, pieces) => inner.readInto(out, pieces),
  };
  return { view: new TreeView(v.version, reads), nodes: () => n };
}

const ranges = (r: RangeSet) => r.within(0, Number.MAX_SAFE_INTEGER);

/**
 * Two ext disks, the second a copy of the first to be changed by debugfs: `n` files in `dirs`
 * directories, the first disk's volume open and its files sorted by inode number.
 */
async function twoDisks(t: TestT, n: number, dirs: number) {
  const dir = tmpDir(t);
  const tree = path.join(dir, 'tree');
  const spec: Record<string, string> = {};
  for (let i = 0; i < n; i++) spec[`d${i % dirs}/f${i}`] = `file ${i}\n`;
  makeTree(tree, spec);
  const d1 = path.join(dir, 'd1.raw');
  makeExtDisk(d1, tree);
  const d2 = path.join(dir, 'd2.raw');
  fs.copyFileSync(d1, d2);
  const open = async (file: string) => {
    const src = await fileSource(file);
    t.teardown(() => src.close());
    return (await findVolumes(await openDisk(src)))[0];
  };
  const v1 = await open(d1);
  const files: Array<{ path: string; inode: number }> = [];
  for await (const e of walkFilesystem(v1)) if (e.type === 'file') files.push({ path: e.path, inode: e.inode });
  files.sort((x, y) => x.inode - y.inode);
  return { d2, open, v1, files };
}

t.test('the tree compare with cursors: the same ranges as the descend-per-range compare, a fraction of the node fetches', async (t) => {
  const dir = tmpDir(t);
  const { ns } = await openNs(t, path.join(dir, 'store'));
  await ns.shares.create('s');
  const MiB = 1024 * 1024;
  const a = seeded('changed-ranges', 24 * MiB);
  await writeFile(ns, '/s/disk.raw', a);
  await ns.snapshots.create('s', 'a');
  // Scattered 4 KiB writes, one 96 KiB run, one run of zeros, and a grown tail.
  const b = Buffer.concat([a, seeded('tail', 300_000)]);
  const fh = await ns.fs.open('/s/disk.raw', 2);
  const put = async (at: number, data: Buffer) => {
    data.copy(b, at);
    await ns.write(fh, at, Buffer.from(data));
  };
  for (let i = 0; i < 25; i++) await put(((i * 7919) % 6000) * 4096, seeded(`w${i}`, 4096));
  await put(13 * MiB + 12345, seeded('run', 96 * 1024));
  await put(17 * MiB, Buffer.alloc(200_000));
  await put(a.length, b.subarray(a.length));
  await ns.fs.release(fh);
  await ns.flushAll();
  await ns.snapshots.create('s', 'b');
  const sa = await namespaceSource(ns, '/s/.snapshots/a/disk.raw', undefined, { direct: true });
  const sb = await namespaceSource(ns, '/s/.snapshots/b/disk.raw', undefined, { direct: true });
  t.teardown(async () => {
    await sa.release();
    await sb.release();
  });
  t.ok(sa.view && sb.view, 'both snapshots read from their versions');
  t.ok(sa.view!.height >= 2, `a tree of height ${sa.view!.height} (more than one level-1 node)`);

  // Asked about: every 12 KiB block's 4 KiB (scattered, as a walk's blocks are), and some spans.
  const wanted: Array<[number, number]> = [];
  for (let at = 0; at < b.length; at += 12 * 1024) wanted.push([at, at + 4096]);
  wanted.push([13 * MiB, 14 * MiB], [a.length - 8192, b.length]);

  const ra = counted(sa.view!);
  const rb = counted(sb.view!);
  const ref = await refRefine(ra.view, rb.view, wanted);
  const refNodes = ra.nodes() + rb.nodes();

  const ca = counted(sa.view!);
  const cb = counted(sb.view!);
  const d = await TreeDiff.of(ca.view, cb.view);
  const got = await d.refine(wanted);
  const gotNodes = ca.nodes() + cb.nodes();

  t.same(ranges(d.coarse()), ranges(ref.coarse), 'coarse: the same regions');
  t.same(ranges(got), ranges(ref.refined), 'refined: the same ranges');
  t.ok(got.count > 25, `changes found (${got.count} ranges, ${got.bytes} bytes)`);
  // Every byte that differs and was asked about is in the answer (a superset, never a subset).
  const want = RangeSet.of(wanted);
  let missed = 0;
  for (let at = 0; at < b.length; at += 4096) {
    const n = Math.min(4096, b.length - at);
    const differs = at + n > a.length || !a.subarray(at, at + n).equals(b.subarray(at, at + n));
    if (differs && want.overlaps(at, n) && !got.overlaps(at, n)) missed++;
  }
  t.equal(missed, 0, 'no changed block that was asked about is missing');
  t.ok(gotNodes * 4 < refNodes, `tree nodes fetched: ${gotNodes} with cursors, ${refNodes} descending per range`);
});

t.test('ExtFs after changedInodes: records from the bytes it read, one record read alone, never a group table again', async (t) => {
  const { d2, open, v1, files } = await twoDisks(t, 600, 10);
  // The three files with the lowest inode numbers change (their records lie in the first 64 KiB of the table).
  t.ok(files.length === 600 && files[2].inode < 200, `600 files, the first at inodes ${files.slice(0, 3).map((f) => f.inode).join(', ')}`);
  execFileSync('debugfs', ['-w', '-f', '-', `${d2}?offset=${1 << 20}`], {
    input: [`set_inode_field ${files[0].path} mtime 20240102`, `set_inode_field ${files[1].path} mode 0100600`, `set_inode_field ${files[2].path} uid 1000`].join('\n'),
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  const v2 = await open(d2);
  let asked = 0;
  const counting: Volume = { ...v2, read: (o, l) => ((asked += l), v2.read(o, l)) };
  const pfs = await ExtFs.open(v1);
  const fs2 = await ExtFs.open(counting);
  const fresh = await ExtFs.open(v2);
  // Only group 0's table is called changed (the store would say which segments differ).
  const [t0] = fs2.inodeTableRanges();
  const dirty = await fs2.changedInodes(pfs, (a, b) => (a === t0[0] ? [[a, Math.min(b, t0[0] + 64 * 1024)]] : []));
  t.same([...dirty].sort((x, y) => x - y), files.slice(0, 3).map((f) => f.inode), 'the changed records found');
  asked = 0;
  for (const ino of dirty) t.same(await fs2.inode(ino), await fresh.inode(ino), `inode ${ino}: the record a fresh reader gives`);
  t.equal(asked, 0, 'the changed records came from the bytes changedInodes read');
  // A record outside what was read: itself only, not its group's table.
  const outside = files[400].inode;
  t.ok(outside > (64 * 1024) / fs2.recordBytes, `inode ${outside} lies past the bytes read`);
  t.same(await fs2.inode(outside), await fresh.inode(outside), `inode ${outside} (outside the bytes read): the same record`);
  t.ok(asked > 0 && asked <= fs2.recordBytes, `read alone: ${asked} bytes for one ${fs2.recordBytes}-byte record`);
});

t.test('ExtFs.changedInodes compares runs of records at once: the same inodes as a record-by-record compare', async (t) => {
  const { d2, open, v1, files } = await twoDisks(t, 300, 5);
  // Records that are not the first of a run of 8 (a run compared whole must not hide them), two
  // in one run, one at a run's end, and one whose access time alone changed (not an entry field).
  const pick = files.filter((f) => (f.inode - 1) % 8 !== 0);
  const inRun = pick.filter((f) => (f.inode - 1) % 8 === 3);
  const sameRun = pick.find((f, i) => i > 0 && Math.floor((f.inode - 1) / 8) === Math.floor((pick[i - 1].inode - 1) / 8) && !inRun.includes(f) && !inRun.includes(pick[i - 1]));
  const runEnd = pick.filter((f) => (f.inode - 1) % 8 === 7);
  const sameRunPrev = pick[pick.indexOf(sameRun!) - 1];
  const changed = [inRun[0], inRun[5], sameRunPrev, sameRun!, runEnd[2]];
  const atimeOnly = runEnd[4];
  t.ok(changed.every((f) => f !== undefined) && atimeOnly && !changed.includes(atimeOnly), `changed: ${changed.map((f) => f.inode).join(', ')}; atime only: ${atimeOnly.inode}`);
  execFileSync('debugfs', ['-w', '-f', '-', `${d2}?offset=${1 << 20}`], {
    input: [
      `set_inode_field ${changed[0].path} mtime 20240102`,
      `set_inode_field ${changed[1].path} mode 0100600`,
      `set_inode_field ${changed[2].path} uid 1000`,
      `set_inode_field ${changed[3].path} gid 1000`,
      `set_inode_field ${changed[4].path} size 4096`,
      `set_inode_field ${atimeOnly.path} atime 20240102`,
    ].join('\n'),
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  const v2 = await open(d2);
  const pfs = await ExtFs.open(v1);
  const fs2 = await ExtFs.open(v2);
  // Every group's whole table is called changed.
  // catalog9: aligned table bytes (the reads here are) are compared word by word in JS, with no
  // Buffer.compare call per record or run (~7 ms of a day-2 build's samples at load).
  const compare = Buffer.prototype.compare;
  let compares = 0;
  Buffer.prototype.compare = function (this: Buffer, ...args: Parameters<Buffer['compare']>) {
    compares++;
    return compare.apply(this, args);
  } as Buffer['compare'];
  let dirty: Set<number>;
  try {
    dirty = await fs2.changedInodes(pfs, (a, b) => [[a, b]]);
  } finally {
    Buffer.prototype.compare = compare;
  }
  t.equal(compares, 0, 'no Buffer.compare call for aligned table bytes');
  // The same through sources whose buffers start at an odd byte (the byte-by-byte path).
  const odd = (v: typeof v1): typeof v1 => ({ ...v, read: async (o: number, l: number) => {
    const b = await v.read(o, l);
    const c = Buffer.alloc(b.length + 1);
    b.copy(c, 1);
    return c.subarray(1);
  } });
  const dirtyOdd = await (await ExtFs.open(odd(v2))).changedInodes(await ExtFs.open(odd(v1)), (a, b) => [[a, b]]);
  t.same([...dirtyOdd].sort((a, b) => a - b), [...dirty].sort((a, b) => a - b), 'unaligned buffers: the same inodes');
  // The reference: each record alone, with sameEntryFields.
  const ref: number[] = [];
  const [t0] = fs2.inodeTableRanges();
  const [x, y] = await Promise.all([v1.read(t0[0], t0[1] - t0[0]), v2.read(t0[0], t0[1] - t0[0])]);
  const isz = fs2.recordBytes;
  for (let o = 0; o + isz <= x.length; o += isz) if (!sameEntryFields(x.subarray(o, o + isz), y.subarray(o, o + isz))) ref.push(o / isz + 1);
  const got = [...dirty].sort((a, b) => a - b);
  t.same(got, ref, 'the same inodes as a record-by-record compare');
  t.same(got, changed.map((f) => f.inode).sort((a, b) => a - b), 'exactly the records whose entry fields changed (not the access time)');
});
