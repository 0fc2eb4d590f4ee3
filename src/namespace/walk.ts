// Walks volumes to name their files: what verify reports when a segment is damaged ("share
// vms, file web01.vmdk" rather than a fingerprint).

import type { FileVersion } from '../store/store.js';
import type { NsContext } from './context.js';
import { NodeType, ROOT_INO, type Volume } from './records.js';

export interface LabeledFile {
  label: string;
  version: FileVersion;
}

/** Every regular file of a volume, depth first, with a label naming volume and path. */
export async function* filesOf(ctx: NsContext, vol: Volume, volLabel: string): AsyncGenerator<LabeledFile> {
  const seen = new Set<number>();
  const stack: Array<{ ino: number; path: string }> = [{ ino: ROOT_INO, path: '' }];
  while (stack.length > 0) {
    const { ino, path } = stack.pop()!;
    for (const { name, entry } of await ctx.meta.listDir(vol.id, ino)) {
      const p = path ? `${path}/${name}` : name;
      if (entry.type === NodeType.Dir) stack.push({ ino: entry.ino, path: p });
      else if (entry.type === NodeType.File && !seen.has(entry.ino)) {
        seen.add(entry.ino); // hard links: one check per file
        const inode = await ctx.meta.getInode(vol.id, entry.ino);
        if (inode) yield { label: `${volLabel}, file ${p}`, version: inode.version };
      }
    }
  }
}

/** The volumes to verify: one share (with or without one snapshot), or everything. */
export async function* volumesToVerify(
  ctx: NsContext,
  target: { share?: string; snapshot?: string },
): AsyncGenerator<{ vol: Volume; label: string }> {
  const shares = await ctx.meta.shareNames();
  for (const s of shares) {
    if (target.share !== undefined && s.name !== target.share) continue;
    const share = await ctx.volume(s.vol);
    if (target.snapshot === undefined) yield { vol: share, label: `share ${s.name}` };
    for (const p of await ctx.meta.snapshotNames(s.vol)) {
      if (target.snapshot !== undefined && p.name !== target.snapshot) continue;
      yield { vol: await ctx.volume(p.vol), label: `snapshot ${s.name}/${p.name}` };
    }
  }
}
