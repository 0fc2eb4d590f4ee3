// A ByteSource over a plain file (tests, tools, and any caller with a path it may open).
// Sleuth Kit gets the same path, so `path` is set.

import fs from 'node:fs/promises';
import type { ByteSource } from './source.js';
import { fromSystemError } from '../errors.js';

export interface FileByteSource extends ByteSource {
  close(): Promise<void>;
}

export async function openFileSource(file: string): Promise<FileByteSource> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (err) {
    throw fromSystemError(err, `opening ${file}`);
  }
  const size = (await fh.stat()).size;
  return {
    size,
    path: file,
    async read(offset: number, length: number): Promise<Buffer> {
      const n = Math.max(0, Math.min(length, size - offset));
      const buf = Buffer.allocUnsafe(n);
      let done = 0;
      while (done < n) {
        const { bytesRead } = await fh.read(buf, done, n - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === n ? buf : buf.subarray(0, done);
    },
    close: () => fh.close(),
  };
}

/** A window [start, start+length) of another source; `path` carries over with its offset. */
export function sliceSource(src: ByteSource, start: number, length: number): ByteSource {
  const size = Math.max(0, Math.min(length, src.size - start));
  const out: ByteSource = {
    size,
    read(offset: number, len: number) {
      const n = Math.max(0, Math.min(len, size - offset));
      return n === 0 ? Promise.resolve(Buffer.alloc(0)) : src.read(start + offset, n);
    },
    ...(src.path !== undefined ? { path: src.path, pathOffset: (src.pathOffset ?? 0) + start } : {}),
  };
  return out;
}
