// Stand-in until catalog-read's disk readers land (source.ts): raw disks, MBR primary
// partitions and GPT, file systems recognised by their magic. qcow2 and VMDK are recognised
// and refused with a note; LVM is recognised and not opened.

import type { ByteSource, Disk, Volume } from './source.js';

const SECTOR = 512;

class Slice implements Volume {
  constructor(
    private readonly disk: ByteSource,
    readonly diskOffset: number,
    readonly size: number,
    readonly name: string,
    readonly fs: Volume['fs'],
    readonly note?: string,
  ) {}
  async read(offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || length < 0 || offset > this.size) throw Object.assign(new Error(`${this.name}: read at ${offset} outside the volume (${this.size} bytes)`), { code: 'CORRUPT' });
    const n = Math.min(length, this.size - offset);
    return n === 0 ? Buffer.alloc(0) : this.disk.read(this.diskOffset + offset, n);
  }
}

export async function openStandinDisk(file: ByteSource): Promise<Disk> {
  const head = await file.read(0, Math.min(512, file.size));
  if (head.subarray(0, 4).toString('latin1') === 'QFI\xfb') throw Object.assign(new Error('a qcow2 image: not read yet'), { code: 'NOT_SUPPORTED' });
  if (head.subarray(0, 4).toString('latin1') === 'KDMV') throw Object.assign(new Error('a VMDK image: not read yet'), { code: 'NOT_SUPPORTED' });
  return { format: 'raw', size: file.size, path: file.path, read: (o, l) => file.read(o, l) };
}

async function sniff(src: ByteSource): Promise<Volume['fs'] | 'lvm'> {
  if (src.size < 4096) return 'unknown';
  const b = await src.read(0, 4096);
  if (b.readUInt16LE(1024 + 56) === 0xef53) return 'ext';
  if (b.subarray(0, 4).toString('latin1') === 'XFSB') return 'xfs';
  if (b.subarray(3, 11).toString('latin1') === 'NTFS    ') return 'ntfs';
  if (b.subarray(3, 11).toString('latin1') === 'EXFAT   ') return 'exfat';
  if (b.subarray(54, 57).toString('latin1') === 'FAT' || b.subarray(82, 87).toString('latin1') === 'FAT32') return 'fat';
  if (b.subarray(0, 6).toString('latin1') === 'LUKS\xba\xbe') return 'encrypted';
  if (b.subarray(4086, 4096).toString('latin1') === 'SWAPSPACE2') return 'swap';
  if (b.subarray(512, 520).toString('latin1') === 'LABELONE') return 'lvm';
  return 'unknown';
}

async function volumeAt(disk: Disk, start: number, length: number, name: string): Promise<Volume> {
  let note: string | undefined;
  if (start >= disk.size) return new Slice(disk, start, 0, name, 'unknown', `the partition starts at byte ${start}, past the end of the disk (${disk.size} bytes)`);
  if (start + length > disk.size) {
    note = `the partition ends at byte ${start + length}, past the end of the disk (${disk.size} bytes): cut to the disk`;
    length = disk.size - start;
  }
  const probe = new Slice(disk, start, length, name, 'unknown');
  const fs = await sniff(probe);
  if (fs === 'lvm') return new Slice(disk, start, length, name, 'unknown', 'an LVM physical volume: not read yet');
  return new Slice(disk, start, length, name, fs, note ?? (fs === 'unknown' ? 'no known file system' : undefined));
}

export async function findStandinVolumes(disk: Disk): Promise<Volume[]> {
  if (disk.size < SECTOR) return [new Slice(disk, 0, disk.size, 'disk', 'unknown', `${disk.size} bytes: too small to be a disk`)];
  const mbr = await disk.read(0, SECTOR);
  const hasMbr = mbr.readUInt16LE(510) === 0xaa55;
  const fsAt0 = await sniff(disk);
  if (!hasMbr || fsAt0 === 'ntfs' || fsAt0 === 'fat' || fsAt0 === 'exfat') return [await volumeAt(disk, 0, disk.size, 'disk')];
  const parts: Array<{ n: number; type: number; start: number; sectors: number }> = [];
  for (let i = 0; i < 4; i++) {
    const e = mbr.subarray(446 + i * 16, 462 + i * 16);
    const type = e[4];
    if (type !== 0) parts.push({ n: i + 1, type, start: e.readUInt32LE(8), sectors: e.readUInt32LE(12) });
  }
  if (parts.length === 1 && parts[0].type === 0xee) return gpt(disk);
  const out: Volume[] = [];
  for (const p of parts) {
    if (p.type === 0x05 || p.type === 0x0f || p.type === 0x85) continue; // extended: its logical partitions are not read yet
    out.push(await volumeAt(disk, p.start * SECTOR, p.sectors * SECTOR, `p${p.n}`));
  }
  return out;
}

async function gpt(disk: Disk): Promise<Volume[]> {
  const h = await disk.read(SECTOR, SECTOR);
  if (h.subarray(0, 8).toString('latin1') !== 'EFI PART') return [new Slice(disk, 0, disk.size, 'disk', 'unknown', 'a protective MBR without a GPT header')];
  const at = Number(h.readBigUInt64LE(72)) * SECTOR;
  const count = Math.min(h.readUInt32LE(80), 256);
  const size = h.readUInt32LE(84);
  if (size < 128 || size > 4096 || at + count * size > disk.size) return [new Slice(disk, 0, disk.size, 'disk', 'unknown', 'the GPT partition entries lie past the end of the disk')];
  const t = await disk.read(at, count * size);
  const out: Volume[] = [];
  for (let i = 0; i < count; i++) {
    const e = t.subarray(i * size, (i + 1) * size);
    if (e.subarray(0, 16).every((x) => x === 0)) continue;
    const first = Number(e.readBigUInt64LE(32));
    const last = Number(e.readBigUInt64LE(40));
    out.push(await volumeAt(disk, first * SECTOR, Math.max(0, last - first + 1) * SECTOR, `p${i + 1}`));
  }
  return out;
}
