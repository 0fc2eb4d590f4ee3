// Starting the disk writes of a range just written, without waiting for them (sync_file_range
// with SYNC_FILE_RANGE_WRITE, the addon's `startWriteback`, on the libuv pool). For a writer of
// a large file that ends with fsync because "done" means durable (a restore): otherwise every
// byte it wrote is still dirty in the page cache at that fsync, which then waits for all of it
// (0.3-0.7 s of a 460 MiB restore here), after the copy instead of beside it
// (tools/PERFORMANCE.md, backup5).
//
// It is a hint, never a promise: no metadata, no disk cache flush, nothing durable until the
// writer's own fsync. Where the addon is not built (or is an older build without it) it does
// nothing, and where the kernel refuses (a file system without it) the error is swallowed:
// the fsync at the end is what the writer relies on either way.

import { filesAddon } from './native-addon.js';

type StartWriteback = (fd: number, offset: number, length: number, cb: (err: (Error & { errno?: number }) | null) => void) => void;

const native = typeof filesAddon?.startWriteback === 'function' ? (filesAddon.startWriteback as StartWriteback) : undefined;

/** Whether startWriteback does anything here (the addon is built with it). */
export const writebackAvailable = native !== undefined;

/**
 * Starts writing [offset, offset + length) of the open file `fd` to disk, and resolves once the
 * writes are queued (not done). Never rejects: a failure only means the final fsync has more
 * to wait for. `fd` must stay open until it resolves.
 */
export function startWriteback(fd: number, offset: number, length: number): Promise<void> {
  if (!native || length <= 0) return Promise.resolve();
  return new Promise((resolve) => native(fd, offset, length, () => resolve()));
}

/** startWriteback, but rejecting with the kernel's error: for tests of the addon's call. */
export function startWritebackStrict(fd: number, offset: number, length: number): Promise<void> {
  if (!native) return Promise.reject(new Error('the native addon with startWriteback is not built'));
  return new Promise((resolve, reject) => native(fd, offset, length, (err) => (err ? reject(err) : resolve())));
}
