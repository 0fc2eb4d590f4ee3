// qcow2 (v2 and v3) read by its own tables: header -> L1 table -> L2 tables -> clusters.
// Spec: qemu's docs/interop/qcow2.txt. Unallocated clusters read as zeros (a backing file is
// refused, so there is nothing beneath); compressed clusters are raw deflate (zlib) and inflated
// one cluster at a time; zstd-compressed images and encrypted ones are refused with a note.

import zlib from 'node:zlib';
import type { ByteSource, Disk } from '../source.js';
import { vmError } from '../../errors.js';
import { Lru } from './lru.js';
import { clusterRead, type ClusterMap } from './cluster-reader.js';

const OFFSET_MASK = 0x00fffffffffffe00n; // bits 9-55
const COMPRESSED = 1n << 62n;
const ZERO_FLAG = 1n; // v3: reads as zeros

function u64(b: Buffer, at: number): number {
  return Number(b.readBigUInt64BE(at));
}

export function isQcow2(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32BE(0) === 0x514649fb;
}

/** A disk that cannot be served: size known (or 0), every read zeros, `note` says why. */
export function refusedDisk(format: Disk['format'], size: number, note: string): Disk {
  return { format, size, note, read: async (_o, l) => Buffer.alloc(Math.max(0, Math.min(l, size - _o))) };
}

export async function openQcow2(src: ByteSource, head: Buffer): Promise<Disk> {
  if (head.length < 72) return refusedDisk('qcow2', 0, 'qcow2: header truncated');
  const version = head.readUInt32BE(4);
  if (version !== 2 && version !== 3) return refusedDisk('qcow2', 0, `qcow2: unknown version ${version}`);
  const size = u64(head, 24);
  const clusterBits = head.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21) return refusedDisk('qcow2', size, `qcow2: cluster_bits ${clusterBits} out of range`);
  const backingOffset = u64(head, 8);
  if (backingOffset !== 0) return refusedDisk('qcow2', size, 'qcow2: has a backing file; only self-contained images are read');
  if (head.readUInt32BE(32) !== 0) return refusedDisk('qcow2', size, 'qcow2: encrypted; its content cannot be read');
  if (version === 3 && head.length >= 104) {
    const incompatible = head.readBigUInt64BE(72);
    const headerLength = head.readUInt32BE(100);
    if (incompatible & (1n << 2n)) return refusedDisk('qcow2', size, 'qcow2: external data file not supported');
    if (incompatible & (1n << 4n)) return refusedDisk('qcow2', size, 'qcow2: extended L2 entries (subclusters) not supported');
    if (incompatible & ~((1n << 0n) | (1n << 1n) | (1n << 3n))) return refusedDisk('qcow2', size, `qcow2: unknown incompatible features 0x${incompatible.toString(16)}`);
    if ((incompatible & (1n << 3n)) && headerLength > 104 && head[104] !== 0) {
      return refusedDisk('qcow2', size, 'qcow2: zstd-compressed clusters not supported (only zlib)');
    }
  }
  const clusterSize = 2 ** clusterBits;
  const l2Entries = clusterSize / 8;
  const l1Size = head.readUInt32BE(36);
  const l1Offset = u64(head, 40);
  if (l1Size > 4 * 1024 * 1024 || l1Offset + l1Size * 8 > src.size) {
    return refusedDisk('qcow2', size, `qcow2: L1 table (${l1Size} entries at ${l1Offset}) lies past the end of the file (${src.size} bytes): truncated`);
  }
  const l1raw = await src.read(l1Offset, l1Size * 8);
  const l1 = new BigUint64Array(l1Size);
  for (let i = 0; i < l1Size; i++) l1[i] = l1raw.readBigUInt64BE(i * 8);

  const l2Cache = new Lru<number, BigUint64Array>(256); // 256 tables: 16 MiB at 64 KiB clusters
  const inflated = new Lru<number, Buffer>(8);
  const x = BigInt(62 - (clusterBits - 8));
  const compOffsetMask = (1n << x) - 1n;

  async function l2Table(off: number): Promise<BigUint64Array> {
    let t = l2Cache.get(off);
    if (!t) {
      const raw = await src.read(off, clusterSize);
      if (raw.length < clusterSize) throw vmError('CORRUPT_RECORD', `qcow2: L2 table at ${off} lies past the end of the file (truncated)`);
      t = new BigUint64Array(l2Entries);
      for (let i = 0; i < l2Entries; i++) t[i] = raw.readBigUInt64BE(i * 8);
      l2Cache.set(off, t);
    }
    return t;
  }

  async function map(cluster: number): Promise<ClusterMap> {
    const l1i = Math.floor(cluster / l2Entries);
    if (l1i >= l1Size) return { kind: 'zero' };
    const l2off = Number(l1[l1i] & OFFSET_MASK);
    if (l2off === 0) return { kind: 'zero' };
    const e = (await l2Table(l2off))[cluster % l2Entries];
    if (e & COMPRESSED) {
      const host = Number(e & compOffsetMask);
      let buf = inflated.get(host);
      if (!buf) {
        const sectors = Number((e >> x) & ((1n << (62n - x)) - 1n)) + 1;
        const len = sectors * 512 - (host & 511);
        const comp = await src.read(host, len);
        buf = zlib.inflateRawSync(comp, { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: clusterSize * 2 });
        if (buf.length < clusterSize) buf = Buffer.concat([buf, Buffer.alloc(clusterSize - buf.length)]);
        inflated.set(host, buf);
      }
      return { kind: 'compressed', cluster: buf };
    }
    if (version === 3 && (e & ZERO_FLAG)) return { kind: 'zero' };
    const host = Number(e & OFFSET_MASK);
    if (host === 0) return { kind: 'zero' };
    return { kind: 'data', hostOffset: host };
  }

  return { format: 'qcow2', size, read: clusterRead(src, size, clusterSize, map) };
}
