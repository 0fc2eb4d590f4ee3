// Host requests (issue 13) through the real AgentPool, with the agent's real handler table and
// QEMU requests against real paused QEMUs. The HTTP hop between them is left out here (an
// in-process loop polls the pool as the agent's long-poll does; the netns test covers the wire):
// - the errors a caller gets: unknown agent, a kind it lacks, silence (timeout), a lost agent,
//   an answer to a request not out to the agent;
// - malformed discovery answers (an agent is untrusted) make the host unreachable with the path
//   of the bad field, never a half-read map;
// - a QMP channel relayed through the agent: describeVm, events (waitEvent and clearEvents keep
//   QmpClient's meaning), sockets outside the agent's folders refused;
// - discovery reports a socket that does not answer with the reason, not dropped.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { HostRequestTable } from '../src/agent/host-requests.js';
import { QemuRequests } from '../src/agent/qemu-requests.js';
import { AgentPool } from '../src/backup/agent-pool.js';
import { ClusterMap } from '../src/backup/cluster-map.js';
import type { HostRequest } from '../src/backup/host-requests.js';
import { HostQmpChannel } from '../src/backup/host-qmp.js';
import { isVmvaultError } from '../src/errors.js';
import { describeVm } from '../src/plugins/qemu/vm-info.js';
import { testServer } from './helpers/control-server.js';
import { startQemu } from './helpers/qemu.js';
import { tmpDir } from './helpers/tmpdir.js';

type Answer = { ok: boolean; result?: unknown; error?: { code: string; message: string } };

/** An agent's poll loop, in process: takes requests from the pool and answers each with `handle`. */
function fakeAgent(t: { teardown(fn: () => unknown): void }, pool: AgentPool, name: string, kinds: string[], handle: (r: HostRequest) => Promise<Answer | undefined>): { stop(): void } {
  pool.register({ name, version: 'test', hostname: `${name}.test`, addresses: [], streams: 1, reach: [], requests: kinds }, '127.0.0.1');
  const ac = new AbortController();
  void (async () => {
    while (!ac.signal.aborted) {
      try {
        await pool.poll(name, 200, [], ac.signal);
        for (const r of pool.takeRequests(name)) {
          void handle(r).then((a) => {
            if (a !== undefined && !ac.signal.aborted) pool.answerRequest(name, r.id, a);
          });
        }
      } catch {
        return;
      }
    }
  })();
  const stop = () => ac.abort();
  t.teardown(stop);
  return { stop };
}

function withTable(table: HostRequestTable): (r: HostRequest) => Promise<Answer> {
  const stop = new AbortController().signal;
  return (r) => table.run(r, stop);
}

