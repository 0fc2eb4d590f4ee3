// The store's LevelDB keys besides the index's (FORMAT.md, "LevelDB key space"): `m` + name for
// the store's metadata records, `c` + container id for the container registry.

export const META_PREFIX = 0x6d; // 'm'

export const CONTAINER_PREFIX = 0x63; // 'c'

/** `c` + container id, u32 big-endian, so the registry sorts by id. */
export function containerKey(cid: number): Buffer {
  const k = Buffer.allocUnsafe(5);
  k[0] = CONTAINER_PREFIX;
  k.writeUInt32BE(cid, 1);
  return k;
}

/** `m` + UTF-8 name: `mcounters`, `mcheckpoint`, `mclean`, `mgc`. */
export function metaKey(name: string): Buffer {
  return Buffer.concat([Buffer.from([META_PREFIX]), Buffer.from(name, 'utf8')]);
}
