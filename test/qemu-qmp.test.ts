// The QMP client, describeVm and the guest-agent client against real parts: a guestless -S QEMU
// (a hung QEMU is the same process stopped with SIGSTOP, a busy monitor is one held by another
// client), and the real qemu-ga of the host in unix-listen mode with its fsfreeze commands
// blocked (freezing the host's file systems is not something a test may do).

import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { GuestAgent } from '../src/plugins/qemu/qga.js';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { describeVm } from '../src/plugins/qemu/vm-info.js';
import { startQemu } from './helpers/qemu.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

t.test('describeVm reports what is needed to recreate the VM', async (t) => {
  const dir = tmpDir(t, 'vmvault-qmp-');
  const q = await startQemu({
    t,
    dir,
    name: 'web01',
    cpus: 2,
    memoryMiB: 96,
    nicMac: '52:54:00:ab:cd:ef',
    disks: [
      { device: 'vda', file: path.join(dir, 'vda.qcow2'), sizeBytes: 48 * MiB },
      { device: 'vdb', file: path.join(dir, 'vdb.raw'), format: 'raw', sizeBytes: 8 * MiB },
    ],
  });
  const qmp = await QmpClient.connect(q.qmp);
  t.teardown(() => qmp.close());
  t.equal(qmp.version?.major, 7, 'QEMU 7.x as Debian 12 has it');
  const vm = await describeVm(qmp);
  t.match(vm, {
    name: 'web01',
    uuid: '6b1e3b2c-0c1d-4d5e-9f00-112233445566',
    status: 'prelaunch',
    machine: /^pc-q35-\d+\.\d+$/,
    cpus: 2,
    memoryBytes: 96 * MiB,
    nics: [{ id: 'net0', model: 'virtio-net-pci', mac: '52:54:00:ab:cd:ef' }],
  });
  t.same(
    vm.disks.map((d) => [d.device, d.node, d.file, d.format, d.sizeBytes]),
    [
      ['vda', 'disk-vda', path.join(dir, 'vda.qcow2'), 'qcow2', 48 * MiB],
      ['vdb', 'disk-vdb', path.join(dir, 'vdb.raw'), 'raw', 8 * MiB],
    ],
  );
});

t.test('QMP: errors carry class and desc, pipelined ids, buffered events', async (t) => {
  const dir = tmpDir(t, 'vmvault-qmp-');
  const q = await startQemu({ t, dir, disks: [] });
  const qmp = await QmpClient.connect(q.qmp);
  t.teardown(() => qmp.close());
  await t.rejects(qmp.execute('no-such-command'), { code: 'NOT_SUPPORTED', message: /CommandNotFound: The command no-such-command has not been found/ });
  await t.rejects(qmp.execute('blockdev-del', { 'node-name': 'nope' }), {
    code: 'IO',
    message: /QMP blockdev-del failed: GenericError: .*nope/,
    details: { qmpClass: 'GenericError' },
  });
  // Several in flight: each answer goes to its own command.
  const [a, b, c] = await Promise.all([qmp.execute('query-name'), qmp.execute('query-status'), qmp.execute('query-uuid')]);
  t.same([a, (b as any).status, (c as any).UUID], [{ name: 'testvm' }, 'prelaunch', '6b1e3b2c-0c1d-4d5e-9f00-112233445566']);
  // An event that arrived before waitEvent is still seen; each is consumed once.
  await qmp.execute('cont');
  await qmp.execute('stop');
  await new Promise((r) => setTimeout(r, 100));
  t.same(await qmp.waitEvent('RESUME', undefined, 1000), {});
  t.same(await qmp.waitEvent('STOP', undefined, 1000), {});
  await t.rejects(qmp.waitEvent('STOP', undefined, 200), { message: /no STOP event within 200 ms/ });
});

