// Packaging the appliance as an OVA: each raw disk image converted to a streamOptimized VMDK,
// the descriptor filled in, the manifest (.mf, SHA256 lines), then one ustar tar with the .ovf
// first, the .mf second, the disks after (DSP0243 1.1 section 5.3). Used by the full build
// (tools/build-appliance.sh) and, on tiny dummy disks, by the tests: one packaging code.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fillOvf, type OvfDisk } from './ovf.js';
import { writeTar } from './tar.js';

export interface OvaInput {
  /** e.g. vmvault-0.1.0: names the .ova, .ovf, .mf and the VMDKs. */
  name: string;
  version: string;
  commit: string;
  memoryMiB: number;
  /** Raw images; ids as in the template's DiskSection ('system', 'data'). */
  disks: Array<{ id: string; raw: string }>;
  template: string;
  outDir: string;
  /** Seconds since the epoch for every tar member (SOURCE_DATE_EPOCH). */
  mtime: number;
}

export interface OvaOutput { ova: string; sha256File: string; sha256: string; ovf: string; vmdks: string[] }

export function sha256File(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(4 << 20);
    let n: number;
    while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/**
 * QEMU writes a random content id (CID=%x, 1 to 8 hex digits) into every VMDK's descriptor; the
 * build puts one derived from `seed` and the VMDK's grains (everything after the descriptor,
 * i.e. the disk's compressed contents) in its place, so two builds of the same disk give the
 * same VMDK. (Hashing the VMDK rather than the raw image: a 100 GiB sparse data disk would be
 * read whole.) The embedded descriptor sits in its own zero-padded sectors
 * (header field desc_offset/desc_size); the line may grow by up to 7 bytes into that padding.
 */
export function pinVmdkCid(vmdk: string, seed: string): void {
  const fd = fs.openSync(vmdk, 'r+');
  try {
    const hdr = Buffer.alloc(512);
    fs.readSync(fd, hdr, 0, 512, 0);
    if (hdr.toString('latin1', 0, 4) !== 'KDMV') throw new Error(`${vmdk}: not a VMDK sparse extent (no KDMV magic)`);
    const descOffset = Number(hdr.readBigUInt64LE(28)) * 512;
    const descSize = Number(hdr.readBigUInt64LE(36)) * 512;
    if (descOffset === 0 || descSize === 0) throw new Error(`${vmdk}: no embedded descriptor`);
    const area = Buffer.alloc(descSize);
    fs.readSync(fd, area, 0, descSize, descOffset);
    const end = area.indexOf(0);
    const text = area.subarray(0, end < 0 ? descSize : end).toString('latin1');
    const h = createHash('sha256').update(seed);
    const buf = Buffer.alloc(4 << 20);
    let pos = descOffset + descSize;
    let n: number;
    while ((n = fs.readSync(fd, buf, 0, buf.length, pos)) > 0) {
      h.update(buf.subarray(0, n));
      pos += n;
    }
    const cid = h.digest('hex').slice(0, 8);
    if (!/\nCID=[0-9a-f]{1,8}\n/.test(text)) throw new Error(`${vmdk}: no CID line in the descriptor`);
    const pinned = Buffer.from(text.replace(/\nCID=[0-9a-f]{1,8}\n/, `\nCID=${cid}\n`), 'latin1');
    if (pinned.length >= descSize) throw new Error(`${vmdk}: the descriptor has no room for an 8-digit CID`);
    const out = Buffer.alloc(descSize);
    pinned.copy(out);
    fs.writeSync(fd, out, 0, descSize, descOffset);
  } finally {
    fs.closeSync(fd);
  }
}

export function virtualSize(image: string, format?: string): number {
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', ...(format ? ['-f', format] : []), image], { encoding: 'utf8' })) as { 'virtual-size': number };
  return info['virtual-size'];
}

export async function makeOva(input: OvaInput): Promise<OvaOutput> {
  fs.mkdirSync(input.outDir, { recursive: true });
  const work = fs.mkdtempSync(path.join(input.outDir, `.${input.name}-`));
  try {
    const disks: OvfDisk[] = [];
    const vmdks: string[] = [];
    for (const d of input.disks) {
      const file = `${input.name}-${d.id}.vmdk`;
      const vmdk = path.join(work, file);
      execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', d.raw, vmdk], { stdio: ['ignore', 'ignore', 'pipe'] });
      pinVmdkCid(vmdk, `${input.name}/${d.id}`);
      const st = fs.statSync(d.raw);
      disks.push({ id: d.id, file, fileSize: fs.statSync(vmdk).size, capacity: virtualSize(vmdk, 'vmdk'), populated: Math.min(st.size, st.blocks * 512) });
      vmdks.push(vmdk);
    }
    const ovfName = `${input.name}.ovf`;
    const ovfPath = path.join(work, ovfName);
    fs.writeFileSync(ovfPath, fillOvf(input.template, { name: input.name, version: input.version, commit: input.commit, memoryMiB: input.memoryMiB, disks }));
    const mfName = `${input.name}.mf`;
    const mfPath = path.join(work, mfName);
    const members = [{ name: ovfName, file: ovfPath }, ...disks.map((d, i) => ({ name: d.file, file: vmdks[i] }))];
    fs.writeFileSync(mfPath, members.map((m) => `SHA256(${m.name})= ${sha256File(m.file)}\n`).join(''));
    const ova = path.join(input.outDir, `${input.name}.ova`);
    const tmpOva = `${ova}.tmp`;
    await writeTar(tmpOva, [members[0], { name: mfName, file: mfPath }, ...members.slice(1)], input.mtime);
    fs.renameSync(tmpOva, ova);
    const sha256 = sha256File(ova);
    const sumFile = `${ova}.sha256`;
    fs.writeFileSync(sumFile, `${sha256}  ${path.basename(ova)}\n`);
    const keptOvf = path.join(input.outDir, ovfName);
    fs.copyFileSync(ovfPath, keptOvf);
    return { ova, sha256File: sumFile, sha256, ovf: keptOvf, vmdks: disks.map((d) => d.file) };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
