// Job history across restarts (issue 10): kept in <data>/jobs.json, bounded, with each job's log;
// a job that was running when the process died comes back as failed (interrupted), never as
// running. Unit tests on the runner and the file, then a real appliance restarted.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { JobHistoryFile } from '../src/control/job-history.js';
import { JobRunner } from '../src/control/jobs.js';
import { isVmvaultError } from '../src/errors.js';
import { startAppliance } from './helpers/appliance.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('finished jobs and their logs survive; a running one comes back failed, interrupted', async (t) => {
  const file = path.join(tmpDir(t), 'jobs.json');
  const a = new JobRunner({ persist: new JobHistoryFile(file) });
  await a.restore();
  const done = a.start('gc', 'store', async (ctx) => {
    ctx.log('marked 3 file versions');
    ctx.progress(10, 10, 'items');
    return { reclaimedBytes: 4096 };
  });
  await a.wait(done.id);
  let started = () => {};
  const running = a.start('verify', 'share vms', (ctx) => {
    ctx.log('checking containers');
    started();
    return new Promise(() => {}); // never ends: the process "dies" with it running
  });
  await new Promise<void>((resolve) => (started = resolve));
  await a.flush();
  t.equal(a.get(running.id).state, 'running');

  // A new process: no close() of the old runner, as after a crash or SIGKILL.
  const b = new JobRunner({ persist: new JobHistoryFile(file) });
  await b.restore();
  const list = b.list();
  t.same(list.map((j) => j.id), [running.id, done.id], 'newest first, both kept');
  t.match(b.get(done.id), { kind: 'gc', target: 'store', state: 'succeeded', result: { reclaimedBytes: 4096 }, progress: { done: 10, total: 10 }, error: null });
  t.match(b.get(done.id).log, [/ marked 3 file versions$/]);
  const cut = b.get(running.id);
  t.equal(cut.state, 'failed', 'not running after a restart');
  t.match(cut.error, { code: 'CLOSED', message: /^interrupted: the appliance stopped while this job was running/ });
  t.match(cut.log, [/ checking containers$/]);
  // The interrupted job no longer blocks anything.
  const next = b.start('gc', 'store', async () => ({}));
  t.equal((await b.wait(next.id)).state, 'succeeded');
  await b.close();
  const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
  t.match(saved, { format: 'vmvault-jobs', version: 1 });
  t.same(saved.jobs.map((j: { id: string }) => j.id), [done.id, running.id, next.id], 'oldest first on disk');
});

t.test('the history is bounded', async (t) => {
  const file = path.join(tmpDir(t), 'jobs.json');
  const a = new JobRunner({ persist: new JobHistoryFile(file), history: 3 });
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) {
    const j = a.start('gc', 'store', async (ctx) => {
      for (let l = 0; l < 80; l++) ctx.log(`line ${l}`);
      return {};
    });
    ids.push(j.id);
    await a.wait(j.id);
  }
  await a.close();
  const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
  t.same(saved.jobs.map((j: { id: string }) => j.id), ids.slice(3), 'the last 3 jobs');
  t.equal(saved.jobs[0].log.length, 50, 'each log bounded');
  t.match(saved.jobs[0].log[49], / line 79$/);
  const b = new JobRunner({ persist: new JobHistoryFile(file), history: 2 });
  await b.restore();
  t.same(b.list().map((j) => j.id), ids.slice(4).reverse(), 'a smaller bound on restore trims');
  // The trim is saved in the background: wait for it, or it lands in the folder as the teardown
  // removes it (ENOTEMPTY, seen on a fast machine).
  await b.close();
});

t.test('an unreadable history is moved aside, a newer one refused', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'jobs.json');
  fs.writeFileSync(file, '{"format": "vmvault-jobs", "version": 1, "jobs": [');
  const lines: string[] = [];
  const r = new JobRunner({ persist: new JobHistoryFile(file, (l) => lines.push(l)) });
  await r.restore();
  t.same(r.list(), []);
  t.match(lines, [/job history .*jobs\.json is unreadable .*; moved it to .*jobs\.json\.bad-.* and started an empty history/]);
  t.equal(fs.readdirSync(dir).filter((n) => n.startsWith('jobs.json.bad-')).length, 1, 'the old file is kept for a person to look at');
  await r.close();

  fs.writeFileSync(file, JSON.stringify({ format: 'vmvault-jobs', version: 2, jobs: [] }));
  const err = await new JobHistoryFile(file).load().catch((e: unknown) => e);
  t.ok(isVmvaultError(err, 'UNSUPPORTED_FORMAT'), 'a newer format is refused');
  t.match((err as Error).message, /format version 2; this vmvault reads up to 1/);
});

t.test('a real appliance keeps its job history across a restart', async (t) => {
  const dir = tmpDir(t);
  const first = await startAppliance(t, path.join(dir));
  const started = await first.api('POST', '/gc');
  t.equal(started.status, 202);
  const id = started.body.job as string;
  let job: any;
  for (let i = 0; i < 300; i++) {
    job = (await first.api('GET', `/jobs/${id}`)).body;
    if (job.state !== 'queued' && job.state !== 'running') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.equal(job.state, 'succeeded');
  t.equal(await first.stop(), 0);

  const again = await startAppliance(t, path.join(dir));
  const after = (await again.api('GET', `/jobs/${id}`)).body;
  t.same(after, job, 'the same job, result and log after the restart');
  t.ok(fs.existsSync(path.join(again.data, 'jobs.json')));
});
