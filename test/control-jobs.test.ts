// The job runner (state, progress, rate, ETA, cancel, exclusivity, history) and the job routes.

import t from 'tap';
import { vmError } from '../src/errors.js';
import { JobRunner } from '../src/control/jobs.js';
import type { JobContext } from '../src/control/services.js';
import { testServer, waitForJob } from './helpers/control-server.js';

/** A job body that does what the test tells it, one step at a time. */
function controlled() {
  let ctx: JobContext | undefined;
  let finish: ((v: unknown) => void) | undefined;
  let fail: ((e: unknown) => void) | undefined;
  let resolveStarted = () => {};
  const started = new Promise<void>((resolve) => (resolveStarted = resolve));
  function body(c: JobContext): Promise<unknown> {
    ctx = c;
    resolveStarted();
    return new Promise((resolve, reject) => {
      finish = resolve;
      fail = reject;
      c.signal.addEventListener('abort', () => reject(c.signal.reason));
    });
  }
  return {
    body,
    started,
    ctx: () => ctx!,
    finish: (v: unknown) => finish!(v),
    fail: (e: unknown) => fail!(e),
  };
}

t.test('a job runs, reports progress with a smoothed rate and an ETA, and keeps its result', async (t) => {
  let now = 1_000_000;
  const runner = new JobRunner({ now: () => now });
  const c = controlled();
  const started = runner.start('gc', 'store', c.body);
  t.equal(started.state, 'queued');
  t.match(started.id, /^[0-9a-f]{12}$/);
  await c.started;
  t.equal(runner.get(started.id).state, 'running');
  t.equal(runner.get(started.id).startedAt, new Date(1_000_000).toISOString());

  c.ctx().progress(0, 1000, 'bytes');
  now += 1000;
  c.ctx().progress(100, 1000, 'bytes');
  let v = runner.get(started.id);
  t.same(v.progress, { done: 100, total: 1000, unit: 'bytes' });
  t.equal(v.rate, 100, 'first rate: 100 bytes in 1 s');
  t.equal(v.etaSeconds, 9);

  now += 1000;
  c.ctx().progress(400, 1000, 'bytes');
  v = runner.get(started.id);
  t.equal(v.rate, 0.3 * 300 + 0.7 * 100, 'moving average of 300/s and 100/s');
  t.equal(v.etaSeconds, 600 / 160);

  now += 100;
  c.ctx().progress(450, 1000, 'bytes');
  t.equal(runner.get(started.id).rate, 160, 'a report inside the window does not move the rate');

  c.ctx().progress(5, 20, 'items');
  v = runner.get(started.id);
  t.equal(v.rate, null, 'a new unit is a new phase: rate unknown again');
  t.equal(v.etaSeconds, null);

  now += 1000;
  c.ctx().progress(10, 20, 'items');
  t.equal(runner.get(started.id).rate, 5);
  c.ctx().progress(11, 40, 'containers', 'sweeping containers');
  v = runner.get(started.id);
  t.same(v.progress, { done: 11, total: 40, unit: 'containers', phase: 'sweeping containers' }, 'a named phase is reported with its unit');
  t.equal(v.rate, null, 'a new phase starts its rate afresh');

  c.ctx().log('marking');
  c.finish({ reclaimedBytes: 42 });
  v = await runner.wait(started.id);
  t.equal(v.state, 'succeeded');
  t.same(v.result, { reclaimedBytes: 42 });
  t.equal(v.error, null);
  t.equal(v.endedAt, new Date(now).toISOString());
  t.match(v.log, [/marking$/]);
});

t.test('cancel aborts the body and the job ends cancelled', async (t) => {
  const runner = new JobRunner();
  const c = controlled();
  const { id } = runner.start('verify', 'store', c.body);
  await c.started;
  const asked = runner.cancel(id);
  t.equal(asked.cancelRequested, true);
  t.equal(c.ctx().signal.aborted, true);
  const v = await runner.wait(id);
  t.equal(v.state, 'cancelled');
  t.same(v.error, { code: 'CANCELLED', message: `job ${id} was cancelled` });
  t.throws(() => runner.cancel(id), { code: 'CONFLICT', message: /already cancelled/ });
});

t.test('a queued job cancelled before it starts never runs its body', async (t) => {
  const runner = new JobRunner();
  let ran = false;
  const { id } = runner.start('gc', 'store', async () => {
    ran = true;
  });
  runner.cancel(id);
  t.equal((await runner.wait(id)).state, 'cancelled');
  t.equal(ran, false);
});

