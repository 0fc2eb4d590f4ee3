import type { FileEntry, Volume, WalkOptions } from '../source.js';
import { vmError } from '../../errors.js';
// eslint-disable-next-line require-yield
export async function* walkFilesystemImpl(_vol: Volume, _opts: WalkOptions): AsyncIterable<FileEntry> { throw vmError('NOT_SUPPORTED', 'walk: not yet'); }
export async function readFileRangeImpl(_vol: Volume, _e: FileEntry, _o: number, _l: number): Promise<Buffer> { throw vmError('NOT_SUPPORTED', 'read: not yet'); }
