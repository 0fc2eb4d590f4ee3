// Shared pieces of the store benches: figures, timing, feeding a file into a writer.

import fs from 'node:fs';
import vm from 'node:vm';
import v8 from 'node:v8';
import type { FileVersion, SegmentStore } from '../../src/store/store.js';

export interface Figure {
  figure: string;
  value: number;
  unit: string;
  /** For throughputs: value / BLAKE3-alone MB/s measured in the same run. */
  vs_blake3?: number;
}

export const MiB = 2 ** 20;

export function now(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

export function mbps(bytes: number, seconds: number): number {
  return Math.round(bytes / seconds / 1e6);
}

export function note(text: string): void {
  process.stderr.write(`bench: ${text}\n`);
}

let gcFn: (() => void) | undefined;

/** A full garbage collection, so memory figures count what is live. */
export function fullGc(): void {
  if (!gcFn) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  gcFn();
  gcFn();
}

/**
 * Feeds `length` bytes of a file from `start` into a new writer and commits the version, as an
 * ingest over a copy tool would: the next piece is read (from the page cache, on the libuv
 * pool) while the store chunks the current one.
 */
export async function ingestFile(store: SegmentStore, file: string, opts: { piece?: number; start?: number; length?: number } = {}): Promise<FileVersion> {
  const piece = opts.piece ?? 8 * MiB;
  const fd = fs.openSync(file, 'r');
  try {
    const end = (opts.start ?? 0) + (opts.length ?? fs.fstatSync(fd).size - (opts.start ?? 0));
    const bufs = [Buffer.allocUnsafe(piece), Buffer.allocUnsafe(piece)];
    const read = (b: Buffer, at: number): Promise<number> =>
      new Promise((res, rej) => fs.read(fd, b, 0, Math.min(piece, end - at), at, (e, n) => (e ? rej(e) : res(n))));
    const w = store.writer();
    let at = opts.start ?? 0;
    let cur = 0;
    let n = at < end ? await read(bufs[0], at) : 0;
    while (n > 0) {
      at += n;
      const next = at < end ? read(bufs[cur ^ 1], at) : Promise.resolve(0);
      await w.write(bufs[cur].subarray(0, n));
      n = await next;
      cur ^= 1;
    }
    const r = await w.finish();
    await store.commit([], r.deps);
    return r.version;
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes a buffer (in pieces, as a copy would) and commits. */
export async function ingestBuffer(store: SegmentStore, buf: Buffer, piece = 8 * MiB): Promise<FileVersion> {
  const w = store.writer();
  for (let at = 0; at < buf.length; at += piece) await w.write(buf.subarray(at, Math.min(buf.length, at + piece)));
  const r = await w.finish();
  await store.commit([], r.deps);
  return r.version;
}
