// hosts.json (issue 13): add, list, remove, refusals, and what a reader does with a damaged or
// newer file; a VM record's host and uuid, and relocate() (a VM that moved). Real files.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { clusterText } from '../src/cli/commands/hosts.js';
import { HostRegistry } from '../src/backup/host-registry.js';
import { VmRegistry } from '../src/backup/vm-registry.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('hosts.json: add, list, remove, refusals, survives a reopen', async (t) => {
  const dir = tmpDir(t);
  const reg = await HostRegistry.open(dir);
  t.same(reg.list(), []);
  await reg.add({ name: 'node2', agent: 'agent2' });
  await reg.add({ name: 'node1', agent: 'agent1' });
  await t.rejects(reg.add({ name: 'node1', agent: 'agent9' }), { code: 'CONFLICT' });
  await t.rejects(reg.add({ name: 'node3', agent: 'agent1' }), { code: 'CONFLICT', message: /agent agent1 already speaks for host node1/ });
  await t.rejects(reg.add({ name: '../etc', agent: 'a' }), { code: 'INVALID_ARGUMENT' });
  await t.rejects(reg.add({ name: 'ok', agent: 'bad agent' }), { code: 'INVALID_ARGUMENT', message: /agent name/ });
  const doc = JSON.parse(fs.readFileSync(path.join(dir, 'hosts.json'), 'utf8'));
  t.same([doc.format, doc.version, doc.hosts.map((h: any) => h.name)], ['vmvault-hosts', 1, ['node1', 'node2']], 'versioned, sorted');
  const again = await HostRegistry.open(dir);
  t.same(again.list().map((h) => [h.name, h.agent]), [['node1', 'agent1'], ['node2', 'agent2']]);
  await again.remove('node2');
  t.throws(() => again.get('node2'), { code: 'NOT_FOUND' });
  await t.rejects(again.remove('node2'), { code: 'NOT_FOUND' });
  t.same((await HostRegistry.open(dir)).list().map((h) => h.name), ['node1']);
});

t.test('hosts.json: a damaged or newer file is refused with the file named, never dropped', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'hosts.json');
  fs.writeFileSync(file, '{"format":"vmvault-hosts","version":1,"hosts":[{"name":"n","agent":"a"');
  await t.rejects(HostRegistry.open(dir), { code: 'CORRUPT_RECORD', message: new RegExp(`${file} is not valid JSON`) });
  fs.writeFileSync(file, JSON.stringify({ format: 'vmvault-hosts', version: 2, hosts: [] }));
  await t.rejects(HostRegistry.open(dir), { code: 'UNSUPPORTED_FORMAT' });
  fs.writeFileSync(file, JSON.stringify({ format: 'vmvault-hosts', version: 1, hosts: [{ name: 'n', agent: '-x', createdAt: 'now' }] }));
  await t.rejects(HostRegistry.open(dir), { code: 'CORRUPT_RECORD', message: /entry 0: agent name/ });
  t.ok(fs.existsSync(file), 'the file stays for the operator to fix');
});

t.test('a VM on a host: qmp must be its UNIX socket, uuid checked; relocate() follows a move', async (t) => {
  const dir = tmpDir(t);
  const vms = await VmRegistry.open(dir);
  await t.rejects(vms.add({ name: 'a', qmp: 'tcp:10.0.0.1:4444', host: 'node1' }), { code: 'INVALID_ARGUMENT', message: /UNIX socket on that host/ });
  await t.rejects(vms.add({ name: 'a', qmp: 'unix:/run/qemu-server/101.qmp', host: 'node1', uuid: 'not-a-uuid' }), { code: 'INVALID_ARGUMENT', message: /is not a UUID/ });
  await vms.add({ name: 'a', qmp: 'unix:/run/qemu-server/101.qmp', host: 'node1', uuid: 'A1B2C3D4-0000-4000-8000-000000000101', workflow: 'crash-consistent' });
  t.equal(vms.get('a').uuid, 'a1b2c3d4-0000-4000-8000-000000000101', 'kept in lower case, as QEMU answers it');
  const moved = await vms.relocate('a', { host: 'node2', qmp: 'unix:/run/qemu-server/250.qmp', uuid: 'a1b2c3d4-0000-4000-8000-000000000101' });
  t.same([moved.host, moved.qmp, moved.workflow, moved.share], ['node2', 'unix:/run/qemu-server/250.qmp', 'crash-consistent', 'a'], 'only the placement changes');
  const reopened = await VmRegistry.open(dir);
  t.same([reopened.get('a').host, reopened.get('a').qmp, reopened.get('a').createdAt], ['node2', 'unix:/run/qemu-server/250.qmp', moved.createdAt], 'durable');
  await t.rejects(vms.relocate('a', { host: 'node3', qmp: 'tcp:1.2.3.4:5' }), { code: 'INVALID_ARGUMENT' });
  t.equal(vms.get('a').host, 'node2', 'a refused relocation changes nothing');
});

t.test('vmvault cluster: the table, an unreachable host and a mute socket said below it', async (t) => {
  const text = clusterText({
    takenAt: '2026-12-05T12:00:00.000Z',
    ms: 12,
    hosts: [
      {
        name: 'node1',
        agent: 'agent1',
        state: 'ok',
        hostname: 'n1',
        ms: 10,
        problems: [],
        failed: [{ qmp: 'unix:/run/qemu-server/102.qmp', error: 'no greeting' }],
        vms: [{ name: 'web01', uuid: 'u', state: 'running', qmp: 'unix:/run/qemu-server/101.qmp', disks: [{ device: 'vda', file: 'f', format: 'qcow2', sizeBytes: 1 << 30, dirtyBytes: 0 }], load: { wrBytesPerSec: 2 << 20, dirtyBytes: 3 << 20 } }],
      },
      { name: 'node3', agent: 'agent3', state: 'unreachable', reason: 'agent agent3 is lost', ms: 0, problems: [], failed: [], vms: [{ name: 'db01', uuid: '', state: 'unknown', qmp: 'unix:/x.qmp', disks: [], load: { dirtyBytes: 0 } }] },
    ],
  });
  t.match(text, /HOST\s+VM\s+STATE\s+HA\s+DISKS\s+WRITES\s+DIRTY/);
  t.match(text, /node1\s+web01\s+running\s+-\s+vda 1(\.0+)? GiB qcow2\s+2(\.0+)? MiB\/s\s+3(\.0+)? MiB/);
  t.match(text, /node3\s+db01\s+unknown/);
  t.match(text, /host node3 unreachable: agent agent3 is lost/);
  t.match(text, /host node1: unix:\/run\/qemu-server\/102\.qmp: no greeting/);
});
