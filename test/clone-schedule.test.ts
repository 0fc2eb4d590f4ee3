// Scheduled clone copies (issue 14 part B) with a hand-moved clock: a policy's `--clone
// 'hourly -> down'` to a destination that does not answer fails the copy, records the failure
// and the retry time in the run history, retries on the backoff schedule, and gives up after
// the last retry; meanwhile the policy's backups go on. When the destination answers (a
// directory here), the scheduled copy succeeds and the point's copy is recorded.
//
// The backups are a test double (a starter that records calls): this test is about the clone
// scheduler beside the backup scheduler. The copies are real: CloneService to a real (refused)
// address and to a real directory archive.

import t from 'tap';
import path from 'node:path';
import { CloneScheduler } from '../src/policy/clone-scheduler.js';
import { PolicyRegistry } from '../src/policy/policies.js';
import { RunHistory } from '../src/policy/run-history.js';
import { type BackupStarter, Scheduler } from '../src/policy/scheduler.js';
import { cloneSource } from './helpers/clone-source.js';
import { ManualClock } from './helpers/manual-clock.js';
import { tmpDir } from './helpers/tmpdir.js';

const MIN = 60_000;
const T0 = new Date(2026, 11, 5, 12, 0, 0).getTime();

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

t.test('a destination that does not answer: the copy fails with a retry schedule, the backups go on', async (t) => {
  const src = await cloneSource(t);
  await src.point('vm1', 'P1', Buffer.alloc(64 * 1024, 5));
  await src.clones.addDestination({ name: 'down', appliance: 'http://127.0.0.1:9', token: 'vva_' + '1'.repeat(64) });
  await src.clones.addDestination({ name: 'tape', dir: path.join(tmpDir(t, 'vmvault-sched-tape-'), 'a') });
  const dir = tmpDir(t, 'vmvault-clone-sched-');
  const clock = new ManualClock(T0);
  const registry = await PolicyRegistry.open(dir);
  await t.rejects(registry.create({ name: 'bad', backup: '0 * * * *', clone: 'daily 2am -> down' }), { code: 'INVALID_ARGUMENT', message: /--clone/ });
  await registry.create({ name: 'gold', backup: '*/10 * * * *', clone: ['hourly -> down', 'hourly :30 -> tape'] }, new Date(T0));
  await registry.assign('gold', 'vm1');
  t.same(registry.get('gold').clones?.map((c) => c.cron), ['0 * * * *', '30 * * * *']);
  const history = await RunHistory.open(dir);

  const backups: string[] = [];
  const startBackup: BackupStarter = async (vm) => {
    backups.push(vm);
    return { job: `b${backups.length}`, done: Promise.resolve({ ok: true, point: `p${backups.length}` }) };
  };
  const sched = new Scheduler({ registry, history, start: startBackup, clock });
  let n = 0;
  const cloneSched = new CloneScheduler({
    registry,
    history,
    clock,
    retryMs: [5 * MIN, 15 * MIN],
    start: async (vm, destination) => ({
      job: `c${++n}`,
      done: src.clones.clone(vm, destination, undefined).then(
        (r) => ({ ok: true, point: r.point }),
        (err: Error) => ({ ok: false, error: err.message }),
      ),
    }),
  });
  t.teardown(() => {
    sched.stop();
    cloneSched.stop();
  });
  await sched.start();
  await cloneSched.start();

  const events = (what: RegExp) => history.list('gold', 'vm1').filter((r) => what.test(r.detail ?? ''));
  // 13:00: the hourly copy to "down" is due, and backups every 10 minutes.
  for (let m = 10; m <= 60; m += 10) {
    clock.set(T0 + m * MIN);
    await sched.ticked();
    await cloneSched.ticked();
    await sched.settled();
  }
  await until(() => events(/clone to down failed/).length >= 1);
  await cloneSched.settled();
  const fail1 = events(/clone to down failed/);
  t.equal(fail1.length, 1, 'the copy failed once');
  t.match(fail1[0].detail, /127\.0\.0\.1:9.*retry 1 of 2 at 2026-12-05T\d\d:05:00/, `the failure says why and when it retries: ${fail1[0].detail}`);
  t.equal(backups.length, 6, 'the policy backed up at every schedule time meanwhile');

  // The retries: 5 min later, then 15 min after that; then it gives up until the next schedule.
  clock.set(T0 + 65 * MIN);
  await until(() => events(/clone to down failed/).length >= 2);
  t.match(events(/clone to down failed/)[1].detail, /retry 2 of 2 at 2026-12-05T\d\d:20:00/, 'the first retry failed: the second is scheduled');
  t.ok(events(/clone to down \(retry 1 of 2\)/).length === 1, 'the retry started as a clone job');
  clock.set(T0 + 80 * MIN);
  await until(() => events(/clone to down failed/).length >= 3);
  t.match(events(/clone to down failed/)[2].detail, /gave up after 2 retries; the next scheduled time tries again/);
  await cloneSched.settled();

  // The backups went on all along; the copies to the directory at :30 succeeded and are recorded.
  clock.set(T0 + 90 * MIN);
  await sched.ticked();
  await sched.settled();
  t.ok(backups.length >= 7, `backups went on (once per tick that found times due): ${backups.length}`);
  const ok = history.list('gold', 'vm1').filter((r) => r.event === 'succeeded' && /clone to tape/.test(r.detail ?? ''));
  t.equal(ok.length, 2, 'the scheduled copies to the directory at 12:30 and 13:30 succeeded');
  t.same(src.clones.copiesOf('vm1', 'P1').map((c) => c.destination), ['tape'], 'and its copy is recorded');
});
