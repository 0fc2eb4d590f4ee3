// The VM registry (src/backup/vm-registry.ts) on a real data directory: what it accepts, what it
// refuses with which words, that a refusal writes nothing, and that the file survives a reopen.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { VmRegistry, VMS_FILE, redactUrl } from '../src/backup/vm-registry.js';
import { isVmvaultError } from '../src/errors.js';
import { tmpDir } from './helpers/tmpdir.js';

const web01 = { name: 'web01', qmp: 'unix:/run/qemu/web01.qmp', qga: 'unix:/run/qemu/web01.qga', pg: 'postgres://backup@127.0.0.1:5432/postgres' };

t.test('add, list, get, remove; the file survives a reopen', async (t) => {
  const dir = tmpDir(t);
  const reg = await VmRegistry.open(dir);
  t.same(reg.list(), []);
  t.notOk(fs.existsSync(path.join(dir, VMS_FILE)), 'nothing written before the first VM');
  const vm = await reg.add(web01);
  t.equal(vm.share, 'web01', 'the share defaults to the name');
  t.match(vm.createdAt, /^\d{4}-\d\d-\d\dT/);
  await reg.add({ name: 'db01', qmp: 'tcp:10.0.0.5:4444', share: 'databases', workflow: 'crash-consistent' });
  await reg.add({ name: 'v6', qmp: 'tcp:[::1]:4444' });
  t.same(reg.list().map((v) => v.name), ['db01', 'v6', 'web01'], 'sorted by name');
  const st = fs.statSync(path.join(dir, VMS_FILE));
  t.equal(st.mode & 0o777, 0o600, 'mode 0600: a pg URL may hold a password');
  const doc = JSON.parse(fs.readFileSync(path.join(dir, VMS_FILE), 'utf8'));
  t.equal(doc.format, 'vmvault-vms');
  t.equal(doc.version, 1);
  t.same(fs.readdirSync(dir).sort(), [VMS_FILE], 'no temporary file left');

  const again = await VmRegistry.open(dir);
  t.same(again.list(), reg.list(), 'same VMs after reopening');
  t.same(again.get('db01'), { name: 'db01', share: 'databases', qmp: 'tcp:10.0.0.5:4444', workflow: 'crash-consistent', createdAt: again.get('db01').createdAt });
  await again.remove('v6');
  t.same((await VmRegistry.open(dir)).list().map((v) => v.name), ['db01', 'web01'], 'remove is on disk');
});

t.test('bad input: a clear error, and nothing written', async (t) => {
  const dir = tmpDir(t);
  const reg = await VmRegistry.open(dir);
  await reg.add(web01);
  const before = fs.readFileSync(path.join(dir, VMS_FILE), 'utf8');
  const cases: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ['empty name', { name: '', qmp: 'unix:/a' }, 'INVALID_ARGUMENT', /VM name is empty/],
    ['slash in name', { name: 'a/b', qmp: 'unix:/a' }, 'INVALID_ARGUMENT', /VM name "a\/b" contains '\/'/],
    ['dot name', { name: '.snapshots', qmp: 'unix:/a' }, 'INVALID_ARGUMENT', /starts with '\.'/],
    ['long name', { name: 'x'.repeat(200), qmp: 'unix:/a' }, 'NAME_TOO_LONG', /VM name is 200 bytes long; the limit is 128/],
    ['bad share', { name: 'ok', share: '../x', qmp: 'unix:/a' }, 'INVALID_ARGUMENT', /share name "\.\.\/x"/],
    ['no qmp', { name: 'ok' }, 'INVALID_ARGUMENT', /qmp address is missing; expected unix:\/absolute\/path or tcp:host:port/],
    ['relative unix path', { name: 'ok', qmp: 'unix:run/q.qmp' }, 'INVALID_ARGUMENT', /socket path must be absolute/],
    ['dot-dot unix path', { name: 'ok', qmp: 'unix:/run/../etc/q' }, 'INVALID_ARGUMENT', /'\.\.' components/],
    ['unix path too long', { name: 'ok', qmp: `unix:/${'p'.repeat(120)}` }, 'INVALID_ARGUMENT', /at most 107 bytes/],
    ['no scheme', { name: 'ok', qmp: '/run/q.qmp' }, 'INVALID_ARGUMENT', /expected unix:\/absolute\/path or tcp:host:port/],
    ['tcp without port', { name: 'ok', qmp: 'tcp:localhost' }, 'INVALID_ARGUMENT', /tcp:host:port/],
    ['tcp port 0', { name: 'ok', qmp: 'tcp:localhost:0' }, 'INVALID_ARGUMENT', /port 0 is not between 1 and 65535/],
    ['tcp port too big', { name: 'ok', qmp: 'tcp:localhost:70000' }, 'INVALID_ARGUMENT', /port 70000/],
    ['tcp bad host', { name: 'ok', qmp: 'tcp:bad_host!:4444' }, 'INVALID_ARGUMENT', /is not a host name or IP address/],
    ['tcp bad IPv4', { name: 'ok', qmp: 'tcp:300.1.1.1:4444' }, 'INVALID_ARGUMENT', /"300\.1\.1\.1" is not a host name/],
    ['bad qga', { name: 'ok', qmp: 'unix:/a', qga: 'serial:/dev/ttyS0' }, 'INVALID_ARGUMENT', /qga address "serial:\/dev\/ttyS0"/],
    ['NUL in address', { name: 'ok', qmp: 'unix:/a\u0000b' }, 'INVALID_ARGUMENT', /NUL or control character/],
    ['pg not a URL', { name: 'ok', qmp: 'unix:/a', pg: 'host=127.0.0.1 user=backup' }, 'INVALID_ARGUMENT', /pg URL .* does not parse as a URL/],
    ['pg wrong scheme', { name: 'ok', qmp: 'unix:/a', pg: 'mysql://root@db/x' }, 'INVALID_ARGUMENT', /has scheme mysql; expected postgres:\/\//],
    ['pg no host', { name: 'ok', qmp: 'unix:/a', pg: 'postgres:///db' }, 'INVALID_ARGUMENT', /names no host/],
    ['bad workflow name', { name: 'ok', qmp: 'unix:/a', workflow: 'a b' }, 'INVALID_ARGUMENT', /workflow name "a b" is not valid/],
    ['unknown field', { name: 'ok', qmp: 'unix:/a', disk: 'vda' }, 'INVALID_ARGUMENT', /unknown VM field "disk"/],
    ['duplicate name', { name: 'web01', qmp: 'unix:/b' }, 'CONFLICT', /a VM named "web01" is already registered/],
    ['share taken', { name: 'web02', share: 'web01', qmp: 'unix:/b' }, 'CONFLICT', /share "web01" already holds the backups of VM "web01"; give this VM another share/],
  ];
  for (const [label, input, code, message] of cases) {
    await t.rejects(reg.add(input as never), { code, message }, label);
  }
  t.same(reg.list().map((v) => v.name), ['web01'], 'no VM was added');
  t.equal(fs.readFileSync(path.join(dir, VMS_FILE), 'utf8'), before, 'the file is unchanged');
  t.throws(() => reg.get('nope'), { code: 'NOT_FOUND', message: /no VM "nope"/ });
  await t.rejects(reg.remove('nope'), { code: 'NOT_FOUND' });
  t.throws(() => reg.get('a/b'), { code: 'INVALID_ARGUMENT' });
});