t.test('failures: typed errors keep their code, bugs become INTERNAL and are reported', async (t) => {
  const reported: unknown[] = [];
  const runner = new JobRunner({ onInternalError: (_job, err) => reported.push(err) });
  const a = runner.start('verify', 'store', async () => {
    throw vmError('CORRUPT_CONTAINER', 'container 000007 is truncated');
  });
  t.same((await runner.wait(a.id)).error, { code: 'CORRUPT_CONTAINER', message: 'container 000007 is truncated' });
  t.equal((await runner.wait(a.id)).state, 'failed');
  const bug = new TypeError('oops');
  const b = runner.start('verify', 'store', async () => {
    throw bug;
  });
  const v = await runner.wait(b.id);
  t.equal(v.state, 'failed');
  t.equal(v.error?.code, 'INTERNAL');
  t.notMatch(v.error?.message, /oops/);
  t.same(reported, [bug]);
});

t.test('exclusivity: gc and index-rebuild exclude each other and verify; verifies overlap', async (t) => {
  const runner = new JobRunner();
  const gc = controlled();
  const { id } = runner.start('gc', 'store', gc.body);
  await gc.started;
  for (const kind of ['gc', 'index-rebuild', 'verify'] as const) {
    try {
      runner.start(kind, 'store', async () => {});
      t.fail(`${kind} should conflict`);
    } catch (err) {
      t.match(err, { code: 'CONFLICT', details: { job: id } }, `${kind} refused with the gc job's id`);
    }
  }
  gc.finish(null);
  await runner.wait(id);
  const v1 = controlled();
  const v2 = controlled();
  const a = runner.start('verify', 'store', v1.body);
  const b = runner.start('verify', 'share vms', v2.body);
  await Promise.all([v1.started, v2.started]);
  t.not(a.id, b.id, 'two verifies at once');
  t.throws(() => runner.start('index-rebuild', 'store', async () => {}), { code: 'CONFLICT', details: { job: a.id } });
  v1.finish(null);
  v2.finish(null);
  await runner.wait(a.id);
  await runner.wait(b.id);
});

t.test('history keeps the last N finished jobs, newest first', async (t) => {
  const runner = new JobRunner({ history: 3 });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const { id } = runner.start('verify', `run ${i}`, async () => i);
    ids.push(id);
    await runner.wait(id);
  }
  t.same(runner.list().map((j) => j.id), ids.slice(2).reverse());
  t.throws(() => runner.get(ids[0]), { code: 'NOT_FOUND', message: /last 3/ });
});

t.test('close cancels running jobs and refuses new ones', async (t) => {
  const runner = new JobRunner();
  const c = controlled();
  const { id } = runner.start('gc', 'store', c.body);
  await c.started;
  await runner.close();
  const v = runner.get(id);
  t.equal(v.state, 'cancelled');
  t.equal(v.error?.code, 'CLOSED');
  t.throws(() => runner.start('gc', 'store', async () => {}), { code: 'CLOSED' });
});

