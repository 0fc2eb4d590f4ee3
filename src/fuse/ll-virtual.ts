// Read-only virtual trees grafted onto the libfuse3 mount (issue 15: `<image>.files/` beside
// each cataloged disk image in `.snapshots/<point>/`). A VirtualTree owns a reserved range of
// node ids that no stored node can have (namespace/node-id.ts: volume 0, inode >= 2^32); this
// wrapper sends every request on those ids to the tree, adds the tree's entries to the stored
// directories that host them, and refuses every change (EROFS). Stored nodes go on to the
// wrapped operations untouched.
//
// The tree answers from its own data (the catalog's SQLite files, the store through the
// namespace), never from the mount: the FUSE process must never wait on itself.

import { constants } from 'node:os';
import type { NodeAttr } from '../namespace/node-ops.js';
import type { Namespace } from '../namespace/namespace.js';
import { NodeType } from '../namespace/records.js';
import type { DataWindows, StoredMapping } from './ll-datawin.js';
import { toErrno } from './errno.js';
import type { LlOps, LlSession } from './ll/session.js';
import type { LlAttr, LlDirent, LlEntry, LlRequest } from './ll/types.js';

const E = constants.errno;
/** The tree's listings and attributes change only when a catalog is (re)built. */
const TIMEOUT_S = 1;
/** Directory handles of hosted and virtual directories: above any the wrapped ops hand out. */
const FH_BASE = 2 ** 30;
const O_ACCMODE = 3;
/** The handle of every open of a tree's file: its reads need none (the node says it all). */
const FILE_FH = 0;

export interface VirtualTree {
  owns(node: bigint): boolean;
  /** Whether the stored directory `node` shows entries of the tree (a snapshot's top). */
  hosts(node: bigint): Promise<boolean>;
  /** The entries the tree adds to a stored directory it hosts. */
  extra(node: bigint): Promise<Array<{ name: string; attr: NodeAttr }>>;
  getattr(node: bigint): Promise<NodeAttr>;
  lookup(parent: bigint, name: string): Promise<NodeAttr>;
  readdir(node: bigint): Promise<Array<{ name: string; attr: NodeAttr }>>;
  readlink(node: bigint): Promise<string>;
  read(node: bigint, offset: number, size: number): Promise<Buffer>;
  /**
   * Optional: hands `use` the bytes (a Buffer valid only during the call) without a copy where
   * the tree can; false, without calling `use`, where it cannot (read() is asked then). True
   * when `use` ran at once, else a promise that resolves once it ran.
   */
  readWith?(node: bigint, offset: number, size: number, use: (b: Buffer) => void): boolean | Promise<void>;
  /**
   * Optional: where regular file `node`'s bytes lie in a stored file's version that never changes
   * (a snapshot's file), for the ranges that do; reads inside them are then answered in C from
   * the store's read-ahead windows of that version (ll-datawin.ts), as the stored file's own
   * reads are. Asked at open, unless a handle mapped the node already; undefined where nothing
   * maps. The mapping must hold for as long as a handle on the node is open.
   */
  mapping?(node: bigint): Promise<StoredMapping | undefined>;
  /** A handle on `node` was released (the tree may drop what it read ahead for it). */
  release?(node: bigint): void;
}

function attr(a: NodeAttr): LlAttr {
  return { ino: a.ino, mode: a.mode, nlink: a.nlink, uid: a.uid, gid: a.gid, size: a.size, blksize: 128 * 1024, atimeMs: a.atime, mtimeMs: a.mtime, ctimeMs: a.ctime };
}

function entry(a: NodeAttr): LlEntry {
  return { ino: a.ino, generation: BigInt(a.generation), attr: attr(a), attrTimeout: TIMEOUT_S, entryTimeout: TIMEOUT_S };
}

function typeMode(t: NodeType): number {
  return t === NodeType.Dir ? 0o040000 : t === NodeType.Symlink ? 0o120000 : 0o100000;
}

