// node dist/tools/chunk-sizes.js [--dir=/work/vmdata/vm-images] [--only=2K/8K/64K,...] [--json]
//
// Which segment sizes to use: ingests vm1-day1, vm1-day2 and vm2-day1 (in that order, one
// fingerprint set shared by all three, as one store would) with each candidate and reports
// what gets stored. Zero segments are never stored, so they count in no size. Results and the
// choice: tools/PERFORMANCE.md, "Segment size choice".
import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { blake3 } from '@napi-rs/blake-hash';
import { compressSync } from 'lz4-napi';
import { compressionPays } from '../src/store/codec/codec.js';
import { END_MASK, Segmenter, ZERO_FLAG, segmenterImpl, type ChunkerParams } from '../src/store/segmenter/segmenter.js';
import { IMAGES } from './bench/store-vmset.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const READ = 16 * MiB;

interface Candidate {
  name: string;
  cdc?: ChunkerParams;
  fixed?: number;
}

const cdc = (min: number, avg: number, max: number): Candidate => ({
  name: `${label(min)}/${label(avg)}/${label(max)}`,
  cdc: { minSize: min, avgSize: avg, maxSize: max },
});
const fixed = (size: number): Candidate => ({ name: `fixed ${label(size)}`, fixed: size });

function label(n: number): string {
  return n >= MiB ? `${n / MiB}M` : `${n / KiB}K`;
}

const CANDIDATES: Candidate[] = [
  cdc(1 * KiB, 4 * KiB, 16 * KiB),
  cdc(2 * KiB, 8 * KiB, 64 * KiB),
  cdc(4 * KiB, 16 * KiB, 64 * KiB),
  cdc(8 * KiB, 32 * KiB, 128 * KiB),
  cdc(16 * KiB, 64 * KiB, 256 * KiB),
  cdc(256 * KiB, 1 * MiB, 4 * MiB),
  fixed(4 * KiB),
  fixed(64 * KiB),
  fixed(1 * MiB),
];

/** Per image: what it brought and what it found. */
interface Tally {
  imageBytes: number;
  zeroBytes: number;
  segments: number; // non-zero segments cut
  added: number; // raw bytes of segments stored for the first time
  addedLz4: number;
  foundEarlier: number; // bytes of segments an earlier image had stored
}

const newTally = (): Tally => ({ imageBytes: 0, zeroBytes: 0, segments: 0, added: 0, addedLz4: 0, foundEarlier: 0 });

/** One store's fingerprint set, shared by the images in order. */
class Dedup {
  private readonly firstImage = new Map<string, number>();
  lz4Ns = 0n; // the compression estimate is not part of the cut+hash throughput

  get unique(): number {
    return this.firstImage.size;
  }

  offer(seg: Uint8Array, image: number, t: Tally): void {
    const fp = blake3(seg as Buffer).toString('base64');
    t.segments++;
    const first = this.firstImage.get(fp);
    if (first === undefined) {
      this.firstImage.set(fp, image);
      t.added += seg.length;
      const t0 = process.hrtime.bigint();
      const lz4 = compressSync(seg as Buffer).length; // stored as the store would (codec/codec.ts)
      t.addedLz4 += compressionPays(seg.length, lz4) ? lz4 : seg.length;
      this.lz4Ns += process.hrtime.bigint() - t0;
    } else if (first < image) {
      t.foundEarlier += seg.length;
    }
  }
}

