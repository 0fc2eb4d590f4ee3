// Throughput of the segmenter's cut loop alone (no hashing, no I/O), native and TypeScript, on
// real binaries and on random bytes. Binaries are the realistic case: their short zero runs
// and repeated patterns exercise the zero test, which random bytes never do.
import { createCipheriv } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_CHUNKER, Segmenter, segmenterImpl } from '../../src/store/segmenter/segmenter.js';

export interface Figure {
  figure: string;
  value: number;
  unit: string;
}

const MiB = 2 ** 20;
// Ingest feeds the segmenter in reads of this size; one call per piece, as there.
const PIECE = 16 * MiB;

/** Regular files under /usr's binary directories in name order, repeated to fill `size` bytes. */
function binaries(size: number): Buffer {
  const files: string[] = [];
  const walk = (dir: string, depth: number): void => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const p = path.join(dir, name);
      try {
        const st = statSync(p);
        if (st.isDirectory() && depth < 4) walk(p, depth + 1);
        else if (st.isFile() && st.size >= 4096) files.push(p);
      } catch {
        // vanished or unreadable
      }
    }
  };
  for (const dir of ['/usr/bin', '/usr/sbin', '/usr/lib', '/usr/libexec']) walk(dir, 0);
  const buf = Buffer.allocUnsafe(size);
  let at = 0;
  for (let pass = 0; at < size && files.length > 0 && pass < 1000; pass++) {
    for (const f of files) {
      if (at >= size) break;
      try {
        at += readFileSync(f).copy(buf, at);
      } catch {
        // unreadable: skip
      }
    }
  }
  if (at < size) throw new Error(`found only ${at} bytes of binaries under /usr`);
  return buf;
}

/** Deterministic random bytes: AES-128-CTR keystream under a fixed key. */
function randomBytes(size: number): Buffer {
  const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, 0x76), Buffer.alloc(16, 0));
  return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
}

/** Best of `runs` passes over `buf`, in MB/s (10^6 bytes per second). */
export function segmenterRate(buf: Buffer, impl: 'native' | 'ts', runs: number): number {
  let best = Infinity;
  for (let r = 0; r < runs; r++) {
    const seg = new Segmenter(DEFAULT_CHUNKER, impl);
    let cuts = 0;
    const t0 = process.hrtime.bigint();
    for (let off = 0; off < buf.length; off += PIECE) cuts += seg.push(buf.subarray(off, off + PIECE)).length;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (cuts === 0) throw new Error('no cuts: the segmenter did not run');
    best = Math.min(best, s);
  }
  return Math.round(buf.length / best / 1e6);
}

export async function benchSegmenter(opts: { quick: boolean }): Promise<Figure[]> {
  const size = (opts.quick ? 64 : 256) * MiB;
  const runs = opts.quick ? 3 : 7;
  const impls: Array<'native' | 'ts'> = segmenterImpl === 'native' ? ['native', 'ts'] : ['ts'];
  if (segmenterImpl !== 'native') process.stderr.write('bench segmenter: native addon not built; TypeScript figures only\n');
  const figures: Figure[] = [];
  for (const [suffix, make] of [['', binaries], ['.random', randomBytes]] as const) {
    const buf = make(size);
    for (const impl of impls) {
      // The TypeScript loop is several times slower: fewer runs keep the bench short.
      const value = segmenterRate(buf, impl, impl === 'ts' ? Math.min(runs, 3) : runs);
      figures.push({ figure: `segmenter.${impl}${suffix}`, value, unit: 'MB/s' });
    }
  }
  return figures;
}
