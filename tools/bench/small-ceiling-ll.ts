// The small-file ceiling of the libfuse3 low-level binding (src/fuse/ll/): a file system that
// keeps only a table of names and sizes in memory, the least one can do and still answer
// create, stat, readdir and unlink. It mounts as the appliance's LlMount does (readdirplus off,
// 1 s entry and attribute timeouts, listings kept in the kernel's cache), so the appliance's
// small-file rates on the default binding compare against this in the same run (small-files.ts).
import fs from 'node:fs/promises';
import path from 'node:path';
import { EEXIST, ENOENT, ENOTDIR } from '../../src/fuse/ll/errno.js';
import { dispatchOps, LlSession, type LlAttr, type LlDirent, type LlOps } from '../../src/fuse/ll/session.js';

const TIMEOUT_S = 1;

function namesOnlyOps(): Partial<LlOps> {
  const now = Date.now();
  const root: LlAttr = { ino: 1n, mode: 0o040755, nlink: 2, uid: 0, gid: 0, size: 0, atimeMs: now, mtimeMs: now, ctimeMs: now };
  const byName = new Map<string, bigint>();
  const files = new Map<bigint, LlAttr>();
  const dirs = new Map<number, LlDirent[]>();
  let nextIno = 2n;
  let nextFh = 1;
  const attrOf = (ino: bigint): LlAttr | undefined => (ino === 1n ? root : files.get(ino));
  const entry = (a: LlAttr) => ({ ino: a.ino, generation: 1n, attr: a, attrTimeout: TIMEOUT_S, entryTimeout: TIMEOUT_S });
  const touchRoot = () => (root.mtimeMs = root.ctimeMs = Date.now());
  return {
    lookup: (r, s) => {
      const ino = r.parent === 1n ? byName.get(r.name) : undefined;
      if (ino === undefined) s.replyErr(r.id, r.parent === 1n ? ENOENT : ENOTDIR);
      else s.replyEntry(r.id, entry(files.get(ino)!));
    },
    forget: () => {},
    getattr: (r, s) => {
      const a = attrOf(r.ino);
      if (a) s.replyAttr(r.id, a, TIMEOUT_S);
      else s.replyErr(r.id, ENOENT);
    },
    setattr: (r, s) => {
      const a = attrOf(r.ino);
      if (!a) return void s.replyErr(r.id, ENOENT);
      if (r.set.size !== undefined) a.size = r.set.size;
      s.replyAttr(r.id, a, TIMEOUT_S);
    },
    create: (r, s) => {
      if (r.parent !== 1n) return void s.replyErr(r.id, ENOTDIR);
      if (byName.has(r.name)) return void s.replyErr(r.id, EEXIST);
      const t = Date.now();
      const a: LlAttr = { ino: nextIno++, mode: 0o100000 | (r.mode & 0o7777), nlink: 1, uid: r.uid, gid: r.gid, size: 0, atimeMs: t, mtimeMs: t, ctimeMs: t };
      files.set(a.ino, a);
      byName.set(r.name, a.ino);
      touchRoot();
      s.replyCreate(r.id, entry(a), nextFh++);
    },
    open: (r, s) => void s.replyOpen(r.id, nextFh++),
    write: (r, s) => {
      const a = files.get(r.ino);
      if (a) a.size = Math.max(a.size, r.offset + r.data.length);
      s.replyWrite(r.id, r.data.length);
    },
    flush: (r, s) => void s.replyErr(r.id, 0),
    release: (r, s) => void s.replyErr(r.id, 0),
    fsync: (r, s) => void s.replyErr(r.id, 0),
    unlink: (r, s) => {
      const ino = r.parent === 1n ? byName.get(r.name) : undefined;
      if (ino === undefined) return void s.replyErr(r.id, ENOENT);
      byName.delete(r.name);
      files.delete(ino);
      touchRoot();
      s.replyErr(r.id, 0);
    },
    opendir: (r, s) => {
      const fh = nextFh++;
      dirs.set(fh, []);
      s.replyOpen(r.id, fh, { cacheDir: true, keepCache: true });
    },
    readdir: (r, s) => {
      let list = dirs.get(r.fh) ?? [];
      if (r.offset === 0 || list.length === 0) {
        list = [
          { name: '.', ino: 1n, mode: 0o040000, nextOffset: 1 },
          { name: '..', ino: 1n, mode: 0o040000, nextOffset: 2 },
          ...[...byName].map(([name, ino], i) => ({ name, ino, mode: 0o100000, nextOffset: i + 3 })),
        ];
        dirs.set(r.fh, list);
      }
      s.replyDir(r.id, list.slice(r.offset, r.offset + Math.ceil(r.size / 24)));
    },
    releasedir: (r, s) => {
      dirs.delete(r.fh);
      s.replyErr(r.id, 0);
    },
    access: (r, s) => void s.replyErr(r.id, 0),
    statfs: (r, s) => void s.replyStatfs(r.id, { bsize: 4096, frsize: 4096, blocks: 1 << 30, bfree: 1 << 29, bavail: 1 << 29, files: 1 << 20, ffree: 1 << 20 }),
  };
}

/** Mounts the names-only file system in a fresh directory under `work`, runs `fn` on it, unmounts. */
export async function withNamesOnlyLlMount<T>(work: string, fn: (mnt: string) => Promise<T>): Promise<T> {
  const mnt = await fs.mkdtemp(path.join(work, 'small-ceiling-ll-'));
  let session: LlSession | undefined;
  try {
    session = await LlSession.mount(mnt, { fsname: 'vmvault-ceiling', defaultPermissions: true, readdirplus: false }, dispatchOps(namesOnlyOps()));
    return await fn(mnt);
  } finally {
    if (session) await session.unmount();
    await fs.rm(mnt, { recursive: true, force: true });
  }
}
