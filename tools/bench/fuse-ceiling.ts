// The most the FUSE layer can carry, whatever sits behind it: the real binding over handlers
// that do nothing, driven by dd in a child process (this process serves the mount and must
// never wait on it synchronously). Any file system built on the binding is at most this fast.
// This is fuse-native's (libfuse 2) ceiling, fuse.ceiling_old.*; fuse-ceiling-ll.ts measures the
// libfuse3 binding's, fuse.ceiling.*.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FuseMount, type FileStat, type FuseHandlers } from '../../src/fuse/binding.js';
import { clearFuseMount } from '../../src/fuse/mount-util.js';
import { dd } from './fuse-appliance.js';

export interface Figure {
  figure: string;
  value: number;
  unit: string;
}

const MiB = 2 ** 20;

/** Handlers that accept every write and return every read without touching a byte. */
function nullFs(readableBytes: number): FuseHandlers {
  const now = Date.now();
  const file = (size: number): FileStat => ({ mode: 0o100644, size, atime: now, mtime: now, ctime: now });
  const notFound = () => Object.assign(new Error('no such file'), { code: 'ENOENT' });
  return {
    async getattr(path) {
      if (path === '/') return { mode: 0o040755, size: 0, atime: now, mtime: now, ctime: now };
      if (path === '/r') return file(readableBytes);
      if (path === '/w') return file(0);
      throw notFound();
    },
    async readdir() {
      return ['r', 'w'];
    },
    async open() {
      return 1;
    },
    async create() {
      return 1;
    },
    async truncate() {},
    async ftruncate() {},
    async release() {},
    async flush() {},
    async write(_p, _fh, _buf, len) {
      return len;
    },
    async read(_p, _fh, _buf, len, pos) {
      return Math.max(0, Math.min(len, readableBytes - pos));
    },
  };
}

// The handlers do nothing, so even the full 4 GiB takes seconds: a dd still going after ten
// minutes has hung, and there is no store behind it worth the appliance benches' longer wait.
const DD_TIMEOUT_MS = 600_000;

export async function benchFuseCeiling(opts: { quick: boolean; dir?: string; bigWrites?: boolean }): Promise<Figure[]> {
  const count = opts.quick ? 1024 : 4096; // MiB
  const runs = opts.quick ? 1 : 2;
  const bigWrites = opts.bigWrites ?? true;
  const mnt = await mkdtemp(join(opts.dir ?? tmpdir(), 'vmvault-fuse-ceiling-'));
  // autoCache off: every open starts with an empty page cache, so reads reach the handlers.
  const mount = new FuseMount(mnt, nullFs(count * MiB), { bigWrites, autoCache: false });
  try {
    await mount.mount();
    let write = 0;
    let read = 0;
    for (let i = 0; i < runs; i++) {
      write = Math.max(write, (await dd(['if=/dev/zero', `of=${join(mnt, 'w')}`, 'bs=1M', `count=${count}`], DD_TIMEOUT_MS)).mbps);
      read = Math.max(read, (await dd([`if=${join(mnt, 'r')}`, 'of=/dev/null', 'bs=1M', `count=${count}`], DD_TIMEOUT_MS)).mbps);
    }
    const suffix = bigWrites ? '' : '.small_writes';
    const round = (v: number) => Math.round(v * 10) / 10;
    return [
      { figure: `fuse.ceiling_old.write${suffix}`, value: round(write), unit: 'MB/s' },
      { figure: `fuse.ceiling_old.read${suffix}`, value: round(read), unit: 'MB/s' },
    ];
  } finally {
    if (mount.mounted) await mount.unmount().catch(() => undefined);
    await clearFuseMount(mnt).catch(() => undefined);
    await rm(mnt, { recursive: true, force: true });
  }
}
