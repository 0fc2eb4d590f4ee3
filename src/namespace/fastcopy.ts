// Fastcopy: a file or a directory tree copied by reference. A file's content is a segment-tree
// root, so the copy writes inode and entry records only, never data: it is instant and takes
// no space in the store, whatever the file sizes. The source may be in a share or in a
// snapshot (a restore: `vms/.snapshots/nightly/web01.vmdk` back into `vms`), and the target
// in the same share or another one.
//
// The copy is one LevelDB batch written under the namespace lock, so it is all there or not at
// all, and reads the source as of one instant. Hard links inside a copied tree stay hard links
// to each other; symbolic links are copied as they are (their targets are not rewritten).

import { vmError } from '../errors.js';
import type { NsContext } from './context.js';
import { Txn } from './meta.js';
import { parseSharePath, type SharePath, showSharePath, SNAPSHOTS_DIR } from './names.js';
import { type Inode, NodeType } from './records.js';

export interface FastcopyResult {
  /** As given, normalised: "vms/.snapshots/nightly/dir/web01.vmdk". */
  from: string;
  to: string;
  type: 'file' | 'directory' | 'symlink';
  /** Regular files made (hard links counted once). */
  files: number;
  /** Directories made, the copied directory included. */
  directories: number;
  /** Sum of the sizes of the files made. */
  logicalBytes: number;
}

/** A tree bigger than this is refused: one batch holds it all, in memory. */
export const MAX_COPY_NODES = 1_000_000;

export class Fastcopy {
  constructor(
    private readonly ctx: NsContext,
    /** Commits the open files of one volume (their write buffers), so the copy sees them. */
    private readonly flushVolume: (vol: number) => Promise<void>,
  ) {}

  /** `from`: `<share>/<path>` or `<share>/.snapshots/<snap>[/<path>]`; `to`: `<share>/<path>`, not there yet. */
  async copy(from: string, to: string): Promise<FastcopyResult> {
    const src = parseSharePath(from, 'source', { inSnapshot: true });
    const dst = parseSharePath(to, 'target', { inSnapshot: false });
    const srcPath = mountPath(src);
    const dstPath = mountPath(dst);
    const first = await this.ctx.resolve(srcPath);
    // Data still in write buffers belongs to the source as the caller sees it.
    if (!first.readOnly) {
      if (first.inode.type === NodeType.Dir) await this.flushVolume(first.vol.id);
      else await this.ctx.findOpen(first.vol.id, first.ino)?.commit(true);
    }
    return this.ctx.lock.run(async () => {
      const source = await this.ctx.resolve(srcPath);
      const p = await this.ctx.resolveParent(dstPath);
      if (await this.ctx.meta.lookup(p.vol.id, p.parent, p.name)) throw vmError('ALREADY_EXISTS', `${showSharePath(dst)} already exists`);
      if (source.inode.type === NodeType.Dir && source.vol.id === p.vol.id && isInside(dst.parts, src.parts)) {
        throw vmError('INVALID_ARGUMENT', `cannot copy ${showSharePath(src)} into itself (${showSharePath(dst)})`);
      }
      const now = Date.now();
      const txn = new Txn();
      const made = { files: 0, directories: 0, bytes: 0 };
      const copied = new Map<number, { ino: number; links: number; inode: Inode }>();
      // Depth first over the source; each node gets a new inode number in the target volume.
      const stack: Array<{ srcIno: number; inode: Inode; parent: number; name: string }> = [
        { srcIno: source.ino, inode: source.inode, parent: p.parent, name: p.name },
      ];
      let nodes = 0;
      while (stack.length > 0) {
        const n = stack.pop()!;
        if (++nodes > MAX_COPY_NODES) {
          throw vmError('INVALID_ARGUMENT', `${showSharePath(src)} holds more than ${MAX_COPY_NODES} entries; copy its directories one at a time`);
        }
        const seen = n.inode.type === NodeType.File ? copied.get(n.srcIno) : undefined;
        if (seen) {
          seen.links++;
          txn.putEntry(p.vol.id, n.parent, n.name, { ino: seen.ino, type: NodeType.File });
          continue;
        }
        const ino = this.ctx.allocIno(txn, p.vol);
        txn.putEntry(p.vol.id, n.parent, n.name, { ino, type: n.inode.type });
        if (n.inode.type === NodeType.Dir) {
          made.directories++;
          let subdirs = 0;
          for (const { name, entry } of await this.ctx.meta.listDir(source.vol.id, n.srcIno)) {
            const inode = await this.ctx.meta.mustInode(source.vol.id, entry.ino);
            if (inode.type === NodeType.Dir) subdirs++;
            stack.push({ srcIno: entry.ino, inode, parent: ino, name });
          }
          // A copy is a new object: its own generation, and ".." is where it was put.
          txn.putInode(p.vol.id, { ...n.inode, ino, nlink: 2 + subdirs, atime: now, ctime: now, parent: n.parent, generation: this.ctx.epoch });
        } else {
          if (n.inode.type === NodeType.File) {
            made.files++;
            made.bytes += n.inode.size;
          }
          copied.set(n.srcIno, { ino, links: 1, inode: { ...n.inode, ino, atime: now, ctime: now, generation: this.ctx.epoch } });
        }
      }
      for (const c of copied.values()) txn.putInode(p.vol.id, { ...c.inode, nlink: c.links });
      const parentLinks = p.parentInode.nlink + (source.inode.type === NodeType.Dir ? 1 : 0);
      txn.putInode(p.vol.id, { ...p.parentInode, nlink: parentLinks, mtime: now, ctime: now });
      this.ctx.count(txn, p.vol, made.files, made.bytes);
      await this.ctx.meta.apply(txn, true);
      return {
        from: showSharePath(src),
        to: showSharePath(dst),
        type: source.inode.type === NodeType.Dir ? 'directory' : source.inode.type === NodeType.File ? 'file' : 'symlink',
        files: made.files,
        directories: made.directories,
        logicalBytes: made.bytes,
      };
    });
  }

}

function mountPath(p: SharePath): string {
  return `/${[p.share, ...(p.snapshot === undefined ? [] : [SNAPSHOTS_DIR, p.snapshot]), ...p.parts].join('/')}`;
}

/** `inner` is `outer` or below it. */
function isInside(inner: string[], outer: string[]): boolean {
  return inner.length >= outer.length && outer.every((c, i) => inner[i] === c);
}
