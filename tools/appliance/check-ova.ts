// The static checks of an OVA (npm run appliance:check runs them before booting it; the tests
// run them on a tiny OVA): tar layout, schema, manifest hashes, sizes and capacities, and each
// disk's own check (qemu-img check, streamOptimized create type). The disks are read in place
// inside the tar (QEMU's raw driver with an offset), so nothing is extracted.

import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describedFiles } from './ovf.js';
import { listTar, type TarMember } from './tar.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/**
 * The DMTF OVF 1.1.1 schema and the schemas it imports, shipped in appliance/ovf-schema so a clean
 * checkout validates offline (CI's checkout has nothing beside it); VMVAULT_OVF_SCHEMA_DIR wins.
 */
export function schemaDir(): string {
  const candidates = [process.env.VMVAULT_OVF_SCHEMA_DIR, path.join(repo, 'appliance', 'ovf-schema')];
  for (const c of candidates) if (c && fs.existsSync(path.join(c, 'dsp8023_1.1.1.xsd'))) return c;
  throw new Error(`the OVF schema (dsp8023_1.1.1.xsd) is in none of ${candidates.filter(Boolean).join(', ')}: set VMVAULT_OVF_SCHEMA_DIR`);
}

/** xmllint against the DMTF schema, offline. Returns undefined when valid, else xmllint's complaint. */
export function validateOvf(file: string, schema = schemaDir()): string | undefined {
  const r = spawnSync('xmllint', ['--nonet', '--noout', '--schema', path.join(schema, 'dsp8023_1.1.1.xsd'), file], { encoding: 'utf8' });
  if (r.error) throw new Error(`xmllint: ${r.error.message} (Debian package libxml2-utils)`);
  if (r.status === 0) return undefined;
  return r.stderr.split('\n').filter((l) => l !== '' && !/Skipping import/.test(l)).join('\n') || `xmllint exit ${r.status}`;
}

function readMember(ova: string, m: TarMember): Buffer {
  const fd = fs.openSync(ova, 'r');
  try {
    const b = Buffer.alloc(m.size);
    fs.readSync(fd, b, 0, m.size, m.offset);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

function hashMember(ova: string, m: TarMember): string {
  const h = createHash('sha256');
  const fd = fs.openSync(ova, 'r');
  try {
    const buf = Buffer.alloc(4 << 20);
    let pos = 0;
    while (pos < m.size) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, m.size - pos), m.offset + pos);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** A QEMU image name for a member read in place: the vmdk driver over a raw window of the OVA. */
export function memberImage(ova: string, m: TarMember): string {
  return 'json:' + JSON.stringify({ driver: 'vmdk', file: { driver: 'raw', offset: m.offset, size: m.size, file: { driver: 'file', filename: path.resolve(ova) } } });
}

export interface OvaReport { problems: string[]; checks: string[]; members: TarMember[] }

export function checkOva(ova: string, opts: { schema?: string; qemuCheck?: boolean } = {}): OvaReport {
  const problems: string[] = [];
  const checks: string[] = [];
  const members = listTar(ova);
  const names = members.map((m) => m.name);
  const ovfM = members[0];
  const mfM = members[1];
  if (!ovfM || !ovfM.name.endsWith('.ovf')) problems.push(`the first tar member must be the .ovf descriptor, not ${ovfM?.name ?? 'nothing'}`);
  if (!mfM || !mfM.name.endsWith('.mf')) problems.push(`the second tar member must be the .mf manifest, not ${mfM?.name ?? 'nothing'}`);
  for (const m of members) {
    if (m.magic !== 'ustar\0') problems.push(`${m.name}: not a ustar header (magic ${JSON.stringify(m.magic)})`);
    if (m.type !== '0') problems.push(`${m.name}: not a regular file (type ${m.type})`);
    if (m.name.includes('/')) problems.push(`${m.name}: OVA members are plain names, no directories`);
  }
  for (const m of members.slice(2)) if (!m.name.endsWith('.vmdk')) problems.push(`${m.name}: after the .ovf and .mf only disks (.vmdk) are expected`);
  if (new Set(names).size !== names.length) problems.push(`a member appears twice: ${names.join(', ')}`);
  checks.push(`tar layout: ${names.join(', ')}`);
  if (problems.length > 0 || !ovfM || !mfM) return { problems, checks, members };

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-ova-check-'));
  try {
    const ovfText = readMember(ova, ovfM).toString('utf8');
    const ovfFile = path.join(tmp, ovfM.name);
    fs.writeFileSync(ovfFile, ovfText);
    const invalid = validateOvf(ovfFile, opts.schema);
    if (invalid !== undefined) problems.push(`${ovfM.name} does not validate against DSP8023 1.1.1: ${invalid}`);
    else checks.push(`${ovfM.name} validates against the OVF 1.1.1 schema`);

    // Manifest: one SHA256 line for every other member, and each hash right.
    const listed = new Map<string, string>();
    for (const line of readMember(ova, mfM).toString('utf8').split('\n')) {
      if (line === '') continue;
      const m = /^SHA256\(([^)]+)\)= ([0-9a-f]{64})$/.exec(line);
      if (!m) {
        problems.push(`${mfM.name}: not a SHA256 line: ${JSON.stringify(line)}`);
        continue;
      }
      listed.set(m[1], m[2]);
    }
    for (const m of members) {
      if (m === mfM) continue;
      const want = listed.get(m.name);
      if (want === undefined) problems.push(`${mfM.name} does not list ${m.name}`);
      else if (hashMember(ova, m) !== want) problems.push(`${m.name}: SHA256 differs from ${mfM.name}`);
      listed.delete(m.name);
    }
    for (const extra of listed.keys()) problems.push(`${mfM.name} lists ${extra}, which is not in the OVA`);
    checks.push(`manifest: ${members.length - 1} SHA256 line(s) checked`);

    // Descriptor against the tar: sizes, references, capacities, disk formats.
    const { files, disks } = describedFiles(ovfText);
    const byName = new Map(members.map((m) => [m.name, m]));
    for (const f of files) {
      const m = byName.get(f.href);
      if (!m) problems.push(`File ${f.id} names ${f.href}, which is not in the OVA`);
      else if (m.size !== f.size) problems.push(`File ${f.id}: ovf:size ${f.size} but ${f.href} has ${m.size} bytes`);
    }
    for (const m of members.slice(2)) if (!files.some((f) => f.href === m.name)) problems.push(`${m.name} is in the OVA but no File references it`);
    for (const d of disks) {
      const f = files.find((x) => x.id === d.fileRef);
      const m = f && byName.get(f.href);
      if (!f || !m) {
        problems.push(`Disk ${d.diskId}: fileRef ${d.fileRef} names no File in the OVA`);
        continue;
      }
      if (d.units !== 'byte') problems.push(`Disk ${d.diskId}: capacityAllocationUnits ${d.units}, expected byte`);
      if (!d.format.endsWith('#streamOptimized')) problems.push(`Disk ${d.diskId}: ovf:format ${d.format} is not streamOptimized`);
      const head = readMember(ova, { ...m, size: Math.min(m.size, 64 * 1024) }).toString('latin1');
      const createType = /createType="([^"]+)"/.exec(head)?.[1];
      if (createType !== 'streamOptimized') problems.push(`${m.name}: createType ${createType ?? '(none)'}, expected streamOptimized`);
      const image = memberImage(ova, m);
      const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', image], { encoding: 'utf8' })) as { 'virtual-size': number };
      if (info['virtual-size'] !== d.capacity) problems.push(`Disk ${d.diskId}: ovf:capacity ${d.capacity} but ${m.name} holds ${info['virtual-size']} bytes`);
      if (opts.qemuCheck !== false) {
        const r = spawnSync('qemu-img', ['check', image], { encoding: 'utf8' });
        if (r.status !== 0) problems.push(`${m.name}: qemu-img check failed (exit ${r.status}): ${(r.stdout + r.stderr).trim()}`);
      }
      checks.push(`Disk ${d.diskId}: ${m.name}, ${m.size} bytes, capacity ${d.capacity}, ${createType}${opts.qemuCheck !== false ? ', qemu-img check clean' : ''}`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return { problems, checks, members };
}
