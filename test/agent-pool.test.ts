// The appliance's agent pool (issue 12): which agent takes which task, streams, lost agents and
// re-assignment under the same task id, re-delivery of a lost poll answer, cancel, and the
// /agents routes over the real Fastify server (inject). The clock is an input: "an agent goes
// silent for 20 s" is a number, not a wait.

import t from 'tap';
import { AgentPool, type AgentRegistration, type TaskResult } from '../src/backup/agent-pool.js';
import { testServer } from './helpers/control-server.js';

function reg(name: string, over: Partial<AgentRegistration> = {}): AgentRegistration {
  return { name, version: '0.1.0', hostname: `${name}.example`, addresses: ['10.0.0.2'], streams: 2, reach: [], ...over };
}

const SOURCE = { kind: 'nbd' as const, address: 'unix:/run/vmvault/scratch/web01/nbd.sock', exportName: 'vda' };

function task(device = 'vda') {
  return { vm: 'web01', device, source: { ...SOURCE, exportName: device }, target: { share: 'web01', path: `${device}.raw`, size: 1 << 20 }, incremental: false };
}

function pool(t: { teardown(fn: () => unknown): void }, clock: { now: number }, opts: { unassignedTimeoutMs?: number } = {}): AgentPool {
  const p = new AgentPool({ lostAfterMs: 5000, now: () => clock.now, ...opts });
  t.teardown(() => p.close());
  return p;
}

t.test('the pinned agent takes the task; its result resolves the copy and counts in the list', async (t) => {
  const clock = { now: 1_000_000 };
  const p = pool(t, clock);
  p.register(reg('a'), '10.0.0.2');
  p.register(reg('b', { reach: ['*'] }), '10.0.0.3');
  const result = p.submit(task(), { pinned: 'a' });
  t.same(await p.poll('b', 0), [], 'the agent that can reach it does not take a task pinned to a live agent');
  const [got] = await p.poll('a', 0);
  t.equal(got.device, 'vda');
  t.equal(got.v, 1, 'task messages carry their version');
  p.progress('a', got.id, { bytesRead: 4096, bytesSent: 100 });
  t.match(p.list().find((x) => x.name === 'a'), { tasksRunning: 1, tasks: [got.id], bytesRead: 4096, bytesSent: 100 });
  p.done('a', got.id, { ok: true, report: { bytesRead: 1 << 20, bytesSent: 2048, segments: 128, segmentsSent: 0 } });
  const r: TaskResult = await result;
  t.match(r, { agent: 'a', agents: ['a'], bytesRead: 1 << 20, bytesSent: 2048, segmentsSent: 0 });
  t.match(p.list().find((x) => x.name === 'a'), { tasksRunning: 0, tasksDone: 1, bytesRead: 1 << 20, bytesSent: 2048, bytesSaved: (1 << 20) - 2048, state: 'live' });
});

t.test('an agent that declared nothing reachable takes no unpinned task; one that reaches the source does', async (t) => {
  const clock = { now: 0 };
  const p = pool(t, clock);
  p.register(reg('none'), 'x');
  p.register(reg('near', { reach: ['unix:/run/vmvault/'] }), 'y');
  p.register(reg('far', { reach: ['tcp:10.9.'] }), 'z');
  const result = p.submit(task());
  t.same(await p.poll('none', 0), []);
  t.same(await p.poll('far', 0), []);
  const [got] = await p.poll('near', 0);
  t.ok(got, 'the agent whose prefix covers the source took it');
  p.done('near', got.id, { ok: true });
  t.equal((await result).agent, 'near');
});

t.test('a lost agent: its task goes to another that reaches the source, same id; the lost one is refused', async (t) => {
  const clock = { now: 0 };
  const logs: string[] = [];
  const p = new AgentPool({ lostAfterMs: 5000, now: () => clock.now, log: (l) => logs.push(l) });
  t.teardown(() => p.close());
  p.register(reg('a'), 'x');
  p.register(reg('b', { reach: ['*'] }), 'y');
  const result = p.submit(task(), { pinned: 'a' });
  const [first] = await p.poll('a', 0);
  clock.now += 4000;
  p.heartbeat('b');
  p.tick();
  t.equal(p.list().find((x) => x.name === 'a')!.state, 'live', 'within the window it is live');
  clock.now += 2000;
  p.heartbeat('b');
  p.tick();
  t.equal(p.list().find((x) => x.name === 'a')!.state, 'lost', 'silent past lostAfterMs: lost');
  const [again] = await p.poll('b', 0);
  t.equal(again.id, first.id, 'the same task id, so the transfer resumes');
  t.throws(() => p.done('a', first.id, { ok: true }), { code: 'CONFLICT' }, 'the lost agent cannot report it');
  t.throws(() => p.heartbeat('a'), { code: 'CONFLICT' }, 'a lost agent must register again');
  p.done('b', again.id, { ok: true });
  t.same((await result).agents, ['a', 'b']);
  t.ok(logs.some((l) => /agent a: lost/.test(l)) && logs.some((l) => /queued again: agent a was lost/.test(l)), 'both are logged');
});