t.test('a damaged or newer file is refused, not dropped', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, VMS_FILE);
  fs.writeFileSync(file, '{"format": "vmvault-vms", "version": 1, "vms": [');
  await t.rejects(VmRegistry.open(dir), { code: 'CORRUPT_RECORD', message: /is not valid JSON.*fix or restore it by hand/ });
  fs.writeFileSync(file, JSON.stringify({ format: 'vmvault-vms', version: 2, vms: [] }));
  await t.rejects(VmRegistry.open(dir), { code: 'UNSUPPORTED_FORMAT', message: /format version 2; this vmvault reads up to 1/ });
  fs.writeFileSync(file, JSON.stringify({ format: 'vmvault-vms', version: 1, vms: [{ name: 'x', share: 'x', qmp: 'nope', createdAt: 'now' }] }));
  await t.rejects(VmRegistry.open(dir), { code: 'CORRUPT_RECORD', message: /entry 0: qmp address "nope"/ });
  t.ok(fs.existsSync(file), 'the file is still there for the operator to fix');
});

t.test('concurrent adds of one name: exactly one wins', async (t) => {
  const reg = await VmRegistry.open(tmpDir(t));
  const results = await Promise.allSettled([reg.add({ name: 'a', qmp: 'unix:/a' }), reg.add({ name: 'a', qmp: 'unix:/b' })]);
  t.same(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
  const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  t.ok(isVmvaultError(failed.reason, 'CONFLICT'));
});

t.test('passwords in pg URLs are hidden by redactUrl', async (t) => {
  t.equal(redactUrl('postgres://backup:s3cret@db:5432/postgres'), 'postgres://backup:***@db:5432/postgres');
  t.equal(redactUrl('postgres://backup@db/postgres'), 'postgres://backup@db/postgres');
  t.equal(redactUrl('not a url://u:pw@h'), 'not a url://u:***@h');
});

t.test('a VM that moves remembers the hosts it left until a backup clears them', async (t) => {
  const dir = tmpDir(t, 'vmvault-vmreg-');
  const reg = await VmRegistry.open(dir);
  await reg.add({ name: 'web01', qmp: 'unix:/run/qemu-server/101.qmp', host: 'node1' });
  t.equal(reg.get('web01').formerHosts, undefined, 'none before a move');
  await reg.relocate('web01', { host: 'node2', qmp: 'unix:/run/qemu-server/250.qmp' });
  await reg.relocate('web01', { host: 'node3', qmp: 'unix:/run/qemu-server/301.qmp' });
  t.same(reg.get('web01').formerHosts, ['node1', 'node2'], 'both hosts it left');
  await reg.relocate('web01', { host: 'node1', qmp: 'unix:/run/qemu-server/101.qmp' });
  t.same(reg.get('web01').formerHosts, ['node2', 'node3'], 'back on node1: node1 is its host again, not a former one');
  const again = await VmRegistry.open(dir);
  t.same(again.get('web01').formerHosts, ['node2', 'node3'], 'kept in the file');
  await again.forgetFormerHost('web01', 'node2');
  await again.forgetFormerHost('web01', 'node9');
  t.same(again.get('web01').formerHosts, ['node3']);
  await again.forgetFormerHost('web01', 'node3');
  t.equal((await VmRegistry.open(dir)).get('web01').formerHosts, undefined, 'all cleared: the field is gone');
  // The field is the appliance's, never the operator's: add() refuses it.
  await t.rejects(reg.add({ name: 'web02', qmp: 'unix:/run/q.qmp', formerHosts: ['x'] } as never), /unknown VM field "formerHosts"/);
});
