// A file's extents, compactly (catalog FORMAT.md, "extents"): a version byte (1), the unit as
// a power of two (the largest <= 2^16 dividing every number), then per extent three unsigned
// LEB128 varints in units: the gap since the previous extent's logical end, the physical start
// as a zig-zag delta from the previous extent's physical end, and the length.

export type Extent = { logical: number; physical: number; length: number };

/** Trailing zero bits of a non-negative integer, at most 16 (exact below 2^53: `%` is exact there). */
function lowZeros(v: number): number {
  const r = v % 0x10000;
  return r === 0 ? 16 : 31 - Math.clz32(r & -r);
}

function unitShift(ext: Extent[]): number {
  // A catalog build encodes every file's extents: bit arithmetic, not a loop of divisions.
  let shift = 16;
  for (const e of ext) shift = Math.min(shift, lowZeros(e.logical), lowZeros(e.physical), lowZeros(e.length));
  return shift;
}

/**
 * Encodes `ext` into `out` from byte 0: the bytes written, or -1 when `out` is too short (a
 * catalog build encodes every file's extents into one scratch buffer; SQLite copies a blob as it
 * binds it, so no Buffer is made per file).
 */
export function encodeExtentsInto(ext: Extent[], out: Uint8Array): number {
  const shift = unitShift(ext);
  const unit = 2 ** shift;
  const cap = out.length;
  if (cap < 2) return -1;
  out[0] = 1;
  out[1] = shift;
  let at = 2;
  const put = (v: number): boolean => {
    while (v >= 0x80) {
      if (at >= cap) return false;
      out[at++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    if (at >= cap) return false;
    out[at++] = v;
    return true;
  };
  let lend = 0;
  let pend = 0;
  for (const e of ext) {
    if (e.logical < lend || e.length <= 0 || e.physical < 0) throw new Error(`extents out of order or empty at logical ${e.logical}`);
    const d = (e.physical - pend) / unit;
    if (!put((e.logical - lend) / unit) || !put(d >= 0 ? d * 2 : -d * 2 - 1) || !put(e.length / unit)) return -1;
    lend = e.logical + e.length;
    pend = e.physical + e.length;
  }
  return at;
}

/** At most 8 bytes per varint below 2^53 (7 bits each), 3 per extent, and the 2 header bytes. */
const maxBytes = (ext: Extent[]) => 2 + ext.length * 3 * 8;

export function encodeExtents(ext: Extent[]): Buffer {
  const out = Buffer.allocUnsafe(maxBytes(ext));
  return Buffer.from(out.subarray(0, encodeExtentsInto(ext, out)));
}

/** A scratch buffer that grows to the largest list encoded: `encode` returns a view of it, valid until the next call. */
export class ExtentsScratch {
  private buf = Buffer.allocUnsafe(4096);

  encode(ext: Extent[]): Buffer {
    if (this.buf.length < maxBytes(ext)) this.buf = Buffer.allocUnsafe(maxBytes(ext));
    return this.buf.subarray(0, encodeExtentsInto(ext, this.buf));
  }
}

export function decodeExtents(b: Uint8Array): Extent[] {
  if (b.length < 2 || b[0] !== 1 || b[1] > 16) throw Object.assign(new Error('the catalog holds extents in an unknown encoding'), { code: 'UNSUPPORTED_FORMAT' });
  const unit = 2 ** b[1];
  let at = 2;
  const get = (): number => {
    let v = 0;
    let mul = 1;
    for (;;) {
      if (at >= b.length || mul > 2 ** 56) throw Object.assign(new Error('damaged extents in the catalog'), { code: 'CORRUPT_RECORD' });
      const x = b[at++];
      v += (x & 0x7f) * mul;
      if (x < 0x80) return v;
      mul *= 0x80;
    }
  };
  const out: Extent[] = [];
  let lend = 0;
  let pend = 0;
  while (at < b.length) {
    const logical = lend + get() * unit;
    const z = get();
    const physical = pend + (z % 2 === 0 ? z / 2 : -(z + 1) / 2) * unit;
    const length = get() * unit;
    out.push({ logical, physical, length });
    lend = logical + length;
    pend = physical + length;
  }
  return out;
}