t.test('HTTP: gc lifecycle with progress, result, and 409 for a second gc', async (t) => {
  const s = await testServer(t);
  s.services.plan = { steps: 4, stepMs: 5, perStep: 1 << 20 };
  let release = () => {};
  s.services.gate = new Promise<void>((resolve) => (release = resolve));
  const start = await s.call('POST', '/api/v1/gc');
  t.equal(start.statusCode, 202);
  const id = start.json().job;
  t.match(id, /^[0-9a-f]{12}$/);
  t.equal(start.headers.location, `/api/v1/jobs/${id}`);

  const second = await s.call('POST', '/api/v1/gc');
  t.equal(second.statusCode, 409);
  t.equal(second.json().error.code, 'CONFLICT');
  t.equal(second.json().error.job, id, "the running job's id");
  const rebuild = await s.call('POST', '/api/v1/index/rebuild');
  t.equal(rebuild.statusCode, 409);
  t.equal(rebuild.json().error.job, id);

  // The steps are done; the body waits at the gate: progress is complete, the job still running.
  let view: Record<string, any> = {};
  for (let i = 0; i < 200; i++) {
    view = (await s.call('GET', `/api/v1/jobs/${id}`)).json();
    if (view.progress.done === 4 << 20) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  t.equal(view.state, 'running');
  t.same(view.progress, { done: 4 << 20, total: 4 << 20, unit: 'bytes' });
  t.equal(view.kind, 'gc');
  t.equal(view.target, 'store');
  t.match(view.log, [/starting: 4 steps/]);

  const listed = (await s.call('GET', '/api/v1/jobs')).json().jobs;
  t.same(listed.map((j: { id: string }) => j.id), [id]);

  release();
  const done = await waitForJob(s, id);
  t.equal(done.state, 'succeeded');
  t.same(done.result, { reclaimedBytes: 2 << 20, copiedBytes: 0, deadBytes: 2 << 20, deadBytesKept: 0, containersRemoved: 3, containersRewritten: 1, liveSegments: 100, deadSegments: 40 });
  t.equal(done.etaSeconds, 0);
  const again = await s.call('POST', '/api/v1/gc');
  t.equal(again.statusCode, 202, 'a new gc once the first has ended');
  await waitForJob(s, again.json().job);
});

t.test('HTTP: DELETE cancels a running job', async (t) => {
  const s = await testServer(t);
  s.services.plan = { steps: 1000, stepMs: 5, perStep: 1 };
  const id = (await s.call('POST', '/api/v1/verify', { full: true })).json().job;
  await new Promise((r) => setTimeout(r, 30));
  const del = await s.call('DELETE', `/api/v1/jobs/${id}`);
  t.equal(del.statusCode, 202);
  t.equal(del.json().cancelRequested, true);
  const done = await waitForJob(s, id);
  t.equal(done.state, 'cancelled');
  t.equal(done.error.code, 'CANCELLED');
  t.ok(done.progress.done < 1000, 'stopped early');
  const late = await s.call('DELETE', `/api/v1/jobs/${id}`);
  t.equal(late.statusCode, 409);
  t.equal(late.json().error.job, id);
  t.equal((await s.call('DELETE', '/api/v1/jobs/0123456789ab')).statusCode, 404);
  t.equal((await s.call('GET', '/api/v1/jobs/0123456789ab')).statusCode, 404);
});

t.test('HTTP: verify targets', async (t) => {
  const s = await testServer(t);
  await s.call('POST', '/api/v1/shares', { name: 'vms' });
  await s.call('POST', '/api/v1/shares/vms/snapshots', { name: 'nightly' });

  const whole = await s.call('POST', '/api/v1/verify');
  t.equal(whole.statusCode, 202, 'no body: the whole store');
  t.equal((await waitForJob(s, whole.json().job)).target, 'store');

  const snap = await s.call('POST', '/api/v1/verify', { share: 'vms', snapshot: 'nightly', full: true });
  const done = await waitForJob(s, snap.json().job);
  t.equal(done.target, 'snapshot vms/nightly (full)');
  t.equal(done.result.target, 'snapshot vms/nightly');
  t.same(s.services.calls.at(-1), 'verify {"share":"vms","snapshot":"nightly","full":true}');

  const noShare = await s.call('POST', '/api/v1/verify', { share: 'nope' });
  t.equal(noShare.statusCode, 404, 'an unknown share fails at once, not as a failed job');
  const snapOnly = await s.call('POST', '/api/v1/verify', { snapshot: 'nightly' });
  t.equal(snapOnly.statusCode, 400);
  t.match(snapOnly.json().error.message, /snapshot needs share/);
});

t.test('HTTP: a failing job reports its error code', async (t) => {
  const s = await testServer(t);
  s.services.failNextJob = vmError('NO_SPACE', 'the data disk is full');
  const id = (await s.call('POST', '/api/v1/index/rebuild')).json().job;
  const done = await waitForJob(s, id);
  t.equal(done.state, 'failed');
  t.same(done.error, { code: 'NO_SPACE', message: 'the data disk is full' });
  t.equal(done.kind, 'index-rebuild');
});

t.test('HTTP: closing the server cancels its jobs', async (t) => {
  const s = await testServer(t);
  s.services.plan = { steps: 10000, stepMs: 5, perStep: 1 };
  const gc = s.services.gc.bind(s.services);
  let signal: AbortSignal | undefined;
  s.services.gc = (ctx) => {
    signal = ctx.signal;
    return gc(ctx);
  };
  await s.call('POST', '/api/v1/gc');
  while (signal === undefined) await new Promise((r) => setTimeout(r, 5));
  const t0 = Date.now();
  await s.app.close();
  t.ok(Date.now() - t0 < 2000, 'close did not wait for the whole job');
  t.equal(signal.aborted, true, 'the job body was told to stop');
  t.match(signal.reason, { code: 'CLOSED' });
});
