// Which reader walks which filesystem, and reading a file's bytes by its extents.
//   ext          our own reader (fs/ext.ts): any ByteSource, extents in the same pass
//   xfs          our own reader (fs/xfs.ts): any ByteSource
//   ntfs, fat, exfat  Sleuth Kit (fs/tsk.ts) when the volume has a plain path (a raw disk's
//                partition or single-segment LV); otherwise (inside qcow2/VMDK, a stitched LV)
//                nothing is listed and the note says why
//   swap, encrypted, unknown  nothing to list

import type { FileEntry, Volume, WalkOptions } from '../source.js';
import { vmError } from '../../errors.js';
import { walkExt, walkExtBatches } from './ext.js';
import { walkXfs } from './xfs.js';
import { readTsk, walkTsk } from './tsk.js';

export async function* walkFilesystemImpl(vol: Volume, opts: WalkOptions): AsyncGenerator<FileEntry> {
  switch (vol.fs) {
    case 'ext': yield* walkExt(vol, opts); return;
    case 'xfs': yield* walkXfs(vol, opts); return;
    case 'ntfs': case 'fat': case 'exfat':
      if (vol.path === undefined || (vol.pathOffset ?? 0) % 512 !== 0) {
        opts.onNote?.(`${vol.name}: ${vol.fs} is read through Sleuth Kit, which needs the volume in a plain file (a raw image); this one is inside a qcow2/VMDK image or a stitched LV, so its files are not listed`);
        return;
      }
      yield* walkTsk(vol, opts); return;
    default:
      opts.onNote?.(`${vol.name}: ${vol.fs === 'swap' ? 'swap space holds no files' : vol.fs === 'encrypted' ? 'encrypted; its files cannot be listed' : 'no known filesystem'}`);
  }
}

/** walkFilesystemImpl, a directory's entries at a time where the reader gives them so (ext). */
export async function* walkFilesystemBatchesImpl(vol: Volume, opts: WalkOptions): AsyncGenerator<FileEntry[]> {
  if (vol.fs === 'ext') {
    yield* walkExtBatches(vol, opts);
    return;
  }
  let batch: FileEntry[] = [];
  for await (const e of walkFilesystemImpl(vol, opts)) {
    batch.push(e);
    if (batch.length >= 256) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

export async function readFileRangeImpl(vol: Volume, entry: FileEntry, offset: number, length: number): Promise<Buffer> {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw vmError('INVALID_ARGUMENT', `readFileRange: bad range ${offset}+${length}`);
  }
  if (entry.type !== 'file') throw vmError('INVALID_ARGUMENT', `readFileRange: ${entry.path} is a ${entry.type}, not a file`);
  const end = Math.min(entry.size, offset + length);
  if (end <= offset) return Buffer.alloc(0);
  if (entry.inline) {
    const out = Buffer.alloc(end - offset);
    entry.inline.copy(out, 0, offset, Math.min(end, entry.inline.length));
    return out;
  }
  if (!entry.extents) {
    if (vol.path !== undefined) return readTsk(vol, entry, offset, end - offset);
    throw vmError('NOT_SUPPORTED', `${vol.name}: ${entry.path} has no recorded extents and the volume no plain path to read it by`);
  }
  const out = Buffer.alloc(end - offset); // holes stay zeros
  await Promise.all(entry.extents.map(async (x) => {
    const lo = Math.max(offset, x.logical);
    const hi = Math.min(end, x.logical + x.length);
    if (lo >= hi) return;
    const b = await vol.read(x.physical + (lo - x.logical), hi - lo);
    if (b.length < hi - lo) throw vmError('IO', `${vol.name}: ${entry.path}: extent at volume byte ${x.physical} lies past the end of the volume`);
    b.copy(out, lo - offset);
  }));
  return out;
}
