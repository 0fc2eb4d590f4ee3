// Node ids: one 64-bit number per directory, file and symlink of the mount, made from the
// namespace's own (volume id, inode number), so it is the same after a restart and the same
// through every hard link of a file. FUSE's low-level API and NFS file handles carry it.
//
//   bits 63..40  volume id (shares, snapshots and clones each have one), 1 .. 2^24 - 1
//   bits 39..0   inode number inside the volume, 1 .. 2^40 - 1
//
// Volume 0 does not exist; its ids name the directories the mount shows but does not store:
//   1          the top of the mount (FUSE_ROOT_ID), which lists the shares
//   2 + V      `<share>/.snapshots` of the share whose volume is V
//
// Volume 0 with an inode number from 2^32 up (VIRTUAL_NODE_BASE) is reserved for read-only
// views that are not stored (the catalog's `<image>.files/` trees): parseNode refuses those ids,
// so no stored node or virtual directory above can ever have one.
//
// Volume ids and inode numbers are handed out by counters that only grow (`nextVolume`,
// a volume's `nextIno`), so an id is never reused for another object within one run; across a
// crash an unsynced allocation can be handed out again, which the inode's generation (its
// epoch, records.ts) tells apart.

import { vmError } from '../errors.js';

export type NodeId = bigint;

export const MOUNT_ROOT_NODE: NodeId = 1n;
const VOL_SHIFT = 40n;
const INO_MASK = (1n << VOL_SHIFT) - 1n;
export const MAX_NODE_VOL = 2 ** 24 - 1;
export const MAX_NODE_INO = 2 ** 40 - 1;

export type NodeRef = { kind: 'root' } | { kind: 'snapdir'; shareVol: number } | { kind: 'vol'; vol: number; ino: number };

export function nodeOf(vol: number, ino: number): NodeId {
  if (vol < 1 || vol > MAX_NODE_VOL || ino < 1 || ino > MAX_NODE_INO) {
    // Not reachable in practice (16 million volumes, a trillion inodes each), but never wrapped.
    throw vmError('NOT_SUPPORTED', `inode ${ino} of volume ${vol} does not fit a node id`);
  }
  return (BigInt(vol) << VOL_SHIFT) | BigInt(ino);
}

/** The first node id of the range reserved for views that are not stored (see above). */
export const VIRTUAL_NODE_BASE: NodeId = 1n << 32n;
export const VIRTUAL_NODE_END: NodeId = 1n << VOL_SHIFT;

export function isVirtualNode(node: NodeId): boolean {
  return node >= VIRTUAL_NODE_BASE && node < VIRTUAL_NODE_END;
}

export function snapdirNode(shareVol: number): NodeId {
  return BigInt(shareVol) + 2n;
}

/** What a node id names; NOT_FOUND for ids no node can have (the kernel says ESTALE). */
export function parseNode(node: NodeId): NodeRef {
  if (node === MOUNT_ROOT_NODE) return { kind: 'root' };
  const vol = Number(node >> VOL_SHIFT);
  const ino = Number(node & INO_MASK);
  if (vol === 0) {
    if (ino >= 3 && ino - 2 <= MAX_NODE_VOL) return { kind: 'snapdir', shareVol: ino - 2 };
  } else if (vol <= MAX_NODE_VOL && ino >= 1) {
    return { kind: 'vol', vol, ino };
  }
  throw vmError('NOT_FOUND', `node ${node} does not exist`);
}
