// `--dr` in policies without waiting on real time: the spec's grammar and its refusals, the
// policy file keeping it across a reopen, and the DR scheduler on a hand-moved clock: one copy per
// scheduled time, one copy for many times missed while the appliance was down, a skipped copy
// while one to the same destination runs, retries of a failed one on the backoff. The copies
// here are a starter that records its calls (the DR copy itself is dr-copy.test.ts and, in a real
// appliance, dr-appliance.test.ts).

import t from 'tap';
import { parseDrSpec } from '../src/policy/dr-spec.js';
import { DrScheduler, DR_RUN_VM } from '../src/policy/dr-scheduler.js';
import { PolicyRegistry } from '../src/policy/policies.js';
import { RunHistory } from '../src/policy/run-history.js';
import { ManualClock } from './helpers/manual-clock.js';
import { tmpDir } from './helpers/tmpdir.js';

const HOUR = 3_600_000;
// Local time: 2026-12-05 12:00.
const T0 = new Date(2026, 11, 5, 12, 0, 0).getTime();

t.test('the --dr grammar', async (t) => {
  t.same(parseDrSpec('daily 03:00 -> dr-1'), { spec: 'daily 03:00 -> dr-1', cron: '0 3 * * *', destination: 'dr-1' });
  t.same(parseDrSpec('  daily   03:00  ->  /mnt/dr/  '), { spec: 'daily 03:00 -> /mnt/dr', cron: '0 3 * * *', destination: '/mnt/dr' });
  t.same(parseDrSpec('0 */6 * * * -> dr-1').cron, '0 */6 * * *');
  t.same(parseDrSpec('weekly sun 02:30 -> /x').cron, '30 2 * * 0');
  for (const [bad, why] of [
    ['daily 25:00 -> dr-1', /--dr .*"25:00" is not a time HH:MM/],
    ['daily 03:00', /--dr .*no '->'/],
    ['daily 03:00 -> ', /--dr .*no destination/],
    ['daily 03:00 -> rel/dir', /--dr .*destination name/],
    ['every day -> dr-1', /--dr .*neither a cron expression/],
  ] as const) {
    t.throws(() => parseDrSpec(bad), { code: 'INVALID_ARGUMENT', message: why }, bad);
  }
  t.throws(() => parseDrSpec(3), { code: 'INVALID_ARGUMENT' });
});

t.test('a policy keeps its --dr across a reopen; a bad one is refused', async (t) => {
  const dir = tmpDir(t, 'vmvault-drpol-');
  const r = await PolicyRegistry.open(dir);
  await r.create({ name: 'gold', backup: '0 * * * *', dr: 'daily 03:00 -> dr-1' }, new Date(T0));
  await t.rejects(r.create({ name: 'silver', backup: '0 * * * *', dr: 'nightly -> dr-1' }, new Date(T0)), { code: 'INVALID_ARGUMENT' });
  const again = await PolicyRegistry.open(dir);
  t.same(again.get('gold').dr, { spec: 'daily 03:00 -> dr-1', cron: '0 3 * * *', destination: 'dr-1' });
  t.equal(again.list().length, 1);
});

t.test('the DR scheduler: on time, missed runs once, no overlap, retries', async (t) => {
  const dir = tmpDir(t, 'vmvault-drsched-');
  const clock = new ManualClock(T0);
  const registry = await PolicyRegistry.open(dir);
  await registry.create({ name: 'gold', backup: '0 * * * *', dr: 'daily 03:00 -> /mnt/dr-1' }, new Date(T0));
  const history = await RunHistory.open(dir);
  const calls: Array<{ at: number; to: string; policy: string }> = [];
  let outcome: () => Promise<{ ok: boolean; error?: string; copy?: string }> = async () => ({ ok: true, copy: 'c1' });
  let hold: Promise<void> | undefined;
  const mk = () =>
    new DrScheduler({
      registry,
      history,
      clock,
      retryMs: [60_000, 300_000],
      start: async (to, policy) => {
        calls.push({ at: clock.now(), to, policy });
        const h = hold;
        return { job: `job${calls.length}`, done: (async () => { if (h) await h; return outcome(); })() };
      },
    });
  // Fires due timers and lets the scheduler's file writes finish, until `cond` holds (2 s at most).
  const pump = async (cond: () => boolean) => {
    for (let i = 0; i < 200 && !cond(); i++) {
      clock.set(clock.t);
      await s.settled();
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const dayAt3 = (d: number) => new Date(2026, 11, d, 3, 0, 0).getTime();
  let s = mk();
  await s.start();
  await pump(() => false);
  t.equal(calls.length, 0, 'nothing due at noon');
  clock.set(dayAt3(6));
  await pump(() => calls.length >= 1 && history.list().some((r) => r.event === 'succeeded'));
  t.same(calls.map((c) => [c.to, c.policy]), [['/mnt/dr-1', 'gold']], 'one copy at 03:00');
  t.same(history.list().filter((r) => r.vm === DR_RUN_VM).map((r) => r.event), ['started', 'succeeded']);

  // Down for three days: one copy at the start, not three.
  s.stop();
  clock.t = new Date(2026, 11, 9, 10, 0, 0).getTime();
  s = mk();
  await s.start();
  await pump(() => false);
  t.equal(calls.length, 2, 'three missed times give one copy');

  // A copy still running when the next one comes due: skipped, recorded.
  let release!: () => void;
  hold = new Promise<void>((r) => (release = r));
  clock.set(dayAt3(10));
  for (let i = 0; i < 200 && calls.length < 3; i++) {
    clock.set(clock.t);
    await new Promise((r) => setTimeout(r, 10));
  }
  t.equal(calls.length, 3);
  clock.set(dayAt3(11));
  for (let i = 0; i < 200 && !history.list().some((r) => r.event === 'skipped'); i++) {
    clock.set(clock.t);
    await new Promise((r) => setTimeout(r, 10));
  }
  t.equal(calls.length, 3, 'not started beside the running one');
  t.ok(history.list().some((r) => r.event === 'skipped' && /DR copy to \/mnt\/dr-1 not started/.test(r.detail ?? '')), 'the skip is in the history');
  release();
  hold = undefined;
  await pump(() => false);

  // A failure is retried on the backoff, then given up until the next time.
  outcome = async () => ({ ok: false, error: 'IO: disk gone' });
  clock.set(dayAt3(12));
  await pump(() => calls.length >= 4);
  t.equal(calls.length, 4);
  const failedWith = (re: RegExp) => () => history.list().some((r) => r.event === 'failed' && re.test(r.detail ?? ''));
  await pump(failedWith(/retry 1 of 2 at/));
  clock.advance(60_000);
  await pump(() => calls.length >= 5);
  t.equal(calls.length, 5, 'first retry after 1 min');
  await pump(failedWith(/retry 2 of 2 at/));
  clock.advance(300_000);
  await pump(() => calls.length >= 6);
  t.equal(calls.length, 6, 'second retry after 5 min');
  clock.advance(HOUR);
  await pump(() => history.list().some((r) => /gave up/.test(r.detail ?? '')));
  t.equal(calls.length, 6, 'no more retries');
  const fails = history.list().filter((r) => r.event === 'failed').map((r) => r.detail);
  t.match(fails.at(-1), /gave up after 2 retries/);
  s.stop();
});