t.test('an agent restarting under its name gets its task again (register requeues what it ran)', async (t) => {
  const clock = { now: 0 };
  const p = pool(t, clock);
  p.register(reg('a'), 'x');
  const result = p.submit(task(), { pinned: 'a' });
  const [first] = await p.poll('a', 0);
  p.register(reg('a'), 'x');
  const [again] = await p.poll('a', 0);
  t.equal(again.id, first.id);
  p.done('a', again.id, { ok: true });
  t.equal((await result).agent, 'a');
});

t.test('streams cap the tasks per agent; a poll answers again what the agent does not say it runs', async (t) => {
  const clock = { now: 0 };
  const p = pool(t, clock);
  p.register(reg('a', { streams: 1 }), 'x');
  const r1 = p.submit(task('vda'), { pinned: 'a' });
  const r2 = p.submit(task('vdb'), { pinned: 'a' });
  const got = await p.poll('a', 0);
  t.equal(got.length, 1, 'one stream: one task');
  const lostAnswer = await p.poll('a', 0, []);
  t.same(lostAnswer.map((x) => x.id), [got[0].id], 'an answer the agent never read is handed again');
  t.same(await p.poll('a', 0, [got[0].id]), [], 'nothing new while it runs the one');
  p.done('a', got[0].id, { ok: true });
  const next = await p.poll('a', 0, []);
  t.equal(next.length, 1);
  t.not(next[0].id, got[0].id);
  p.done('a', next[0].id, { ok: false, error: 'source vanished' });
  await r1;
  await t.rejects(r2, { code: 'IO', message: /agent a could not copy vdb of web01: source vanished/ });
  t.match(p.list()[0], { tasksDone: 1, tasksFailed: 1 });
});

t.test('a long poll wakes when a task arrives', async (t) => {
  const p = new AgentPool({ lostAfterMs: 5000 });
  t.teardown(() => p.close());
  p.register(reg('a'), 'x');
  const t0 = Date.now();
  const polled = p.poll('a', 5000);
  setTimeout(() => void p.submit(task(), { pinned: 'a' }).catch(() => {}), 50);
  const got = await polled;
  t.equal(got.length, 1);
  t.ok(Date.now() - t0 < 2000, 'answered when the task came, not at the deadline');
});

t.test('no agent for a task within the timeout: a clear failure; cancel forgets the task', async (t) => {
  const clock = { now: 0 };
  const p = pool(t, clock, { unassignedTimeoutMs: 10_000 });
  const orphan = p.submit(task(), { pinned: 'gone' });
  clock.now += 11_000;
  p.tick();
  await t.rejects(orphan, { code: 'NOT_FOUND', message: /agent gone is not registered and no other live agent can reach NBD unix:\/run\/vmvault/ });

  p.register(reg('a'), 'x');
  const ac = new AbortController();
  const cancelled = p.submit(task(), { pinned: 'a', signal: ac.signal });
  const [got] = await p.poll('a', 0);
  ac.abort();
  await t.rejects(cancelled, { code: 'CANCELLED' });
  t.same(p.heartbeat('a').tasks, [], "the heartbeat no longer lists it, so the agent drops it");
  t.throws(() => p.done('a', got.id, { ok: true }), { code: 'CONFLICT' });
});

