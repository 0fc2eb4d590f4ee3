// The OVA's packaging and its static check (tools/appliance/), on a tiny OVA made from dummy
// disks by the same code as the real build: the descriptor validates against the DMTF schema
// offline, a broken one is refused by the same check, and the check catches a wrong member
// order, a changed byte, a wrong size and a wrong capacity. Needs qemu-img and xmllint.

import t from 'tap';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkOva, validateOvf } from '../tools/appliance/check-ova.js';
import { makeOva } from '../tools/appliance/ova.js';
import { loadTemplate } from '../tools/appliance/ovf.js';
import { listTar, writeTar } from '../tools/appliance/tar.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

async function tinyOva(dir: string, name = 'vmvault-0.0.0-test'): Promise<string> {
  const system = path.join(dir, 'system.raw');
  const data = path.join(dir, 'data.raw');
  const buf = Buffer.alloc(3 << 20);
  randomBytes(1 << 20).copy(buf, 1 << 20);
  fs.writeFileSync(system, buf);
  fs.writeFileSync(data, '');
  fs.truncateSync(data, 64 << 20);
  const r = await makeOva({ name, version: '0.0.0', commit: 'abc1234', memoryMiB: 1024, disks: [{ id: 'system', raw: system }, { id: 'data', raw: data }],
    template: loadTemplate(path.join(repo, 'ovf', 'vmvault.ovf.in')), outDir: path.join(dir, 'out'), mtime: 1_700_000_000 });
  return r.ova;
}

t.test('a tiny OVA passes every check', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-ova-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ova = await tinyOva(dir);
  const r = checkOva(ova);
  t.same(r.problems, []);
  t.same(r.members.map((m) => m.name), ['vmvault-0.0.0-test.ovf', 'vmvault-0.0.0-test.mf', 'vmvault-0.0.0-test-system.vmdk', 'vmvault-0.0.0-test-data.vmdk']);
  t.match(r.checks.join('\n'), /validates against the OVF 1.1.1 schema/);
  t.match(r.checks.join('\n'), /Disk system: .* capacity 3145728, streamOptimized, qemu-img check clean/);
  t.match(r.checks.join('\n'), /Disk data: .* capacity 67108864/);
  t.equal(fs.readFileSync(`${ova}.sha256`, 'utf8').split('  ')[1], 'vmvault-0.0.0-test.ova\n');

  // Same inputs, same bytes: the tar time is fixed, the VMDK's random CID pinned.
  const dir2 = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-ova-'));
  t.teardown(() => fs.rmSync(dir2, { recursive: true, force: true }));
  fs.copyFileSync(path.join(dir, 'system.raw'), path.join(dir2, 'system.raw'));
  fs.writeFileSync(path.join(dir2, 'data.raw'), '');
  fs.truncateSync(path.join(dir2, 'data.raw'), 64 << 20);
  const r2 = await makeOva({ name: 'vmvault-0.0.0-test', version: '0.0.0', commit: 'abc1234', memoryMiB: 1024,
    disks: [{ id: 'system', raw: path.join(dir2, 'system.raw') }, { id: 'data', raw: path.join(dir2, 'data.raw') }],
    template: loadTemplate(path.join(repo, 'ovf', 'vmvault.ovf.in')), outDir: path.join(dir2, 'out'), mtime: 1_700_000_000 });
  t.equal(fs.readFileSync(r2.sha256File, 'utf8'), fs.readFileSync(`${ova}.sha256`, 'utf8'), 'two packagings of the same disks are byte-identical');
});

t.test('a descriptor with a broken section is refused by the schema check', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-ovf-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ova = await tinyOva(dir);
  const good = fs.readFileSync(path.join(dir, 'out', 'vmvault-0.0.0-test.ovf'), 'utf8');
  const f = path.join(dir, 'x.ovf');
  fs.writeFileSync(f, good);
  t.equal(validateOvf(f), undefined, 'the real descriptor validates');
  fs.writeFileSync(f, good.replace(/<Info>The network[^<]*<\/Info>/, ''));
  t.match(validateOvf(f), /NetworkSection|Network'?: This element is not expected|Expected is/, 'NetworkSection without Info: refused');
  fs.writeFileSync(f, good.replace('<rasd:ResourceType>17</rasd:ResourceType>', '<rasd:ResourceType>disk</rasd:ResourceType>'));
  t.match(validateOvf(f), /ResourceType/, 'a wrong RASD type: refused');

  // The same refusal through the whole OVA check: an OVA whose descriptor lacks an Info.
  const members = listTar(ova);
  const parts = path.join(dir, 'parts');
  fs.mkdirSync(parts);
  const fd = fs.openSync(ova, 'r');
  for (const m of members) {
    const b = Buffer.alloc(m.size);
    fs.readSync(fd, b, 0, m.size, m.offset);
    fs.writeFileSync(path.join(parts, m.name), b);
  }
  fs.closeSync(fd);
  const ovfFile = path.join(parts, members[0].name);
  fs.writeFileSync(ovfFile, good.replace(/<Info>The network[^<]*<\/Info>/, ''));
  const broken = path.join(dir, 'broken.ova');
  await writeTar(broken, members.map((m) => ({ name: m.name, file: path.join(parts, m.name) })), 0);
  const r = checkOva(broken, { qemuCheck: false });
  t.match(r.problems.join('\n'), /does not validate against DSP8023/);
  t.match(r.problems.join('\n'), /vmvault-0\.0\.0-test\.ovf: SHA256 differs/, 'and the manifest no longer matches');

  // Wrong order (.mf first), a wrong ovf:size, a wrong capacity.
  const swapped = path.join(dir, 'swapped.ova');
  await writeTar(swapped, [members[1], members[0], ...members.slice(2)].map((m) => ({ name: m.name, file: path.join(parts, m.name) })), 0);
  t.match(checkOva(swapped).problems, [/first tar member must be the \.ovf/, /second tar member must be the \.mf/]);
  fs.writeFileSync(ovfFile, good.replace(/(ovf:id="file-data" ovf:href="[^"]+" ovf:size=")(\d+)"/, (_, a, n) => `${a}${Number(n) + 1}"`).replace(/ovf:capacity="67108864"/, 'ovf:capacity="1048576"'));
  const lying = path.join(dir, 'lying.ova');
  await writeTar(lying, members.map((m) => ({ name: m.name, file: path.join(parts, m.name) })), 0);
  const lp = checkOva(lying, { qemuCheck: false }).problems.join('\n');
  t.match(lp, /File file-data: ovf:size \d+ but vmvault-0\.0\.0-test-data\.vmdk has \d+ bytes/);
  t.match(lp, /Disk data: ovf:capacity 1048576 but vmvault-0\.0\.0-test-data\.vmdk holds 67108864 bytes/);
});
