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

function putVar(out: number[], v: number): void {
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

export function encodeExtents(ext: Extent[]): Buffer {
  const shift = unitShift(ext);
  const unit = 2 ** shift;
  const out: number[] = [1, shift];
  let lend = 0;
  let pend = 0;
  for (const e of ext) {
    if (e.logical < lend || e.length <= 0 || e.physical < 0) throw new Error(`extents out of order or empty at logical ${e.logical}`);
    putVar(out, (e.logical - lend) / unit);
    const d = (e.physical - pend) / unit;
    putVar(out, d >= 0 ? d * 2 : -d * 2 - 1);
    putVar(out, e.length / unit);
    lend = e.logical + e.length;
    pend = e.physical + e.length;
  }
  return Buffer.from(out);
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