t.test('request errors: unknown agent, a kind it lacks, silence, a lost agent, a stray answer', async (t) => {
  const pool = new AgentPool({ lostAfterMs: 800 });
  t.teardown(() => pool.close());
  const e1 = await pool.request('nobody', 'discover', {}, 1000).catch((e: any) => e) as any;
  t.ok(isVmvaultError(e1, 'NOT_FOUND'), String(e1));
  t.equal(e1.details.hostReason, 'agent-unknown');

  const silent = fakeAgent(t, pool, 'silent', ['discover'], async () => undefined);
  const e2 = await pool.request('silent', 'ha-state', {}, 1000).catch((e: any) => e) as any;
  t.ok(isVmvaultError(e2, 'NOT_SUPPORTED'), String(e2));
  t.match(e2.message, /does not handle ha-state requests \(it handles: discover/);

  const t0 = Date.now();
  const e3 = await pool.request('silent', 'discover', {}, 500).catch((e: any) => e) as any;
  t.ok(isVmvaultError(e3, 'TIMEOUT'), String(e3));
  t.ok(Date.now() - t0 < 2000, 'the timeout is the bound');
  t.match(e3.message, /did not answer discover within 500 ms/);

  // A stray answer (the request timed out) is refused.
  t.throws(() => pool.answerRequest('silent', '00000000-0000-0000-0000-000000000000', { ok: true, result: {} }), { code: 'CONFLICT' });

  // The agent stops polling: it is lost, and a request out to it fails with that reason.
  const pending = pool.request('silent', 'discover', {}, 10_000).catch((e: any) => e);
  await new Promise((r) => setTimeout(r, 100));
  silent.stop();
  const e4 = (await pending) as any;
  t.ok(isVmvaultError(e4, 'IO'), String(e4));
  t.equal(e4.details.hostReason, 'agent-lost');
  const e5 = await pool.request('silent', 'discover', {}, 1000).catch((e: any) => e) as any;
  t.equal(e5.details.hostReason, 'agent-lost', 'a lost agent is refused at once');

  // A handler's own error comes back with its code.
  const table = new HostRequestTable();
  table.register('discover', async () => {
    throw Object.assign(new Error('boom'), {});
  });
  fakeAgent(t, pool, 'failing', table.kinds(), withTable(table));
  const e6 = await pool.request('failing', 'discover', {}, 2000).catch((e: any) => e) as any;
  t.ok(isVmvaultError(e6, 'IO'), String(e6));
  t.match(e6.message, /agent failing: discover: boom/);
});

t.test('malformed discovery answers make the host unreachable with the bad field named', async (t) => {
  const pool = new AgentPool();
  t.teardown(() => pool.close());
  const good = {
    v: 1,
    hostname: 'h',
    sampledAt: 1000,
    problems: [],
    vms: [{ qmp: 'unix:/run/a.qmp', ok: true, name: 'a', uuid: '6b1e3b2c-0c1d-4d5e-9f00-112233445566', status: 'paused', disks: [] }],
  };
  const cases: Array<[string, unknown, RegExp]> = [
    ['null', null, /the answer is not an object/],
    ['a newer version', { ...good, v: 2 }, /discovery version 2/],
    ['vms not a list', { ...good, vms: 'many' }, /vms is not a list/],
    ['a bad uuid', { ...good, vms: [{ ...good.vms[0], uuid: '../../etc' }] }, /vms\[0\]\.uuid is not a UUID/],
    ['a negative size', { ...good, vms: [{ ...good.vms[0], disks: [{ device: 'vda', node: 'n', file: 'f', format: 'qcow2', sizeBytes: -1, dirtyBitmaps: [], rdBytes: 0, wrBytes: 0, rdOps: 0, wrOps: 0 }] }] }, /vms\[0\]\.disks\[0\]\.sizeBytes is not a non-negative integer/],
    ['a tcp QMP address', { ...good, vms: [{ ...good.vms[0], qmp: 'tcp:10.0.0.1:4444' }] }, /vms\[0\]\.qmp is not unix:\/path/],
    ['ok missing', { ...good, vms: [{ qmp: 'unix:/x.qmp' }] }, /vms\[0\]\.ok is not true or false/],
  ];
  let answer: unknown = good;
  fakeAgent(t, pool, 'liar', ['discover'], async () => ({ ok: true, result: answer }));
  const map = new ClusterMap({ pool, hosts: () => [{ name: 'node1', agent: 'liar', createdAt: '' }], registered: () => [{ name: 'a', host: 'node1', qmp: 'unix:/run/a.qmp' }] });
  const ok = await map.refresh();
  t.equal(ok.hosts[0].state, 'ok');
  t.same(ok.hosts[0].vms.map((v) => [v.name, v.registered]), [['a', 'a']]);
  t.equal(ok.hosts[0].vms[0].load.wrBytesPerSec, undefined, 'no write rate from one sample');
  // A second sample 2 s (the agent's clock) and 20 MiB of writes later: 10 MiB/s; dirty bytes the largest bitmap's.
  const disk = { device: 'vda', node: 'n', file: 'f', format: 'qcow2', sizeBytes: 1 << 30, rdBytes: 0, rdOps: 0, wrOps: 0 };
  answer = { ...good, vms: [{ ...good.vms[0], disks: [{ ...disk, wrBytes: 0, dirtyBitmaps: [] }] }] };
  await map.refresh();
  answer = {
    ...good,
    sampledAt: 3000,
    vms: [{ ...good.vms[0], disks: [{ ...disk, wrBytes: 20 << 20, dirtyBitmaps: [{ name: 'a', count: 4096, granularity: 65536 }, { name: 'b', count: 8192, granularity: 65536 }] }] }],
  };
  const rated = await map.refresh();
  t.same(rated.hosts[0].vms[0].load, { wrBytesPerSec: 10 << 20, dirtyBytes: 8192 }, 'the rate between two samples, the largest bitmap per disk');
  for (const [what, bad, re] of cases) {
    answer = bad;
    const v = await map.refresh();
    t.equal(v.hosts[0].state, 'unreachable', what);
    t.match(v.hosts[0].reason ?? '', /answered discover with something malformed/, what);
    t.match(v.hosts[0].reason ?? '', re, what);
    t.same(v.hosts[0].vms.map((x) => [x.name, x.state]), [['a', 'unknown']], `${what}: the VM last seen there is listed as unknown`);
  }
});

t.test('QMP relayed through the agent, and discovery of a folder', { timeout: 120_000 }, async (t) => {
  const dir = tmpDir(t, 'vmvault-hostreq-');
  const qmpDir = path.join(dir, 'qemu-server');
  fs.mkdirSync(qmpDir);
  const uuid = 'a1b2c3d4-0000-4000-8000-000000000101';
  const q = await startQemu({ t, dir, name: 'vm101', uuid, qmpPath: path.join(qmpDir, '101.qmp'), disks: [{ device: 'vda', file: path.join(dir, '101.qcow2'), sizeBytes: 8 * 1024 * 1024 }] });
  // A socket that accepts and never greets (a hung QEMU), and a guest-agent socket beside them.
  const mute = net.createServer(() => {});
  await new Promise<void>((r) => mute.listen(path.join(qmpDir, '102.qmp'), r));
  t.teardown(() => mute.close());
  const qga = net.createServer(() => {});
  await new Promise<void>((r) => qga.listen(path.join(qmpDir, '101.qga'), r));
  t.teardown(() => qga.close());

  const table = new HostRequestTable();
  const qemu = new QemuRequests({ qmpDirs: [qmpDir], qmpSockets: [] });
  t.teardown(() => qemu.stop());
  qemu.register(table);
  const pool = new AgentPool();
  t.teardown(() => pool.close());
  fakeAgent(t, pool, 'node1-agent', table.kinds(), withTable(table));

  const map = new ClusterMap({ pool, hosts: () => [{ name: 'node1', agent: 'node1-agent', createdAt: '' }], registered: () => [], socketTimeoutMs: 3000 });
  const v = await map.refresh();
  const h = v.hosts[0];
  t.equal(h.state, 'ok', h.reason ?? 'ok');
  t.same(h.vms.map((x) => [x.name, x.uuid, x.state, x.qmp]), [['vm101', uuid, 'prelaunch', q.qmp]]);
  t.same(h.vms[0].disks.map((d) => [d.device, d.format, d.sizeBytes]), [['vda', 'qcow2', 8 * 1024 * 1024]]);
  t.equal(h.failed.length, 1, 'the mute socket is reported');
  t.equal(h.failed[0].qmp, `unix:${path.join(qmpDir, '102.qmp')}`);
  t.match(h.failed[0].error, /no greeting/);

  const ch = await HostQmpChannel.open(pool, { host: 'node1', agent: 'node1-agent', socket: q.qmp, timeoutMs: 5000 });
  t.teardown(() => ch.close());
  t.match(ch.address, /^agent:node1 unix:/);
  t.ok(ch.version && ch.version.major >= 7, 'the version from the greeting');
  const d = await describeVm(ch);
  t.equal(d.uuid, uuid);
  t.equal(d.name, 'vm101');
  t.same(d.disks.map((x) => x.device), ['vda']);
  // While the relay holds the monitor, discovery uses its session instead of waiting for a greeting.
  const v2 = await map.refresh();
  t.same(v2.hosts[0].vms.map((x) => x.name), ['vm101'], 'discovery goes through the held session');

  // I/O load: the write rate between two refreshes' block stats, and the bitmaps' dirty bytes.
  await ch.execute('block-dirty-bitmap-add', { node: q.nodeOf('vda'), name: 'ck1', persistent: false });
  await ch.execute('human-monitor-command', { 'command-line': `qemu-io -d ${q.qdevOf('vda')} "write -P 7 0 1048576"` });
  const v3 = await map.refresh();
  const load = v3.hosts[0].vms[0].load;
  // (HMP qemu-io bypasses the device's I/O accounting, so the rate stays 0 here; the fake-agent
  // test checks the arithmetic, and the group bench's booted guest a real rate.)
  t.equal(load.wrBytesPerSec, 0, 'a write rate from two samples once there are two');
  t.equal(load.dirtyBytes, 1024 * 1024, 'the dirty bitmap counts the 1 MiB written');
  const v4 = await map.refresh({ sampleMs: 200 });
  t.equal(v4.hosts[0].vms[0].load.wrBytesPerSec, 0, 'sampled by the agent over 200 ms without writes: 0');

  // Events: one that came before the wait is seen; clearEvents drops what came before it.
  await ch.execute('cont');
  t.same(await ch.waitEvent('RESUME', undefined, 5000), {}, 'RESUME relayed');
  await ch.execute('stop');
  await new Promise((r) => setTimeout(r, 300));
  ch.clearEvents('STOP');
  const e = await ch.waitEvent('STOP', undefined, 800).catch((err) => err);
  t.match(String(e), /no STOP event within 800 ms/, 'the cleared STOP is gone');
  // A QEMU error keeps its class in the message.
  const bad = await ch.execute('block-dirty-bitmap-add', { node: 'nope', name: 'x' }).catch((err) => err);
  t.match(String(bad), /qmp-execute|DeviceNotFound|GenericError|nope/);

  // Sockets outside the agent's folders are refused.
  const forbidden = await HostQmpChannel.open(pool, { host: 'node1', agent: 'node1-agent', socket: `unix:${path.join(dir, 'other.qmp')}` }).catch((err) => err);
  t.ok(isVmvaultError(forbidden, 'FORBIDDEN'), String(forbidden));
  await ch.close();
  const after = await ch.execute('query-status').catch((err) => err);
  t.ok(isVmvaultError(after, 'CLOSED'), 'a closed channel refuses commands');
});

t.test('over HTTP: the poll hands a request once, the answer route takes it once, a bad answer is a 400', async (t) => {
  const pool = new AgentPool({ lostAfterMs: 5000 });
  t.teardown(() => pool.close());
  const s = await testServer(t, { agents: pool });
  const reg = { name: 'node1', version: 't', hostname: 'n1', addresses: [], streams: 1, reach: [], requests: ['discover'] };
  let res = await s.call('POST', '/api/v1/agents/register', { ...reg, requests: ['Not A Kind'] });
  t.equal(res.statusCode, 400, 'request kinds are checked at registration');
  res = await s.call('POST', '/api/v1/agents/register', reg);
  t.equal(res.statusCode, 200, res.body);
  t.same((await s.call('GET', '/api/v1/agents')).json().agents[0].requests, ['discover'], 'the kinds are listed');

  const asked = pool.request('node1', 'discover', { sampleMs: 0 }, 10_000);
  const t0 = Date.now();
  res = await s.call('POST', '/api/v1/agents/node1/poll', { waitMs: 5000, running: [] });
  t.ok(Date.now() - t0 < 3000, 'the poll answers at once when a request waits');
  const [r] = res.json().requests;
  t.match(r, { v: 1, id: String, kind: 'discover', args: { sampleMs: 0 }, timeoutMs: 10_000 });
  res = await s.call('POST', '/api/v1/agents/node1/poll', { waitMs: 0, running: [] });
  t.same(res.json().requests, [], 'handed once');
  res = await s.call('POST', `/api/v1/agents/node1/requests/${r.id}/answer`, { ok: true, result: { answer: 42 }, extra: 1 });
  t.equal(res.statusCode, 400, 'an answer with unknown fields is refused by the schema');
  res = await s.call('POST', `/api/v1/agents/node1/requests/${r.id}/answer`, { ok: true, result: { answer: 42 } });
  t.equal(res.statusCode, 204, res.body);
  t.same(await asked, { answer: 42 });
  res = await s.call('POST', `/api/v1/agents/node1/requests/${r.id}/answer`, { ok: true, result: {} });
  t.equal(res.statusCode, 409, 'a second answer is refused');

  const failed = pool.request('node1', 'discover', {}, 10_000).catch((e: any) => e);
  const [r2] = (await s.call('POST', '/api/v1/agents/node1/poll', { waitMs: 5000 })).json().requests;
  res = await s.call('POST', `/api/v1/agents/node1/requests/${r2.id}/answer`, { ok: false, error: { code: 'FORBIDDEN', message: 'not one of my sockets' } });
  t.equal(res.statusCode, 204);
  const e = (await failed) as any;
  t.ok(isVmvaultError(e, 'FORBIDDEN'), 'the agent error code is kept');
  t.match(e.message, /agent node1: discover: not one of my sockets/);
});
