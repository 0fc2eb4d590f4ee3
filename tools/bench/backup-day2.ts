// The day-2 changes of ../shared/testdata's vm1 image, as guest writes: every 64 KiB block where
// vm1-day2.raw differs from vm1-day1.raw, written into the running QEMU's disk through HMP
// qemu-io (`write -s FILE OFF LEN`, the bytes from a temporary file), so the real block layer
// marks the dirty bitmap exactly as a guest's writes would.

import fs from 'node:fs';
import path from 'node:path';

export const BLOCK = 64 * 1024;

export interface Run {
  offset: number;
  length: number;
}

/** The 64 KiB-aligned runs where `b` differs from `a` (both read up to `limit` bytes). */
export function changedRuns(a: string, b: string, limit: number): Run[] {
  const fa = fs.openSync(a, 'r');
  const fb = fs.openSync(b, 'r');
  const piece = 64 * BLOCK;
  const ba = Buffer.allocUnsafe(piece);
  const bb = Buffer.allocUnsafe(piece);
  const runs: Run[] = [];
  try {
    for (let at = 0; at < limit; at += piece) {
      const len = Math.min(piece, limit - at);
      const na = fs.readSync(fa, ba, 0, len, at);
      const nb = fs.readSync(fb, bb, 0, len, at);
      if (na !== len || nb !== len) throw new Error(`short read at ${at}: ${na}, ${nb} of ${len}`);
      for (let o = 0; o < len; o += BLOCK) {
        const e = Math.min(o + BLOCK, len);
        if (ba.subarray(o, e).equals(bb.subarray(o, e))) continue;
        const last = runs.at(-1);
        if (last && last.offset + last.length === at + o) last.length += e - o;
        else runs.push({ offset: at + o, length: e - o });
      }
    }
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
  return runs;
}

interface Executes {
  execute<T = unknown>(command: string, args?: object): Promise<T>;
}

/** Writes each run of `src` into the disk at `qdev` through HMP qemu-io. */
export async function applyRuns(qmp: Executes, qdev: string, src: string, runs: Run[], tmp: string): Promise<void> {
  const fd = fs.openSync(src, 'r');
  const file = path.join(tmp, 'run.bin');
  try {
    for (const r of runs) {
      // qemu-io's -s reads its buffer from the start of the file: one run per file.
      for (let at = r.offset; at < r.offset + r.length; at += 16 << 20) {
        const len = Math.min(16 << 20, r.offset + r.length - at);
        const buf = Buffer.allocUnsafe(len);
        fs.readSync(fd, buf, 0, len, at);
        fs.writeFileSync(file, buf);
        const out = await qmp.execute<string>('human-monitor-command', { 'command-line': `qemu-io -d ${qdev} "write -s ${file} ${at} ${len}"` });
        if (/error|failed|invalid/i.test(out)) throw new Error(`qemu-io write at ${at}: ${out}`);
      }
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
}
