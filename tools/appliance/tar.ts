// A ustar writer and reader, just what an OVA needs (DSP0243 section 5.3: the OVA is a tar in
// ustar format, members in a set order). Written here rather than by tar(1) so the order, the
// owner (0/0, "root"), the mode (0644) and the time (SOURCE_DATE_EPOCH) are ours, and the same on
// every build machine.

import fs from 'node:fs';

const BLOCK = 512;

function octal(n: number, width: number): string {
  const s = n.toString(8);
  if (s.length > width - 1) throw new Error(`tar: ${n} does not fit in ${width - 1} octal digits`);
  return s.padStart(width - 1, '0') + '\0';
}

export function ustarHeader(name: string, size: number, mtime: number): Buffer {
  if (Buffer.byteLength(name) > 100 || name.includes('/')) throw new Error(`tar: member name "${name}" must be a plain name of at most 100 bytes`);
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(0o644, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(mtime, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write('0', 156, 'ascii');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  h.write('root', 265, 'ascii');
  h.write('root', 297, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

/** Writes `members` (name -> file on disk) in the given order. */
export async function writeTar(out: string, members: Array<{ name: string; file: string }>, mtime: number): Promise<void> {
  const fd = fs.openSync(out, 'w', 0o644);
  try {
    for (const m of members) {
      const size = fs.statSync(m.file).size;
      fs.writeSync(fd, ustarHeader(m.name, size, mtime));
      const src = fs.openSync(m.file, 'r');
      try {
        const buf = Buffer.alloc(4 << 20);
        let pos = 0;
        while (pos < size) {
          const n = fs.readSync(src, buf, 0, Math.min(buf.length, size - pos), pos);
          if (n === 0) throw new Error(`tar: ${m.file} shrank while being read`);
          fs.writeSync(fd, buf, 0, n);
          pos += n;
        }
      } finally {
        fs.closeSync(src);
      }
      const pad = (BLOCK - (size % BLOCK)) % BLOCK;
      if (pad > 0) fs.writeSync(fd, Buffer.alloc(pad));
    }
    fs.writeSync(fd, Buffer.alloc(2 * BLOCK));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export interface TarMember { name: string; size: number; offset: number; mode: number; uid: number; gid: number; type: string; magic: string }

/** The members of a tar file with their data offsets; checks each header's checksum. */
export function listTar(file: string): TarMember[] {
  const fd = fs.openSync(file, 'r');
  const out: TarMember[] = [];
  try {
    const total = fs.fstatSync(fd).size;
    let pos = 0;
    const h = Buffer.alloc(BLOCK);
    while (pos + BLOCK <= total) {
      fs.readSync(fd, h, 0, BLOCK, pos);
      if (h.every((b) => b === 0)) break;
      const field = (o: number, n: number): string => h.subarray(o, o + n).toString('latin1').replace(/\0.*$/s, '').trim();
      const stored = parseInt(field(148, 8), 8);
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
      if (stored !== sum) throw new Error(`tar: bad header checksum at offset ${pos}`);
      const prefix = field(345, 155);
      const name = (prefix ? prefix + '/' : '') + field(0, 100);
      const size = parseInt(field(124, 12), 8);
      out.push({ name, size, offset: pos + BLOCK, mode: parseInt(field(100, 8), 8), uid: parseInt(field(108, 8), 8), gid: parseInt(field(116, 8), 8), type: field(156, 1) || '0', magic: h.subarray(257, 263).toString('latin1') });
      pos += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}
