// Helpers the walkers share: extent lists, mode bits, the walk's note/abort plumbing.

import type { FileEntry, WalkOptions } from '../source.js';
import { vmError } from '../../errors.js';

export type Extent = { logical: number; physical: number; length: number };

/** Appends a run, merging it with the last one when both sides continue it. */
export function pushExtent(list: Extent[], logical: number, physical: number, length: number): void {
  const last = list[list.length - 1];
  if (last && last.logical + last.length === logical && last.physical + last.length === physical) last.length += length;
  else list.push({ logical, physical, length });
}

export function typeOfMode(mode: number): FileEntry['type'] {
  switch (mode & 0o170000) {
    case 0o100000: return 'file';
    case 0o040000: return 'dir';
    case 0o120000: return 'symlink';
    default: return 'other';
  }
}

export function checkAbort(opts: WalkOptions): void {
  if (opts.signal?.aborted) throw vmError('CANCELLED', 'filesystem walk cancelled');
}

export function joinPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}
