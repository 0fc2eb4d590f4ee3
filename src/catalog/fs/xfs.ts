import type { FileEntry, Volume, WalkOptions } from '../source.js';
// eslint-disable-next-line require-yield
export async function* walkXfs(vol: Volume, opts: WalkOptions): AsyncGenerator<FileEntry> {
  opts.onNote?.(`${vol.name}: xfs reader not yet`);
}
