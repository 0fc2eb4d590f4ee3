// VMDK hosted sparse extents (monolithicSparse and streamOptimized) read by their own tables:
// sparse header -> grain directory -> grain tables -> grains. Spec: VMware "Virtual Disk Format
// 5.0". streamOptimized images keep gdOffset = GD_AT_END in the header and the real one in the
// footer (a header copy 1024 bytes before the end); their grains are zlib-compressed, each behind
// a 12-byte marker (lba u64, size u32). Descriptor-only VMDKs (flat, split) and child disks with
// a parent are refused with a note.

import zlib from 'node:zlib';
import type { ByteSource, Disk } from '../source.js';
import { vmError } from '../../errors.js';
import { Lru } from './lru.js';
import { clusterRead, type ClusterMap } from './cluster-reader.js';
import { refusedDisk } from './qcow2.js';

const MAGIC = 0x564d444b; // 'KDMV'
const GD_AT_END = 0xffffffffffffffffn;
const FLAG_COMPRESSED = 1 << 16;

export function isVmdkSparse(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32LE(0) === MAGIC;
}

export function isVmdkDescriptor(head: Buffer): boolean {
  return head.subarray(0, 64).toString('latin1').includes('# Disk DescriptorFile');
}

interface Header {
  flags: number; capacity: number; grainSize: number; descOffset: number; descSize: number;
  gtes: number; gdOffset: bigint; compress: number;
}

function parseHeader(b: Buffer): Header {
  return {
    flags: b.readUInt32LE(8),
    capacity: Number(b.readBigUInt64LE(12)),
    grainSize: Number(b.readBigUInt64LE(20)),
    descOffset: Number(b.readBigUInt64LE(28)),
    descSize: Number(b.readBigUInt64LE(36)),
    gtes: b.readUInt32LE(44),
    gdOffset: b.readBigUInt64LE(56),
    compress: b.readUInt16LE(77),
  };
}

export async function openVmdk(src: ByteSource, head: Buffer): Promise<Disk> {
  if (head.length < 512) return refusedDisk('vmdk', 0, 'vmdk: header truncated');
  let h = parseHeader(head);
  const size = h.capacity * 512;
  if (h.gdOffset === GD_AT_END) {
    if (src.size < 1536) return refusedDisk('vmdk', size, 'vmdk: the footer is missing (truncated stream)');
    const footer = await src.read(src.size - 1024, 512);
    if (footer.length < 512 || footer.readUInt32LE(0) !== MAGIC) {
      return refusedDisk('vmdk', size, 'vmdk: grain directory is at the end but no footer is there (truncated stream)');
    }
    h = parseHeader(footer);
  }
  if (h.descOffset > 0 && h.descSize > 0) {
    const desc = (await src.read(h.descOffset * 512, Math.min(h.descSize * 512, 1 << 20))).toString('latin1');
    const parent = /^\s*parentCID\s*=\s*"?([0-9a-fA-F]+)/m.exec(desc);
    if (parent && parent[1].toLowerCase() !== 'ffffffff') {
      return refusedDisk('vmdk', size, 'vmdk: a child disk of a parent (snapshot delta); only self-contained images are read');
    }
  }
  if (!(h.grainSize >= 1 && (h.grainSize & (h.grainSize - 1)) === 0 && h.grainSize <= 2048) || h.gtes === 0 || h.gtes > 65536) {
    return refusedDisk('vmdk', size, `vmdk: implausible header (grainSize ${h.grainSize} sectors, ${h.gtes} entries per table)`);
  }
  const compressed = (h.flags & FLAG_COMPRESSED) !== 0;
  if (compressed && h.compress !== 1) return refusedDisk('vmdk', size, `vmdk: unknown compression algorithm ${h.compress}`);
  const grainBytes = h.grainSize * 512;
  const gdEntries = Math.ceil(h.capacity / (h.grainSize * h.gtes));
  const gdOff = Number(h.gdOffset) * 512;
  if (gdOff + gdEntries * 4 > src.size) {
    return refusedDisk('vmdk', size, `vmdk: grain directory at ${gdOff} lies past the end of the file (${src.size} bytes): truncated`);
  }
  const gd = await src.read(gdOff, gdEntries * 4);
  const gtCache = new Lru<number, Uint32Array>(512);
  const inflated = new Lru<number, Buffer>(8);

  async function table(i: number): Promise<Uint32Array | undefined> {
    const sector = gd.readUInt32LE(i * 4);
    if (sector === 0) return undefined;
    let t = gtCache.get(sector);
    if (!t) {
      const raw = await src.read(sector * 512, h.gtes * 4);
      if (raw.length < h.gtes * 4) throw vmError('CORRUPT_RECORD', `vmdk: grain table at sector ${sector} lies past the end of the file (truncated)`);
      t = new Uint32Array(h.gtes);
      for (let k = 0; k < h.gtes; k++) t[k] = raw.readUInt32LE(k * 4);
      gtCache.set(sector, t);
    }
    return t;
  }

  async function map(grain: number): Promise<ClusterMap> {
    const t = await table(Math.floor(grain / h.gtes));
    if (!t) return { kind: 'zero' };
    const sector = t[grain % h.gtes];
    if (sector <= 1) return { kind: 'zero' }; // 0: unallocated (no parent), 1: zero grain
    if (!compressed) return { kind: 'data', hostOffset: sector * 512 };
    let buf = inflated.get(sector);
    if (!buf) {
      const marker = await src.read(sector * 512, 12);
      if (marker.length < 12) throw vmError('CORRUPT_RECORD', `vmdk: grain at sector ${sector} lies past the end of the file (truncated)`);
      const len = marker.readUInt32LE(8);
      if (len > grainBytes * 2 + 4096) throw vmError('CORRUPT_RECORD', `vmdk: grain at sector ${sector} claims ${len} compressed bytes for a ${grainBytes}-byte grain: corrupt`);
      const comp = await src.read(sector * 512 + 12, len);
      buf = zlib.inflateSync(comp, { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: grainBytes * 2 });
      if (buf.length < grainBytes) buf = Buffer.concat([buf, Buffer.alloc(grainBytes - buf.length)]);
      inflated.set(sector, buf);
    }
    return { kind: 'compressed', cluster: buf };
  }

  return { format: 'vmdk', size, read: clusterRead(src, size, grainBytes, map) };
}
