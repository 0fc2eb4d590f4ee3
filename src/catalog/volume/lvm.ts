// LVM2 on one PV: the label (LABELONE / LVM2 001 in one of the first four sectors), the PV
// header's metadata area, its circular buffer's current text metadata (the mda_header's first
// raw_locn), and each logical volume's segments. Linear segments (type "striped" with one
// stripe) on this PV are stitched into one volume, however many; other segment types (RAID,
// thin, mirrors, several stripes) and extents on other PVs make a volume noted and unread.
// Format: lvm2's lib/format_text/layout.h and the text metadata grammar (`name = value`,
// `name { ... }`, arrays in brackets).

import type { ByteSource, FsKind, Volume } from '../source.js';
import { detectFs } from './detect.js';

type Value = string | number | Value[] | Section;
interface Section { [k: string]: Value }

/** The metadata text's grammar: sections, assignments, strings, numbers, arrays; # comments. */
export function parseLvmText(text: string): Section {
  const tokens = text.replace(/#[^\n"]*(?=\n|$)/g, '').match(/"(?:[^"\\]|\\.)*"|[{}[\]=,]|[^\s{}[\]=,"]+/g) ?? [];
  let i = 0;
  const value = (): Value => {
    const t = tokens[i++];
    if (t === '[') {
      const arr: Value[] = [];
      while (i < tokens.length && tokens[i] !== ']') {
        if (tokens[i] === ',') { i++; continue; }
        arr.push(value());
      }
      i++;
      return arr;
    }
    if (t.startsWith('"')) return t.slice(1, -1).replace(/\\(.)/g, '$1');
    const n = Number(t);
    return Number.isFinite(n) ? n : t;
  };
  const section = (): Section => {
    const s: Section = {};
    while (i < tokens.length && tokens[i] !== '}') {
      const name = tokens[i++];
      if (tokens[i] === '{') { i++; s[name] = section(); i++; }
      else if (tokens[i] === '=') { i++; s[name] = value(); }
    }
    return s;
  };
  return section();
}

function noteVol(name: string, note: string): Volume {
  return { name, fs: 'unknown', size: 0, read: async () => Buffer.alloc(0), note };
}

/** LVs of the VG whose PV is `pv` (at byte `pvDiskOffset` of the disk); `name` names the PV on failure. */
export async function lvmVolumes(pv: ByteSource, name: string, pvDiskOffset: number): Promise<Volume[]> {
  const head = await pv.read(0, 2048);
  let label = -1;
  for (let s = 0; s < 4; s++) if (head.subarray(s * 512, s * 512 + 8).toString('latin1') === 'LABELONE') label = s * 512;
  if (label < 0) return [noteVol(name, 'LVM2: no PV label')];
  const pvh = label + head.readUInt32LE(label + 20);
  // pv_header: uuid[32], device_size u64, then data-area list, then metadata-area list, each
  // of {offset u64, size u64} ended by a zero pair.
  let at = pvh + 40;
  while (at + 16 <= head.length && head.readBigUInt64LE(at) !== 0n) at += 16;
  at += 16;
  const mdas: number[] = [];
  while (at + 16 <= head.length && head.readBigUInt64LE(at) !== 0n) { mdas.push(Number(head.readBigUInt64LE(at))); at += 16; }
  if (mdas.length === 0) return [noteVol(name, 'LVM2: this PV holds no metadata area (the VG metadata is on another PV)')];
  const mh = await pv.read(mdas[0], 512);
  if (mh.subarray(4, 20).toString('latin1') !== ' LVM2 x[5A%r0N*>') return [noteVol(name, 'LVM2: metadata area header has a bad magic')];
  const mdaSize = Number(mh.readBigUInt64LE(32));
  const textOff = Number(mh.readBigUInt64LE(40));
  const textLen = Number(mh.readBigUInt64LE(48));
  if (textOff === 0 || textLen === 0) return [noteVol(name, 'LVM2: metadata area is empty')];
  // The text may wrap round the circular buffer (which starts 512 bytes into the area).
  let raw: Buffer;
  if (textOff + textLen <= mdaSize) raw = await pv.read(mdas[0] + textOff, textLen);
  else {
    const first = mdaSize - textOff;
    raw = Buffer.concat([await pv.read(mdas[0] + textOff, first), await pv.read(mdas[0] + 512, textLen - first)]);
  }
  const text = raw.toString('utf8').replace(/\0+$/, '');
  let meta: Section;
  try { meta = parseLvmText(text); } catch { return [noteVol(name, 'LVM2: metadata text could not be parsed')]; }
  const vgName = Object.keys(meta).find((k) => typeof meta[k] === 'object' && !Array.isArray(meta[k]));
  if (!vgName) return [noteVol(name, 'LVM2: no volume group in the metadata')];
  const vg = meta[vgName] as Section;
  const extentBytes = Number(vg.extent_size) * 512;
  const pvs = (vg.physical_volumes ?? {}) as Section;
  // This PV is the one whose uuid matches the label's (the label stores it without dashes).
  const myUuid = head.subarray(pvh, pvh + 32).toString('latin1');
  const pvKey = Object.keys(pvs).find((k) => String((pvs[k] as Section).id).replace(/-/g, '') === myUuid);
  if (!pvKey) return [noteVol(name, `LVM2: VG ${vgName} does not list this PV`)];
  const peStart = Number((pvs[pvKey] as Section).pe_start) * 512;
  const lvs = (vg.logical_volumes ?? {}) as Section;
  const out: Volume[] = [];
  for (const lvName of Object.keys(lvs)) {
    const lv = lvs[lvName] as Section;
    const vname = `lvm-${vgName}-${lvName}`;
    const status = Array.isArray(lv.status) ? lv.status.map(String) : [];
    if (!status.includes('VISIBLE')) continue; // internal LVs (thin pools' metadata, RAID legs)
    const ranges: Array<{ offset: number; length: number }> = [];
    let problem: string | undefined;
    const segs = Object.keys(lv).filter((k) => /^segment\d+$/.test(k)).map((k) => lv[k] as Section)
      .sort((a, b) => Number(a.start_extent) - Number(b.start_extent));
    let expect = 0;
    for (const seg of segs) {
      const stripes = seg.stripes as Value[];
      if (seg.type !== 'striped' || Number(seg.stripe_count) !== 1 || !Array.isArray(stripes)) { problem = `segment type ${String(seg.type)}${seg.type === 'striped' ? ` with ${String(seg.stripe_count)} stripes` : ''} is not read (only linear)`; break; }
      if (stripes[0] !== pvKey) { problem = `extents on another PV (${String(stripes[0])}) are not on this disk`; break; }
      if (Number(seg.start_extent) !== expect) { problem = 'segments leave a gap'; break; }
      const count = Number(seg.extent_count);
      ranges.push({ offset: peStart + Number(stripes[1]) * extentBytes, length: count * extentBytes });
      expect += count;
    }
    if (problem) { out.push(noteVol(vname, `LVM2: ${problem}`)); continue; }
    const size = ranges.reduce((s, r) => s + r.length, 0);
    const src = stitched(pv, ranges, size);
    const d = await detectFs(src);
    const fs: FsKind = d.lvm ? 'unknown' : d.fs;
    out.push({ ...src, name: vname, fs, extents: ranges.map((r) => ({ diskOffset: pvDiskOffset + r.offset, length: r.length })), ...(d.label ? { label: d.label } : {}) });
  }
  if (out.length === 0) out.push(noteVol(name, `LVM2: VG ${vgName} has no logical volumes`));
  return out;
}

/** One byte source over ranges of another, in order; a single range keeps the path (a plain offset). */
function stitched(pv: ByteSource, ranges: Array<{ offset: number; length: number }>, size: number): ByteSource {
  const read = async (offset: number, length: number): Promise<Buffer> => {
    const end = Math.min(size, offset + length);
    const parts: Buffer[] = [];
    let base = 0;
    for (const r of ranges) {
      const lo = Math.max(offset, base), hi = Math.min(end, base + r.length);
      if (lo < hi) parts.push(await pv.read(r.offset + lo - base, hi - lo));
      base += r.length;
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  };
  if (ranges.length === 1 && pv.path !== undefined) return { size, read, path: pv.path, pathOffset: (pv.pathOffset ?? 0) + ranges[0].offset };
  return { size, read };
}