t.test('bad registrations and reports are refused with the field named', async (t) => {
  const p = pool(t, { now: 0 });
  t.throws(() => p.register(reg('-x'), 'x'), { code: 'INVALID_ARGUMENT', message: /name/ });
  t.throws(() => p.register(reg('a', { streams: 0 }), 'x'), { code: 'INVALID_ARGUMENT', message: /streams/ });
  t.throws(() => p.register(reg('a', { reach: [''] }), 'x'), { code: 'INVALID_ARGUMENT', message: /reach/ });
  t.throws(() => p.heartbeat('nobody'), { code: 'NOT_FOUND' });
  p.register(reg('a'), 'x');
  void p.submit(task(), { pinned: 'a' }).catch(() => {});
  const [got] = await p.poll('a', 0);
  t.throws(() => p.progress('a', got.id, { bytesRead: -1 }), { code: 'INVALID_ARGUMENT', message: /bytesRead/ });
  t.throws(() => p.progress('a', 'no-such-task', {}), { code: 'CONFLICT' });
});

t.test('the /agents routes over HTTP: register, poll, progress, done, list; bad bodies get 4xx', async (t) => {
  const p = new AgentPool({ lostAfterMs: 5000 });
  t.teardown(() => p.close());
  const s = await testServer(t, { agents: p });
  let res = await s.call('POST', '/api/v1/agents/register', reg('host-a', { reach: ['*'] }));
  t.equal(res.statusCode, 200, res.body);
  t.match(res.json(), { heartbeatMs: Number, lostAfterMs: 5000, taskVersion: 1 });
  res = await s.call('POST', '/api/v1/agents/register', { ...reg('host-b'), streams: 1000 });
  t.equal(res.statusCode, 400);
  res = await s.call('POST', '/api/v1/agents/register', { ...reg('host-b'), extra: 1 });
  t.equal(res.statusCode, 400);
  res = await s.call('POST', '/api/v1/agents/nobody/heartbeat', {});
  t.equal(res.statusCode, 404);

  const result = p.submit(task());
  res = await s.call('POST', '/api/v1/agents/host-a/poll', { waitMs: 1000, running: [] });
  t.equal(res.statusCode, 200);
  const [got] = res.json().tasks;
  t.match(got, { v: 1, vm: 'web01', device: 'vda', source: SOURCE, target: { share: 'web01', path: 'vda.raw', size: 1 << 20 }, incremental: false });
  res = await s.call('POST', `/api/v1/agents/host-a/tasks/${got.id}/progress`, { bytesRead: 10, bytesSent: 5 });
  t.equal(res.statusCode, 204);
  res = await s.call('POST', `/api/v1/agents/host-a/tasks/${got.id}/progress`, { bytesRead: 'lots' });
  t.equal(res.statusCode, 400);
  res = await s.call('POST', `/api/v1/agents/host-a/tasks/${got.id}/done`, { ok: true, report: { bytesRead: 1 << 20, bytesSent: 4096 } });
  t.equal(res.statusCode, 204);
  t.match(await result, { agent: 'host-a', bytesSent: 4096 });
  res = await s.call('POST', `/api/v1/agents/host-a/tasks/${got.id}/done`, { ok: true });
  t.equal(res.statusCode, 409, 'a task reported twice: not its own any more');

  res = await s.call('GET', '/api/v1/agents');
  t.equal(res.statusCode, 200);
  t.match(res.json().agents, [{ name: 'host-a', version: '0.1.0', state: 'live', tasksRunning: 0, tasksDone: 1, bytesSent: 4096, bytesSaved: (1 << 20) - 4096 }]);
  const doc = (await s.call('GET', '/api/v1/openapi.json')).json();
  t.ok(doc.paths['/api/v1/agents/{name}/poll'], 'the routes are in the OpenAPI document');
});

t.test('vm add --agent: stored and shown; a bad agent name is refused before anything is written', async (t) => {
  const s = await testServer(t);
  let res = await s.call('POST', '/api/v1/vms', { name: 'web01', qmp: 'unix:/run/qemu/web01.qmp', agent: 'host-a' });
  t.equal(res.statusCode, 201, res.body);
  t.equal(res.json().agent, 'host-a');
  res = await s.call('POST', '/api/v1/vms', { name: 'web02', qmp: 'unix:/run/qemu/web02.qmp', agent: 'bad name!' });
  t.equal(res.statusCode, 400);
  t.match(res.json().error.message, /agent name/);
  res = await s.call('GET', '/api/v1/vms/web01');
  t.equal(res.json().agent, 'host-a');
  t.equal((await s.call('GET', '/api/v1/vms/web02')).statusCode, 404);
});