function* reads(file: string): Generator<Buffer> {
  const fd = openSync(file, 'r');
  const buf = Buffer.allocUnsafe(READ);
  try {
    for (let pos = 0; ; ) {
      let n = 0;
      while (n < READ) {
        const r = readSync(fd, buf, n, READ - n, pos + n);
        if (r === 0) break;
        n += r;
      }
      if (n === 0) return;
      yield buf.subarray(0, n);
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
}

const isZero = (b: Uint8Array): boolean => b.every((x) => x === 0);

/** Ingests one image with the content-defined segmenter; returns the nanoseconds spent, reads excluded. */
function ingestCdc(file: string, params: ChunkerParams, image: number, d: Dedup, t: Tally): bigint {
  const seg = new Segmenter(params, 'native');
  let ns = 0n;
  let carry: Buffer[] = []; // bytes of the open segment from earlier reads
  let carryLen = 0;
  for (const buf of reads(file)) {
    t.imageBytes += buf.length;
    const t0 = process.hrtime.bigint();
    const ends = seg.push(buf);
    let start = 0;
    for (const e of ends) {
      const end = e & END_MASK;
      if (e >= ZERO_FLAG) t.zeroBytes += carryLen + end - start;
      else d.offer(carryLen ? Buffer.concat([...carry, buf.subarray(start, end)]) : buf.subarray(start, end), image, t);
      carry = [];
      carryLen = 0;
      start = end;
    }
    if (start < buf.length) {
      carry.push(Buffer.from(buf.subarray(start))); // the read buffer is reused
      carryLen += buf.length - start;
    }
    ns += process.hrtime.bigint() - t0;
  }
  if (carryLen) {
    const last = Buffer.concat(carry);
    if (isZero(last)) t.zeroBytes += last.length;
    else d.offer(last, image, t);
  }
  return ns;
}

function ingestFixed(file: string, size: number, image: number, d: Dedup, t: Tally): bigint {
  const zero = Buffer.alloc(size);
  let ns = 0n;
  for (const buf of reads(file)) {
    t.imageBytes += buf.length;
    const t0 = process.hrtime.bigint();
    for (let off = 0; off < buf.length; off += size) {
      const block = buf.subarray(off, off + size);
      if (block.equals(zero.subarray(0, block.length))) t.zeroBytes += block.length;
      else d.offer(block, image, t);
    }
    ns += process.hrtime.bigint() - t0;
  }
  return ns;
}

interface Row {
  candidate: string;
  storedMB: number;
  storedLz4MB: number;
  day1MB: number;
  day2MB: number;
  day2Lz4MB: number;
  vm2MB: number;
  vm2FoundPct: number;
  segments: number;
  uniqueSegments: number;
  meanSegment: number;
  cutHashMBps: number;
}

function run(c: Candidate, dir: string): Row {
  const d = new Dedup();
  const tallies = IMAGES.map(() => newTally());
  let ns = 0n;
  IMAGES.forEach((name, i) => {
    const file = path.join(dir, name);
    ns += c.cdc ? ingestCdc(file, c.cdc, i, d, tallies[i]) : ingestFixed(file, c.fixed!, i, d, tallies[i]);
  });
  const sum = (f: (t: Tally) => number) => tallies.reduce((a, t) => a + f(t), 0);
  const MB = (n: number) => Math.round(n / 1e5) / 10;
  const vm2 = tallies[2];
  const nonZero = sum((t) => t.imageBytes - t.zeroBytes);
  return {
    candidate: c.name,
    storedMB: MB(sum((t) => t.added)),
    storedLz4MB: MB(sum((t) => t.addedLz4)),
    day1MB: MB(tallies[0].added),
    day2MB: MB(tallies[1].added),
    day2Lz4MB: MB(tallies[1].addedLz4),
    vm2MB: MB(vm2.added),
    vm2FoundPct: Math.round((1000 * vm2.foundEarlier) / (vm2.imageBytes - vm2.zeroBytes)) / 10,
    segments: sum((t) => t.segments),
    uniqueSegments: d.unique,
    meanSegment: Math.round(nonZero / sum((t) => t.segments)),
    cutHashMBps: Math.round(sum((t) => t.imageBytes) / (Number(ns - d.lz4Ns) / 1e9) / 1e6),
  };
}

function main(): void {
  const args = process.argv.slice(2);
  const dir = args.find((a) => a.startsWith('--dir='))?.slice(6) ?? '/work/vmdata/vm-images';
  const only = args.find((a) => a.startsWith('--only='))?.slice(7).split(',');
  if (segmenterImpl !== 'native') throw new Error('the native segmenter addon is not built (npm install builds it)');
  const header = '| candidate | stored MB | stored LZ4 MB | day1 MB | day2 MB | day2 LZ4 MB | vm2 MB | vm2 found % | segments | unique | mean B | cut+hash MB/s |';
  if (!args.includes('--json')) process.stdout.write(`${header}\n|${'---|'.repeat(12)}\n`);
  for (const c of CANDIDATES.filter((c) => !only || only.includes(c.name))) {
    const r = run(c, dir);
    process.stdout.write(args.includes('--json') ? JSON.stringify(r) + '\n' : `| ${Object.values(r).join(' | ')} |\n`);
  }
}

main();
