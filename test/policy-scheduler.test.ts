// The policy scheduler with a hand-moved clock (no test waits on real time): due runs start
// backups, at most maxParallel at once with the rest queued; a VM whose run is still going is
// not started again (skipped, recorded); after downtime the missed times give ONE run per VM,
// not one per missed time; the run history and the schedule state survive a restart.
//
// The backups here are a test double (a starter whose jobs the test finishes by hand): this test
// is about the scheduler's decisions; test/policy-backup.test.ts runs the same scheduler against
// the real BackupService and QEMU.

import t from 'tap';
import { vmError } from '../src/errors.js';
import { PolicyRegistry } from '../src/policy/policies.js';
import { RunHistory } from '../src/policy/run-history.js';
import { type BackupStarter, Scheduler } from '../src/policy/scheduler.js';
import { ManualClock } from './helpers/manual-clock.js';
import { tmpDir } from './helpers/tmpdir.js';

const MIN = 60_000;
// A round local time: cron fields are local time, like the appliance's.
const T0 = new Date(2026, 11, 5, 12, 0, 0).getTime();

/** Waits for the scheduler's bookkeeping (file writes) to catch up; schedule time never passes by itself. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
}

class Starter {
  calls: Array<{ vm: string; job: string; finish(ok?: boolean): void }> = [];
  refuse = new Set<string>();
  private n = 0;
  readonly start: BackupStarter = async (vm) => {
    if (this.refuse.has(vm)) throw vmError('CONFLICT', `backup job j-manual (vm ${vm}) is running; wait for it or cancel it before starting backup`);
    const job = `j${++this.n}`;
    let finish!: (ok?: boolean) => void;
    const done = new Promise<{ ok: boolean; point?: string; error?: string }>((resolve) => {
      finish = (ok = true) => resolve(ok ? { ok, point: `point-${job}` } : { ok, error: 'the backup failed on purpose' });
    });
    this.calls.push({ vm, job, finish });
    return { job, done };
  };
  running(): string[] {
    return this.calls.map((c) => c.vm);
  }
}

t.test('due runs start, bounded, never overlapping per VM; missed runs after downtime run once', async (t) => {
  const dir = tmpDir(t, 'vmvault-sched-');
  const clock = new ManualClock(T0);
  const registry = await PolicyRegistry.open(dir);
  await registry.create({ name: 'gold', backup: '*/10 * * * *', keep: 'last=3' }, new Date(T0));
  for (const vm of ['a', 'b', 'c']) await registry.assign('gold', vm);
  let history = await RunHistory.open(dir);
  const st = new Starter();
  let sched = new Scheduler({ registry, history, start: st.start, clock, maxParallel: 2 });
  await sched.start();
  t.same(st.calls, [], 'nothing is due at creation time');
  t.same(sched.nextRuns(registry.get('gold'), 2), [new Date(T0 + 10 * MIN).toISOString(), new Date(T0 + 20 * MIN).toISOString()]);

  clock.set(T0 + 10 * MIN);
  await sched.ticked();
  t.same(st.running(), ['a', 'b'], 'two run at once (maxParallel 2)');
  t.same(sched.activity().queued.map((q) => q.vm), ['c'], 'the third waits in the queue');

  // The next time comes while a and b still run and c still waits: none of them is doubled.
  clock.set(T0 + 20 * MIN);
  await sched.ticked();
  t.same(st.running(), ['a', 'b']);
  const skipped = history.list('gold').filter((r) => r.event === 'skipped');
  t.same(skipped.map((r) => r.vm).sort(), ['a', 'b', 'c'], 'each VM\'s due run is skipped, recorded');
  t.match(skipped.find((r) => r.vm === 'a')!.detail, 'its previous run (job j1) is still running');
  t.match(skipped.find((r) => r.vm === 'c')!.detail, 'still queued');

  st.calls[0].finish();
  await until(() => st.calls.length >= 3);
  t.same(st.running(), ['a', 'b', 'c'], 'a finished: c starts');
  st.calls[1].finish(false);
  st.calls[2].finish();
  await sched.settled();
  const ends = history.list('gold').filter((r) => r.event === 'succeeded' || r.event === 'failed');
  t.same(ends.map((r) => `${r.vm} ${r.event}`).sort(), ['a succeeded', 'b failed', 'c succeeded']);
  t.equal(ends.find((r) => r.vm === 'a')!.point, 'point-j1');
  t.equal(ends.find((r) => r.vm === 'b')!.detail, 'the backup failed on purpose');

  // A manual backup of b holds the VM: the scheduled run is skipped with the reason.
  st.refuse.add('b');
  clock.set(T0 + 30 * MIN);
  await sched.ticked();
  await until(() => st.calls.length >= 5 && history.list('gold', 'b').at(-1)?.event === 'skipped');
  t.same(st.running().slice(3), ['a', 'c']);
  for (const c of st.calls.slice(3)) c.finish();
  await sched.settled();
  const bSkip = history.list('gold', 'b').at(-1)!;
  t.equal(bSkip.event, 'skipped');
  t.match(bSkip.detail, 'not started: backup job j-manual');
  st.refuse.clear();

  // Downtime: the appliance stops at T0+30min and starts again 5 hours later (30 times missed).
  sched.stop();
  history = await RunHistory.open(dir); // what a restarted appliance reads
  t.ok(history.list('gold').length >= 10, 'the run history survived the restart');
  const before = st.calls.length;
  clock.set(T0 + 30 * MIN + 5 * 60 * MIN + 3 * MIN);
  sched = new Scheduler({ registry, history, start: st.start, clock, maxParallel: 3 });
  await sched.start();
  const after = st.calls.slice(before);
  t.same(after.map((c) => c.vm), ['a', 'b', 'c'], 'one run per VM at start, not one per missed time');
  const started = history.list('gold').filter((r) => r.event === 'started').slice(-3);
  t.match(started[0].detail, '29 earlier scheduled time(s) passed while the appliance was down or busy: run once, not for each');
  t.equal(started[0].due, new Date(T0 + 5 * 60 * MIN + 30 * MIN).toISOString(), 'the run is for the latest missed time');
  for (const c of after) c.finish();
  await sched.settled();
  // And the schedule goes on from there.
  clock.set(T0 + 5 * 60 * MIN + 39 * MIN);
  await sched.settled();
  t.equal(st.calls.length, before + 3, 'nothing more before the next time (17:40)');
  clock.set(T0 + 5 * 60 * MIN + 40 * MIN);
  await sched.ticked();
  await until(() => st.calls.length >= before + 6);
  t.equal(st.calls.length, before + 6, 'the next time runs each VM once');
  for (const c of st.calls.slice(before + 3)) c.finish();
  await sched.settled();
  sched.stop();
  t.equal(clock.pending(), 0, 'stop leaves no timer');
});

t.test('the queue is bounded: runs past it are recorded as skipped', async (t) => {
  const dir = tmpDir(t, 'vmvault-sched-q-');
  const clock = new ManualClock(T0);
  const registry = await PolicyRegistry.open(dir);
  await registry.create({ name: 'silver', backup: '0 * * * *' }, new Date(T0));
  for (const vm of ['a', 'b', 'c', 'd']) await registry.assign('silver', vm);
  const history = await RunHistory.open(dir);
  const st = new Starter();
  const sched = new Scheduler({ registry, history, start: st.start, clock, maxParallel: 1, maxQueue: 2 });
  t.teardown(() => sched.stop());
  await sched.start();
  clock.set(T0 + 60 * MIN);
  await sched.ticked();
  await until(() => history.list('silver').length >= 2);
  t.same(st.running(), ['a']);
  const skip = history.list('silver').filter((r) => r.event === 'skipped');
  t.same(skip.map((r) => r.vm), ['d']);
  t.match(skip[0].detail, '2 runs are already queued (the limit)');
  for (let i = 0; i < 3; i++) {
    st.calls[i].finish();
    await until(() => st.calls.length >= i + 2);
  }
  await sched.settled();
  t.same(st.running(), ['a', 'b', 'c']);
});
