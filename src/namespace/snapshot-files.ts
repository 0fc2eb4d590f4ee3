// The regular files of a snapshot with their stored versions, by path inside the snapshot:
// what a copy of a restore point elsewhere (a clone on another appliance, a directory archive)
// sends or writes, read through the namespace, never the mount. A snapshot never changes, so
// the list is the point's content as long as the snapshot exists.

import { vmError } from '../errors.js';
import { type FileVersion, forEachSegment } from '../store/store.js';
import type { Namespace } from './namespace.js';
import { validateName } from './names.js';
import { NodeType, ROOT_INO } from './records.js';

export interface SnapshotFile {
  /** Path inside the snapshot, '/'-separated, no leading slash. */
  path: string;
  version: FileVersion;
  mode: number;
}

/** Every regular file of `<share>/.snapshots/<snapshot>/`, sorted by path (hard links: once per name). */
export async function snapshotFiles(ns: Namespace, share: string, snapshot: string): Promise<SnapshotFile[]> {
  validateName('snapshot', snapshot);
  const ctx = ns.ctx;
  const shareVol = await ctx.meta.shareVolumeId(share);
  if (shareVol === undefined) throw vmError('NOT_FOUND', `share ${share} does not exist`);
  const id = await ctx.meta.snapshotVolumeId(shareVol, snapshot);
  if (id === undefined) throw vmError('NOT_FOUND', `share ${share} has no snapshot named ${snapshot}`);
  return filesOfVolume(ns, id);
}

/**
 * Every regular file of the share's live tree (not its snapshots), as snapshotFiles lists a
 * snapshot's: what a clone target holds before it is snapshotted as the next point.
 */
export async function shareFiles(ns: Namespace, share: string): Promise<SnapshotFile[]> {
  const id = await ns.ctx.meta.shareVolumeId(share);
  if (id === undefined) throw vmError('NOT_FOUND', `share ${share} does not exist`);
  return filesOfVolume(ns, id);
}

async function filesOfVolume(ns: Namespace, id: number): Promise<SnapshotFile[]> {
  const ctx = ns.ctx;
  const out: SnapshotFile[] = [];
  const stack: Array<{ ino: number; path: string }> = [{ ino: ROOT_INO, path: '' }];
  while (stack.length > 0) {
    const { ino, path } = stack.pop()!;
    for (const { name, entry } of await ctx.meta.listDir(id, ino)) {
      const p = path ? `${path}/${name}` : name;
      if (entry.type === NodeType.Dir) stack.push({ ino: entry.ino, path: p });
      else if (entry.type === NodeType.File) {
        const inode = await ctx.meta.getInode(id, entry.ino);
        if (inode) out.push({ path: p, version: inode.version, mode: inode.mode });
      }
    }
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * Calls `fn` with the fingerprint of every segment a snapshot's files name (data and tree
 * nodes, repeats included): what a replication token may fetch of its own points.
 */
export async function forEachSnapshotSegment(ns: Namespace, share: string, snapshot: string, fn: (fp: Buffer) => void): Promise<void> {
  for (const f of await snapshotFiles(ns, share, snapshot)) await forEachSegment(ns.store.reader, f.version, fn);
}
