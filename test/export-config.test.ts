// The pure parts of src/export/: client allow-lists, exports.json, and the configs generated for
// ganesha and Samba (the servers themselves: export-servers.test.ts).

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { normalizeCidr, parseClients } from '../src/export/cidr.js';
import { readExports, writeExports } from '../src/export/exports-file.js';
import { ganeshaConfig } from '../src/export/ganesha.js';
import { smbConfig } from '../src/export/samba.js';
import { checkExportable } from '../src/export/export-service.js';
import { isVmvaultError } from '../src/errors.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('CIDR networks are parsed strictly and written canonically', async (t) => {
  t.equal(normalizeCidr('10.0.0.0/24'), '10.0.0.0/24');
  t.equal(normalizeCidr(' 192.0.2.7 '), '192.0.2.7/32');
  t.equal(normalizeCidr('0.0.0.0/0'), '0.0.0.0/0');
  t.equal(normalizeCidr('2001:DB8:0:0::/32'), '2001:db8::/32');
  t.equal(normalizeCidr('::1'), '::1/128');
  t.equal(normalizeCidr('::ffff:10.0.0.1/128'), '::ffff:a00:1/128');
  for (const [bad, why] of [
    ['10.0.0.0/33', /prefix length/],
    ['10.0.0.1/24', /did you mean 10\.0\.0\.0\/24/],
    ['10.0.0/24', /not an IPv4 or IPv6 address/],
    ['host.example', /not an IPv4 or IPv6 address/],
    ['10.0.0.0/', /prefix length/],
    ['10.0.0.0/+8', /prefix length/],
    ['', /not an address/],
    ['2001:db8::1/64', /did you mean 2001:db8::\/64/],
  ] as const) {
    let err: unknown;
    try {
      normalizeCidr(bad);
    } catch (e) {
      err = e;
    }
    t.ok(isVmvaultError(err) && err.code === 'INVALID_ARGUMENT', `${JSON.stringify(bad)} refused with INVALID_ARGUMENT`);
    t.match((err as Error)?.message, why);
  }
  t.same(parseClients('10.0.0.0/24, 10.0.0.0/24,192.0.2.7'), ['10.0.0.0/24', '192.0.2.7/32'], 'a CLI list, deduplicated');
  t.throws(() => parseClients([]), /empty/);
  t.throws(() => parseClients(Array.from({ length: 65 }, (_, i) => `10.0.${i}.0/24`)), /limit is 64/);
  t.throws(() => parseClients(5), /list of CIDR/);
});

t.test('only config-safe share names are exported', async (t) => {
  for (const ok of ['vms', 'vm-01', 'a.b_c']) t.doesNotThrow(() => checkExportable(ok), ok);
  for (const bad of ['with space', 'quote"d', 'semi;colon', 'br]acket', '-lead', 'x'.repeat(81), 'ünï']) {
    t.throws(() => checkExportable(bad), /cannot be exported/, JSON.stringify(bad));
  }
});

t.test('exports.json round-trips, refuses damage and newer versions', async (t) => {
  const dir = tmpDir(t);
  t.same(await readExports(dir), { nfs: [], smb: [] }, 'absent: no exports');
  const rec = { nfs: [{ share: 'vms', clients: ['10.0.0.0/24'], exportId: 3, enabledAt: '2026-01-01T00:00:00.000Z' }], smb: [], smbUser: 'root', nextExportId: 4 };
  await writeExports(dir, rec);
  t.same(await readExports(dir), rec);
  t.equal(fs.statSync(path.join(dir, 'exports.json')).mode & 0o777, 0o600);
  fs.writeFileSync(path.join(dir, 'exports.json'), '{"version": 2, "nfs": [], "smb": []}');
  await t.rejects(readExports(dir), { code: 'UNSUPPORTED_FORMAT' });
  fs.writeFileSync(path.join(dir, 'exports.json'), '{"version": 1, "nfs": [{"share": "x", "clients": [], "enabledAt": "t"}], "smb": []}');
  await t.rejects(readExports(dir), { code: 'CORRUPT_RECORD', message: /exportId/ });
  fs.writeFileSync(path.join(dir, 'exports.json'), '{"version": 1, "nfs": [');
  await t.rejects(readExports(dir), { code: 'CORRUPT_RECORD', message: /not valid JSON/ });
});

t.test('generated configs: one export per share with its clients', async (t) => {
  const entries = [
    { share: 'vms', clients: ['10.0.0.0/24', '192.0.2.7/32'], exportId: 1, enabledAt: 'x' },
    { share: 'lab', clients: ['127.0.0.1/32'], exportId: 7, enabledAt: 'x' },
  ];
  const g = ganeshaConfig({ dir: '/d/nfs', mount: '/m', port: 2049, mountPort: 20048, bind: '0.0.0.0' }, '/usr/lib/ganesha', entries);
  t.match(g, /NFS_Port = 2049;\n\s+MNT_Port = 20048;/);
  t.match(g, /Export_Id = 1;\n\s+Path = "\/m\/vms";\n\s+Pseudo = "\/vms";/);
  t.match(g, /Export_Id = 7;\n\s+Path = "\/m\/lab";/);
  t.match(g, /CLIENT \{ Clients = 10\.0\.0\.0\/24, 192\.0\.2\.7\/32; Access_Type = RW; \}/);
  t.match(g, /EXPORT_DEFAULTS \{ Access_Type = None; \}/, 'nobody else gets in');
  t.match(g, /Protocols = 3, 4;/);
  t.match(g, /Graceless = true;/);
  const s = smbConfig({ dir: '/d/smb', mount: '/m', port: 4450, bind: '0.0.0.0', user: 'root' }, entries);
  t.match(s, /smb ports = 4450/);
  t.match(s, /\[vms\]\n\s+path = \/m\/vms\n\s+read only = no\n\s+browseable = yes\n\s+hosts allow = 10\.0\.0\.0\/24 192\.0\.2\.7\/32\n\s+hosts deny = ALL\n\s+valid users = root/);
  t.match(s, /passdb backend = tdbsam:\/d\/smb\/private\/passdb\.tdb/);
  t.notMatch(s, /interfaces/, 'all addresses: no interfaces line');
  t.match(smbConfig({ dir: '/d/smb', mount: '/m', port: 445, bind: '10.1.2.3', user: 'root' }, []), /interfaces = 10\.1\.2\.3\n\s+bind interfaces only = yes/);
});
