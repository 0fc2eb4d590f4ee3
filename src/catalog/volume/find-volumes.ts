// Volumes of a disk: a GPT (protective MBR type 0xEE), an MBR with primary and logical
// partitions (the extended chain of EBRs), or no table at all (the whole disk is one volume
// 'disk'). Partitions holding an LVM2 PV are replaced by the VG's linear LVs (lvm.ts).
// A partition that points past the end of the disk is cut at the end and noted.
// Partition names follow Linux's numbering: p1-p4 primary, p5... logical, GPT by entry index.

import type { ByteSource, Disk, Volume } from '../source.js';
import { sliceSource } from '../file-source.js';
import { detectFs as detectRaw, type Detected } from './detect.js';
import { lvmVolumes } from './lvm.js';

/** A read that fails (a truncated image's tables) makes the volume 'unknown' with the reason, not an error. */
async function detectFs(src: ByteSource): Promise<Detected & { note?: string }> {
  try {
    return await detectRaw(src);
  } catch (err) {
    return { fs: 'unknown', note: `could not be read: ${(err as Error).message}` };
  }
}

interface Part { name: string; start: number; length: number; note?: string }

const EXTENDED = new Set([0x05, 0x0f, 0x85]);

async function gptParts(disk: Disk, sector: number): Promise<Part[] | string> {
  const h = await disk.read(sector, 92);
  if (h.length < 92 || h.subarray(0, 8).toString('latin1') !== 'EFI PART') return 'GPT: protective MBR but no GPT header at LBA 1';
  const entriesLba = Number(h.readBigUInt64LE(72));
  const count = h.readUInt32LE(80);
  const esize = h.readUInt32LE(84);
  if (esize < 128 || count > 4096) return `GPT: implausible entry table (${count} entries of ${esize} bytes)`;
  const tab = await disk.read(entriesLba * sector, count * esize);
  const parts: Part[] = [];
  for (let i = 0; i < count && (i + 1) * esize <= tab.length; i++) {
    const e = tab.subarray(i * esize, (i + 1) * esize);
    if (e.subarray(0, 16).every((x) => x === 0)) continue;
    const first = Number(e.readBigUInt64LE(32));
    const last = Number(e.readBigUInt64LE(40));
    if (last < first) continue;
    parts.push({ name: `p${i + 1}`, start: first * sector, length: (last - first + 1) * sector });
  }
  return parts;
}

async function mbrParts(disk: Disk, mbr: Buffer): Promise<Part[]> {
  const parts: Part[] = [];
  for (let i = 0; i < 4; i++) {
    const e = mbr.subarray(446 + i * 16, 446 + (i + 1) * 16);
    const type = e[4];
    const start = e.readUInt32LE(8) * 512;
    const length = e.readUInt32LE(12) * 512;
    if (type === 0 || length === 0) continue;
    if (EXTENDED.has(type)) {
      // The EBR chain: each EBR's first entry is a logical partition (relative to this EBR),
      // its second points at the next EBR (relative to the extended partition's start).
      let ebr = start;
      let n = 5;
      const seen = new Set<number>();
      while (ebr > 0 && !seen.has(ebr) && n < 5 + 128) {
        seen.add(ebr);
        const b = await disk.read(ebr, 512);
        if (b.length < 512 || b[510] !== 0x55 || b[511] !== 0xaa) {
          parts.push({ name: `p${n}`, start: ebr, length: 0, note: `extended partition: no valid EBR at byte ${ebr}` });
          break;
        }
        const l = b.subarray(446, 462);
        if (l[4] !== 0 && l.readUInt32LE(12) > 0) parts.push({ name: `p${n++}`, start: ebr + l.readUInt32LE(8) * 512, length: l.readUInt32LE(12) * 512 });
        const next = b.subarray(462, 478);
        ebr = EXTENDED.has(next[4]) && next.readUInt32LE(12) > 0 ? start + next.readUInt32LE(8) * 512 : 0;
      }
      continue;
    }
    parts.push({ name: `p${i + 1}`, start, length });
  }
  return parts;
}

export async function findVolumesImpl(disk: Disk): Promise<Volume[]> {
  try {
    return await findVolumesUnchecked(disk);
  } catch (err) {
    const why = `the partition table could not be read: ${(err as Error).message}`;
    return [{ name: 'disk', fs: 'unknown', size: 0, read: async () => Buffer.alloc(0), note: disk.note ? `${disk.note}; ${why}` : why }];
  }
}

async function findVolumesUnchecked(disk: Disk): Promise<Volume[]> {
  if (disk.note && disk.size === 0) return [{ name: 'disk', fs: 'unknown', size: 0, read: async () => Buffer.alloc(0), note: disk.note }];
  const mbr = await disk.read(0, 512);
  let parts: Part[] = [];
  let tableNote: string | undefined;
  const hasMbr = mbr.length === 512 && mbr[510] === 0x55 && mbr[511] === 0xaa;
  const types = hasMbr ? [0, 1, 2, 3].map((i) => mbr[446 + i * 16 + 4]) : [];
  // A FAT/NTFS boot sector also ends in 55 AA: it is a table only if the entries look like one.
  const bootSector = hasMbr && (mbr.subarray(3, 11).toString('latin1') === 'NTFS    ' || mbr.subarray(3, 11).toString('latin1') === 'EXFAT   ' ||
    mbr.subarray(82, 87).toString('latin1') === 'FAT32' || mbr.subarray(54, 57).toString('latin1') === 'FAT');
  if (hasMbr && !bootSector && types.some((t) => t !== 0)) {
    if (types.includes(0xee)) {
      const g = await gptParts(disk, 512);
      if (typeof g === 'string') tableNote = g;
      else parts = g;
    } else {
      parts = await mbrParts(disk, mbr);
    }
  }
  if (parts.length === 0) {
    const d = await detectFs(disk);
    if (d.lvm) return lvmVolumes(disk, 'disk', 0);
    const whole: Volume = { ...(sliceSource(disk, 0, disk.size)), name: 'disk', fs: d.fs, extents: [{ diskOffset: 0, length: disk.size }] };
    const notes = [disk.note, tableNote, d.note ?? (d.fs === 'unknown' && disk.size > 0 ? 'no partition table and no known filesystem' : undefined)].filter(Boolean);
    return [{ ...whole, ...(d.label ? { label: d.label } : {}), ...(notes.length ? { note: notes.join('; ') } : {}) }];
  }
  const out: Volume[] = [];
  for (const p of parts) {
    let note = p.note;
    let length = p.length;
    if (p.start >= disk.size) {
      out.push({ name: p.name, fs: 'unknown', size: 0, read: async () => Buffer.alloc(0), note: `partition starts at byte ${p.start}, past the end of the disk (${disk.size} bytes)` });
      continue;
    }
    if (p.start + length > disk.size) {
      note = `partition ends at byte ${p.start + length}, past the end of the disk (${disk.size} bytes); read up to the end`;
      length = disk.size - p.start;
    }
    const src = sliceSource(disk, p.start, length);
    const d = await detectFs(src);
    if (d.lvm) {
      out.push(...await lvmVolumes(src, p.name, p.start));
      continue;
    }
    const notes = [disk.note, note, d.note].filter(Boolean);
    out.push({
      ...src, name: p.name, fs: d.fs, extents: [{ diskOffset: p.start, length }],
      ...(d.label ? { label: d.label } : {}), ...(notes.length ? { note: notes.join('; ') } : {}),
    });
  }
  return out;
}