export function withVirtualTree(base: Partial<LlOps>, tree: VirtualTree, ns: Namespace, log: (line: string) => void, datawin?: DataWindows): Partial<LlOps> {
  const dirs = new Map<number, Array<{ name: string; ino: bigint; type: NodeType; attr?: NodeAttr }>>();
  /** Open handles per file node of the tree: its data windows go with the last one. */
  const opens = new Map<bigint, number>();
  let nextFh = FH_BASE;
  const fail = (s: LlSession, r: LlRequest, err: unknown): void => void s.replyErr(r.id, -toErrno(err, `${r.op} (catalog view)`, log));
  const rofs = (s: LlSession, r: LlRequest): void => void s.replyErr(r.id, E.EROFS);
  const call = <O extends keyof LlOps>(op: O, r: Parameters<LlOps[O]>[0], s: LlSession): void | Promise<void> => {
    const fn = base[op] as ((r: unknown, s: LlSession) => void | Promise<void>) | undefined;
    if (!fn) return void s.replyErr(r.id, E.ENOSYS);
    return fn(r, s);
  };
  const guard = <R extends LlRequest>(fn: (r: R, s: LlSession) => Promise<void>) => async (r: R, s: LlSession) => {
    try {
      await fn(r, s);
    } catch (err) {
      fail(s, r, err);
    }
  };
  const rofsOk = (s: LlSession, r: LlRequest): void => void s.replyErr(r.id, 0);
  const closed = (ino: bigint): void => {
    const n = (opens.get(ino) ?? 1) - 1;
    if (n > 0) return void opens.set(ino, n);
    opens.delete(ino);
    datawin?.unmap(ino);
  };
  const parentOwned = <O extends 'mknod' | 'mkdir' | 'symlink' | 'unlink' | 'rmdir' | 'create'>(op: O) => (r: Parameters<LlOps[O]>[0], s: LlSession) => {
    if (tree.owns((r as { parent: bigint }).parent)) return rofs(s, r);
    return call(op, r, s);
  };
  const inoOwned = <O extends 'setattr' | 'write' | 'fsync' | 'fallocate' | 'lseek' | 'getlk' | 'setlk' | 'flock' | 'copy_file_range' | 'fsyncdir'>(op: O) => (r: Parameters<LlOps[O]>[0], s: LlSession) => {
    if (tree.owns((r as { ino: bigint }).ino)) return rofs(s, r);
    return call(op, r, s);
  };

  return {
    ...base,
    lookup: guard(async (r, s) => {
      if (tree.owns(r.parent)) {
        s.replyEntry(r.id, entry(await tree.lookup(r.parent, r.name)));
        return;
      }
      if (r.name.endsWith('.files') && (await tree.hosts(r.parent))) {
        const hit = (await tree.extra(r.parent)).find((e) => e.name === r.name);
        if (hit) {
          s.replyEntry(r.id, entry(hit.attr));
          return;
        }
      }
      await call('lookup', r, s);
    }),
    getattr: guard(async (r, s) => {
      if (tree.owns(r.ino)) s.replyAttr(r.id, attr(await tree.getattr(r.ino)), TIMEOUT_S);
      else await call('getattr', r, s);
    }),
    readlink: guard(async (r, s) => {
      if (tree.owns(r.ino)) s.replyReadlink(r.id, await tree.readlink(r.ino));
      else await call('readlink', r, s);
    }),
    open: guard(async (r, s) => {
      if (!tree.owns(r.ino)) return void (await call('open', r, s));
      if ((r.flags & O_ACCMODE) !== 0) return void rofs(s, r);
      const a = await tree.getattr(r.ino);
      if (a.type === NodeType.Dir) return void s.replyErr(r.id, E.EISDIR);
      // Mapped before the first read: windows the store reads from then on are registered as they
      // become ready (a mapping made at a later read misses those already read). A mapping that
      // fails costs nothing but speed: the reads meet the error themselves.
      const m = datawin && tree.mapping && !datawin.isMapped(r.ino) ? await tree.mapping(r.ino).catch(() => undefined) : undefined;
      // Counted before the reply: a release may follow it at once.
      opens.set(r.ino, (opens.get(r.ino) ?? 0) + 1);
      if (m) datawin!.map(s, r.ino, FILE_FH, m);
      if (!s.replyOpen(r.id, FILE_FH, { keepCache: true })) closed(r.ino);
    }),
    read: (r, s) => {
      if (!tree.owns(r.ino)) return call('read', r, s);
      if (tree.readWith) {
        let sent: boolean | Promise<void>;
        try {
          sent = tree.readWith(r.ino, r.offset, r.size, (b) => void s.replyData(r.id, b));
        } catch (err) {
          return fail(s, r, err);
        }
        if (sent === true) return;
        if (sent !== false) return void sent.catch((err) => fail(s, r, err));
      }
      return guard<typeof r>(async (r, s) => void s.replyData(r.id, await tree.read(r.ino, r.offset, r.size)))(r, s);
    },
    flush: (r, s) => (tree.owns(r.ino) ? rofsOk(s, r) : call('flush', r, s)),
    release: (r, s) => {
      if (!tree.owns(r.ino)) return call('release', r, s);
      // Before the reply: no window of this node outlives its last handle.
      closed(r.ino);
      tree.release?.(r.ino);
      rofsOk(s, r);
    },
    opendir: guard(async (r, s) => {
      const owned = tree.owns(r.ino);
      if (!owned && !(await tree.hosts(r.ino))) return void (await call('opendir', r, s));
      if (owned) {
        const a = await tree.getattr(r.ino);
        if (a.type !== NodeType.Dir) return void s.replyErr(r.id, E.ENOTDIR);
      } else await ns.nodes.opendir(r.ino);
      let fh = nextFh;
      while (dirs.has(fh)) fh = fh >= 0x7fffffff ? FH_BASE : fh + 1;
      nextFh = fh >= 0x7fffffff ? FH_BASE : fh + 1;
      dirs.set(fh, []);
      // Not cached by the kernel: a catalog finished later adds `.files` entries to the listing.
      if (!s.replyOpen(r.id, fh)) dirs.delete(fh);
    }),
    readdir: guard(async (r, s) => {
      let list = dirs.get(r.fh);
      if (!list) return void (await call('readdir', r, s));
      if (r.offset === 0 || list.length === 0) {
        if (tree.owns(r.ino)) {
          const a = await tree.getattr(r.ino);
          list = [{ name: '.', ino: r.ino, type: NodeType.Dir, attr: a }, { name: '..', ino: r.ino, type: NodeType.Dir }];
          for (const e of await tree.readdir(r.ino)) list.push({ name: e.name, ino: e.attr.ino, type: e.attr.type, attr: e.attr });
        } else {
          list = [...(await ns.nodes.readdir(r.ino))];
          for (const e of await tree.extra(r.ino)) list.push({ name: e.name, ino: e.attr.ino, type: e.attr.type, attr: e.attr });
        }
        dirs.set(r.fh, list);
      }
      const slice = list.slice(r.offset, r.offset + Math.ceil(r.size / (r.plus ? 96 : 24)));
      const out: LlDirent[] = [];
      for (const [i, e] of slice.entries()) {
        const d: LlDirent = { name: e.name, ino: e.ino, mode: typeMode(e.type), nextOffset: r.offset + i + 1 };
        if (r.plus && e.name !== '.' && e.name !== '..') {
          const a = e.attr ?? (tree.owns(e.ino) ? await tree.getattr(e.ino) : await ns.nodes.getattr(e.ino).catch(() => undefined));
          if (a) d.entry = entry(a);
        }
        out.push(d);
      }
      s.replyDir(r.id, out);
    }),
    releasedir: (r, s) => {
      if (dirs.delete(r.fh)) return void s.replyErr(r.id, 0);
      return call('releasedir', r, s);
    },
    access: (r, s) => (tree.owns(r.ino) && r.mask & 2 ? rofs(s, r) : call('access', r, s)),
    mknod: parentOwned('mknod'),
    mkdir: parentOwned('mkdir'),
    symlink: parentOwned('symlink'),
    unlink: parentOwned('unlink'),
    rmdir: parentOwned('rmdir'),
    create: parentOwned('create'),
    rename: (r, s) => (tree.owns(r.parent) || tree.owns(r.newparent) ? rofs(s, r) : call('rename', r, s)),
    link: (r, s) => (tree.owns(r.ino) || tree.owns(r.newparent) ? rofs(s, r) : call('link', r, s)),
    setattr: inoOwned('setattr'),
    write: inoOwned('write'),
    fsync: inoOwned('fsync'),
    fallocate: inoOwned('fallocate'),
    lseek: inoOwned('lseek'),
    getlk: inoOwned('getlk'),
    setlk: inoOwned('setlk'),
    flock: inoOwned('flock'),
    copy_file_range: inoOwned('copy_file_range'),
    fsyncdir: inoOwned('fsyncdir'),
  };
}
