// LevelDB keys of the namespace layer (documented in FORMAT.md beside this file). The store
// layer owns 'x', 'm' and 'c'; the namespace owns the prefixes below. Numbers are big-endian
// so that keys of one volume, and of one directory, sort together.

export const VOLUME = 0x56; // 'V' volId -> volume record
export const SHARE_NAME = 0x53; // 'S' share name -> volId
export const SNAP_NAME = 0x50; // 'P' share volId, snapshot name -> volId
export const INODE = 0x69; // 'i' volId, ino -> inode record
export const ENTRY = 0x65; // 'e' volId, parent ino, name -> child ino + type
export const NS_META = 0x4e; // 'N' name -> namespace counters

export function volumeKey(vol: number): Buffer {
  const k = Buffer.allocUnsafe(5);
  k[0] = VOLUME;
  k.writeUInt32BE(vol, 1);
  return k;
}

export function shareNameKey(name: string): Buffer {
  return Buffer.concat([Buffer.from([SHARE_NAME]), Buffer.from(name, 'utf8')]);
}

export function snapNameKey(shareVol: number, name: string): Buffer {
  const k = Buffer.allocUnsafe(5);
  k[0] = SNAP_NAME;
  k.writeUInt32BE(shareVol, 1);
  return Buffer.concat([k, Buffer.from(name, 'utf8')]);
}

export function snapNameRange(shareVol: number): { gte: Buffer; lt: Buffer } {
  return volumeRange(SNAP_NAME, shareVol);
}

/** prefix, volId, then a 64-bit inode number: an inode's key, and its directory's entry prefix. */
function volInoKey(prefix: number, vol: number, ino: number): Buffer {
  const k = Buffer.allocUnsafe(13);
  k[0] = prefix;
  k.writeUInt32BE(vol, 1);
  k.writeUInt32BE(Math.floor(ino / 0x100000000), 5);
  k.writeUInt32BE(ino >>> 0, 9);
  return k;
}

export function inodeKey(vol: number, ino: number): Buffer {
  return volInoKey(INODE, vol, ino);
}

export function entryKey(vol: number, parent: number, name: string): Buffer {
  return Buffer.concat([entryPrefix(vol, parent), Buffer.from(name, 'utf8')]);
}

export function entryPrefix(vol: number, parent: number): Buffer {
  return volInoKey(ENTRY, vol, parent);
}

/** All entries of one directory. */
export function entryRange(vol: number, parent: number): { gte: Buffer; lt: Buffer } {
  const gte = entryPrefix(vol, parent);
  const lt = entryPrefix(vol, parent + 1);
  return { gte, lt };
}

/** All keys of one volume under a prefix (INODE, ENTRY, or SNAP_NAME for a share's snapshots). */
export function volumeRange(prefix: number, vol: number): { gte: Buffer; lt: Buffer } {
  const gte = Buffer.allocUnsafe(5);
  gte[0] = prefix;
  gte.writeUInt32BE(vol, 1);
  const lt = Buffer.from(gte);
  lt.writeUInt32BE(vol + 1, 1);
  return { gte, lt };
}

export function nsMetaKey(name: string): Buffer {
  return Buffer.concat([Buffer.from([NS_META]), Buffer.from(name, 'utf8')]);
}

/** The volume and inode a key of prefix INODE or ENTRY belongs to, for copying volumes. */
export function rekeyVolume(key: Buffer, vol: number): Buffer {
  const k = Buffer.from(key);
  k.writeUInt32BE(vol, 1);
  return k;
}
