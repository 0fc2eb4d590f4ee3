// First boot's reading of the OVF environment and what it writes (appliance/firstboot/): real
// ovf-env.xml files in VMware's and another style, the files rendered whole, written under a
// temporary root, and a real certificate made by openssl for the name and address.

import t from 'tap';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applySettings, ensureCertificate } from '../appliance/firstboot/apply.js';
import { parseOvfEnv } from '../appliance/firstboot/ovf-env.js';
import { issueText, networkdFile, resolvConf, timesyncdConf } from '../appliance/firstboot/render.js';
import { settingsFrom } from '../appliance/firstboot/settings.js';

const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'ovf-env');
const read = (name: string): string => fs.readFileSync(path.join(fixtures, name), 'utf8');

t.test('a VMware-style environment: every property, entities decoded', async (t) => {
  const p = parseOvfEnv(read('static.xml'));
  t.equal(p.size, 8);
  t.equal(p.get('vmvault.admin_password'), 's3cret & "quoted"');
  t.equal(p.get('vmvault.ip'), '10.0.2.15');
  const s = settingsFrom(p);
  t.same(s.problems, []);
  t.equal(s.hostname, 'vault01.example.net');
  t.same(s.network, { address: '10.0.2.15', prefix: 24, gateway: '10.0.2.2', dns: ['10.0.2.3', '9.9.9.9'] });
  t.same(s.ntp, ['ntp1.example.net', '10.0.2.2']);
  t.equal(s.adminToken, 'tok-0123456789abcdef0123');
  t.equal(networkdFile(s), '# Written by vmvault first boot from the OVF properties; rewritten at every boot.\n[Match]\nType=ether\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nDNS=10.0.2.3\nDNS=9.9.9.9\n');
  t.equal(resolvConf(s), '# Written by vmvault first boot (vmvault.dns)\nnameserver 10.0.2.3\nnameserver 9.9.9.9\n');
  t.equal(timesyncdConf(s), '# Written by vmvault first boot (vmvault.ntp)\n[Time]\nNTP=ntp1.example.net 10.0.2.2\n');
});

t.test('bad values fall back (DHCP, default name, random token) and say why; comments are not read', async (t) => {
  const p = parseOvfEnv(read('dhcp.xml'));
  t.equal(p.get('vmvault.ip'), '', 'the commented-out property is not taken');
  const s = settingsFrom(p);
  t.equal(s.network, undefined, 'DHCP');
  t.equal(s.hostname, 'vmvault');
  t.equal(s.adminToken, undefined);
  t.match(s.problems, [/vmvault.hostname "bad_name!"/, /admin_token must be 16..256/]);
  t.match(networkdFile(s), /DHCP=yes\n[\s\S]*Hostname=vmvault\n/);
  t.equal(resolvConf(s), undefined);
  const bad = settingsFrom(new Map([['vmvault.ip', '10.0.0.300'], ['vmvault.netmask', '255.0.255.0']]));
  t.match(bad.problems, [/"10.0.0.300" is not an IPv4 address: using DHCP/]);
  const mask = settingsFrom(new Map([['vmvault.ip', '10.0.0.3'], ['vmvault.netmask', '255.0.255.0']]));
  t.match(mask.problems, [/not a netmask/]);
  t.same(settingsFrom(new Map([['vmvault.ip', '192.168.7.9/20']])).network, { address: '192.168.7.9', prefix: 20, gateway: undefined, dns: [] });
});

t.test('what is not an OVF environment is refused with a reason', async (t) => {
  t.throws(() => parseOvfEnv('<html><body>hello</body></html>'), { code: 'INVALID_ARGUMENT', message: /no <Environment>/ });
  t.throws(() => parseOvfEnv('<Environment><PropertySection><Property value="x"/></PropertySection></Environment>'), { message: /without a key/ });
  t.same([...parseOvfEnv('<Environment/>')], []);
});

t.test('applied under a root: the files, the token (0600), a certificate for name and address', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-firstboot-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const s = settingsFrom(parseOvfEnv(read('static.xml')));
  const written = applySettings(root, s);
  t.same(written.sort(), ['/etc/hostname', '/etc/hosts', '/etc/resolv.conf', '/etc/systemd/network/10-vmvault.network', '/etc/systemd/timesyncd.conf.d/vmvault.conf', '/var/lib/vmvault/api-token'].sort());
  t.equal(fs.readFileSync(path.join(root, 'etc/hostname'), 'utf8'), 'vault01.example.net\n');
  t.match(fs.readFileSync(path.join(root, 'etc/hosts'), 'utf8'), /^10\.0\.2\.15\tvault01\.example\.net vault01$/m);
  const tok = path.join(root, 'var/lib/vmvault/api-token');
  t.equal(fs.readFileSync(tok, 'utf8'), 'tok-0123456789abcdef0123\n');
  t.equal(fs.statSync(tok).mode & 0o777, 0o600);
  // A later boot with no NTP property removes our drop-in rather than keeping stale servers.
  applySettings(root, { ...s, ntp: [] });
  t.notOk(fs.existsSync(path.join(root, 'etc/systemd/timesyncd.conf.d/vmvault.conf')));

  const a = ensureCertificate(root, s.hostname, ['10.0.2.15']);
  t.equal(a.made, true);
  const cert = new X509Certificate(fs.readFileSync(path.join(root, 'etc/vmvault/tls/cert.pem')));
  t.equal(cert.checkHost('vault01.example.net'), 'vault01.example.net');
  t.equal(cert.checkIP('10.0.2.15'), '10.0.2.15');
  t.equal(a.fingerprint, cert.fingerprint256);
  t.equal(fs.statSync(path.join(root, 'etc/vmvault/tls/key.pem')).mode & 0o777, 0o600);
  const again = ensureCertificate(root, s.hostname, ['10.0.2.15']);
  t.same(again, { fingerprint: a.fingerprint, made: false }, 'same names: kept');
  const moved = ensureCertificate(root, s.hostname, ['10.0.2.16']);
  t.equal(moved.made, true, 'a new address: a new certificate');
  t.not(moved.fingerprint, a.fingerprint);

  const issue = issueText({ hostname: s.hostname, addresses: ['10.0.2.15'], port: 7443, fingerprint: moved.fingerprint, problems: ['vmvault.ntp: "x" left out'] });
  t.match(issue, /https:\/\/10\.0\.2\.15:7443\/api\/v1\/health/);
  t.ok(issue.includes(moved.fingerprint));
  t.match(issue, /- vmvault\.ntp/);
});