t.test('QMP: a socket that accepts and never answers fails with what to check', async (t) => {
  const dir = tmpDir(t, 'vmvault-qmp-');
  const q = await startQemu({ t, dir, disks: [] });
  const first = await QmpClient.connect(q.qmp);
  t.teardown(() => first.close());
  // QEMU serves one client per monitor: the kernel accepts a second, QEMU says nothing to it.
  const started = Date.now();
  await t.rejects(QmpClient.connect(q.qmp, { timeoutMs: 500 }), {
    code: 'IO',
    message: /sent no greeting within 500 ms.*no other client holds it/,
  });
  t.ok(Date.now() - started < 3000, 'failed at the deadline, not later');
  // A hung QEMU: the process stopped. The command times out; the client stays usable after.
  process.kill(q.pid, 'SIGSTOP');
  try {
    await t.rejects(first.execute('query-status', undefined, { timeoutMs: 300 }), {
      code: 'IO',
      message: /QMP query-status at unix:.*no answer within 300 ms; QEMU may be hung/,
    });
  } finally {
    process.kill(q.pid, 'SIGCONT');
  }
  t.match(await first.execute('query-status'), { status: 'prelaunch' }, 'the late answer was dropped, the next one is right');
  await t.rejects(QmpClient.connect(`unix:${path.join(dir, 'none.sock')}`), { code: 'IO', message: /cannot connect \(ENOENT\): nothing listens there/ });
  await t.rejects(QmpClient.connect('http://x'), { code: 'INVALID_ARGUMENT', message: /expected unix:\/path or tcp:host:port/ });
  await t.rejects(QmpClient.connect('tcp:127.0.0.1:99999'), { code: 'INVALID_ARGUMENT', message: /expected tcp:HOST:PORT/ });
  await t.rejects(QmpClient.connect('tcp:127.0.0.1:1'), { code: 'IO', message: /127\.0\.0\.1:1: cannot connect \(ECONNREFUSED\)/ });
  // A socket that is not QMP at all (a stream of text): refused by its first message.
  const bogus = path.join(dir, 'bogus.sock');
  const server = net.createServer((s) => s.end('{"hello": 1}\n'));
  await new Promise<void>((r) => server.listen(bogus, r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  await t.rejects(QmpClient.connect(`unix:${bogus}`, { timeoutMs: 2000 }), { message: /not a QMP greeting/ });
});

t.test('QMP: QEMU exiting fails what is in flight and what comes after', async (t) => {
  const dir = tmpDir(t, 'vmvault-qmp-');
  const q = await startQemu({ t, dir, disks: [] });
  const qmp = await QmpClient.connect(q.qmp);
  const waiting = qmp.waitEvent('NEVER', undefined, 10_000);
  await qmp.execute('quit').catch(() => undefined);
  await t.rejects(waiting, { code: 'CLOSED', message: /QEMU closed the connection/ });
  await t.rejects(qmp.execute('query-status'), { code: 'CLOSED' });
  await qmp.close();
});

t.test('guest agent: a channel with no agent behind it says what to install and add', async (t) => {
  const dir = tmpDir(t, 'vmvault-qga-');
  const q = await startQemu({ t, dir, disks: [], qga: true });
  const started = Date.now();
  await t.rejects(GuestAgent.connect(`unix:${q.qgaPath}`, { timeoutMs: 700 }), {
    code: 'IO',
    message: /no answer to guest-sync-delimited within 700 ms; install and start qemu-guest-agent.*virtserialport.*org\.qemu\.guest_agent\.0/,
  });
  t.ok(Date.now() - started < 3000, 'failed at the deadline');
  await t.rejects(GuestAgent.connect(`unix:${path.join(dir, 'no.sock')}`), { code: 'IO', message: /cannot connect \(ENOENT\).*If the VM runs: install and start qemu-guest-agent/ });
});

t.test('guest agent: sync past stale output, ping, status, refused commands (real qemu-ga on the host)', async (t) => {
  const dir = tmpDir(t, 'vmvault-qga-');
  const sock = path.join(dir, 'qga.sock');
  const ga: ChildProcess = spawn(
    'qemu-ga',
    ['-m', 'unix-listen', '-p', sock, '-t', dir, '-f', path.join(dir, 'qga.pid'),
      // Never freeze the host: the fsfreeze commands are disabled in this agent.
      '-b', 'guest-fsfreeze-freeze,guest-fsfreeze-freeze-list,guest-fsfreeze-thaw'],
    { stdio: 'ignore' },
  );
  t.teardown(() => {
    if (ga.exitCode === null && ga.pid) process.kill(ga.pid, 'SIGKILL');
  });
  for (let i = 0; i < 200 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25));
  // An earlier client left a command half written and answers unread.
  await new Promise<void>((resolve) => {
    const s = net.createConnection(sock, () => {
      s.write('{"execute":"guest-info"}\n{"execute":"guest-ping"}\n{"execute":"guest-');
      setTimeout(() => (s.destroy(), resolve()), 200);
    });
  });
  const agent = await GuestAgent.connect(`unix:${sock}`, { timeoutMs: 5000 });
  t.teardown(() => agent.close());
  await agent.ping();
  t.equal(await agent.status(), 'thawed');
  await t.rejects(agent.freeze(), { code: 'NOT_SUPPORTED', message: /guest-fsfreeze-freeze failed: CommandNotFound: Command guest-fsfreeze-freeze has been disabled/ });
  await t.rejects(agent.thaw(), { code: 'NOT_SUPPORTED' });
  // Commands queue: several at once are answered each to its own caller.
  const [info, , status] = await Promise.all([agent.execute<{ version: string }>('guest-info'), agent.ping(), agent.status()]);
  t.match(info.version, /^7\./);
  t.equal(status, 'thawed');
});
