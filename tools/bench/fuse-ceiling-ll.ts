// The ceiling of the libfuse3 low-level binding (src/fuse/ll/): a file system whose handlers do
// nothing, driven by dd in a child process (this process serves the mount and must never wait on
// it synchronously). Any file system built on the binding is at most this fast. Printed beside
// fuse-native's last recorded ceiling (fuse.ceiling_old.*, historic: fuse-ceiling-old.ts).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dispatchOps, LlSession, type LlAttr, type LlOps } from '../../src/fuse/ll/session.js';
import { ENOENT } from '../../src/fuse/ll/errno.js';
import { dd } from './fuse-appliance.js';

export interface Figure {
  figure: string;
  value: number;
  unit: string;
}

const MiB = 2 ** 20;
const DD_TIMEOUT_MS = 600_000;

/** Root (1) holds r (2, readableBytes of zeros) and w (3, swallows writes). */
function nullOps(readableBytes: number): Partial<LlOps> {
  const now = Date.now();
  const attr = (ino: bigint, mode: number, size: number): LlAttr => ({ ino, mode, nlink: 1, uid: 0, gid: 0, size, atimeMs: now, mtimeMs: now, ctimeMs: now });
  const attrs = new Map<bigint, LlAttr>([
    [1n, attr(1n, 0o040755, 0)],
    [2n, attr(2n, 0o100644, readableBytes)],
    [3n, attr(3n, 0o100644, 0)],
  ]);
  const names = new Map([['r', 2n], ['w', 3n]]);
  const zeros = Buffer.alloc(MiB);
  const entry = (ino: bigint) => ({ ino, generation: 1n, attr: attrs.get(ino)!, attrTimeout: 60, entryTimeout: 60 });
  return {
    lookup: (r, s) => {
      const ino = r.parent === 1n ? names.get(r.name) : undefined;
      if (ino === undefined) s.replyErr(r.id, ENOENT);
      else s.replyEntry(r.id, entry(ino));
    },
    getattr: (r, s) => void (attrs.has(r.ino) ? s.replyAttr(r.id, attrs.get(r.ino)!, 60) : s.replyErr(r.id, ENOENT)),
    setattr: (r, s) => void s.replyAttr(r.id, attrs.get(r.ino)!, 60),
    open: (r, s) => void s.replyOpen(r.id, 1),
    opendir: (r, s) => void s.replyOpen(r.id, 1),
    readdir: (r, s) => {
      const all = [
        { name: '.', ino: 1n, mode: 0o040755, nextOffset: 1 },
        { name: '..', ino: 1n, mode: 0o040755, nextOffset: 2 },
        { name: 'r', ino: 2n, mode: 0o100644, nextOffset: 3 },
        { name: 'w', ino: 3n, mode: 0o100644, nextOffset: 4 },
      ];
      s.replyDir(r.id, all.slice(r.offset));
    },
    read: (r, s) => {
      const n = Math.max(0, Math.min(r.size, readableBytes - r.offset));
      s.replyData(r.id, n <= zeros.length ? zeros.subarray(0, n) : Buffer.alloc(n));
    },
    write: (r, s) => void s.replyWrite(r.id, r.data.length),
    flush: (r, s) => void s.replyErr(r.id, 0),
    release: (r, s) => void s.replyErr(r.id, 0),
    releasedir: (r, s) => void s.replyErr(r.id, 0),
    fsync: (r, s) => void s.replyErr(r.id, 0),
    statfs: (r, s) => void s.replyStatfs(r.id, { bsize: 4096, frsize: 4096, blocks: 1 << 30, bfree: 1 << 29, bavail: 1 << 29, files: 1000, ffree: 1000 }),
  };
}

export async function benchFuseCeilingLl(opts: { quick: boolean; dir?: string }): Promise<Figure[]> {
  const count = opts.quick ? 1024 : 4096; // MiB
  const runs = opts.quick ? 1 : 2;
  const mnt = await mkdtemp(join(opts.dir ?? tmpdir(), 'vmvault-fuse3-ceiling-'));
  let session: LlSession | undefined;
  try {
    session = await LlSession.mount(mnt, { fsname: 'vmvault-ceiling' }, dispatchOps(nullOps(count * MiB)));
    let write = 0;
    let read = 0;
    for (let i = 0; i < runs; i++) {
      write = Math.max(write, (await dd(['if=/dev/zero', `of=${join(mnt, 'w')}`, 'bs=1M', `count=${count}`], DD_TIMEOUT_MS)).mbps);
      read = Math.max(read, (await dd([`if=${join(mnt, 'r')}`, 'of=/dev/null', 'bs=1M', `count=${count}`], DD_TIMEOUT_MS)).mbps);
    }
    const round = (v: number) => Math.round(v * 10) / 10;
    return [
      { figure: 'fuse.ceiling.write', value: round(write), unit: 'MB/s' },
      { figure: 'fuse.ceiling.read', value: round(read), unit: 'MB/s' },
    ];
  } finally {
    if (session) await session.unmount();
    await rm(mnt, { recursive: true, force: true });
  }
}
