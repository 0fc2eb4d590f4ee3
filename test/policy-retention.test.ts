// The GFS retention rule (src/policy/retention.ts) against a model, over random point times, and
// the parsers of --keep, --lock and --backup on bad input.
//
// The model states Proxmox Backup Server's prune rule another way: for each rule in order, the
// periods not yet holding a point kept by an earlier rule, among points no earlier rule decided,
// newest first; the first N of them each keep their newest undecided point and drop the others.
// (PBS walks point by point and stops at the (N+1)th period; since a period is a contiguous span
// of time, the two say the same thing.)

import t from 'tap';
import { parseDuration } from '../src/policy/durations.js';
import { parseCron } from '../src/policy/policies.js';
import { KEEP_RULES, type Keep, parseKeep, periodOf, pointTime, type PointTime, selectRetention } from '../src/policy/retention.js';
import { isVmvaultError } from '../src/errors.js';
import { Rng } from './helpers/data.js';

function model(points: PointTime[], keep: Keep, now: number): Map<string, boolean> {
  const list = [...points].sort((a, b) => b.time - a.time || b.point.localeCompare(a.point));
  const decided = new Map<string, boolean>();
  const any = KEEP_RULES.some((r) => (keep[r] ?? 0) > 0);
  if (!any) {
    for (const p of list) decided.set(p.point, true);
  } else {
    for (const rule of KEEP_RULES) {
      const n = keep[rule] ?? 0;
      if (n === 0) continue;
      const covered = new Set(list.filter((p) => decided.get(p.point) === true).map((p) => periodOf(rule, p.time, p.point)));
      const groups = new Map<string, PointTime[]>();
      for (const p of list) {
        if (decided.has(p.point)) continue;
        const per = periodOf(rule, p.time, p.point);
        if (covered.has(per)) continue;
        if (!groups.has(per)) groups.set(per, []);
        groups.get(per)!.push(p);
      }
      // Map keeps insertion order: newest period first.
      for (const [, members] of [...groups.entries()].slice(0, n)) {
        members.forEach((p, i) => decided.set(p.point, i === 0));
      }
    }
  }
  const out = new Map<string, boolean>();
  for (const p of list) {
    const k = decided.get(p.point) === true;
    out.set(p.point, k || (p.lockedUntil !== undefined && now < p.lockedUntil));
  }
  return out;
}

t.test('the rule matches the model over random point times and keep options', async (t) => {
  const rng = new Rng(1414);
  const base = Date.parse('2024-01-01T00:00:00Z');
  let checked = 0;
  let removedSome = 0;
  for (let round = 0; round < 400; round++) {
    const n = 1 + rng.int(120);
    // Spread: minutes to two years, with clusters (several points in one hour).
    const spanMs = [3_600_000, 86_400_000 * 3, 86_400_000 * 60, 86_400_000 * 800][rng.int(4)];
    const points: PointTime[] = [];
    const used = new Set<string>();
    for (let i = 0; i < n; i++) {
      const time = base + rng.int(spanMs / 1000) * 1000;
      const name = new Date(time).toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/:/g, '-');
      if (used.has(name)) continue;
      used.add(name);
      const p: PointTime = { point: name, time };
      if (rng.int(8) === 0) p.lockedUntil = base + spanMs / 2 + rng.int(spanMs / 1000) * 1000;
      points.push(p);
    }
    const keep: Keep = {};
    for (const r of KEEP_RULES) if (rng.int(2) === 0) keep[r] = rng.int(6);
    const now = base + spanMs;
    const got = selectRetention(points, keep, now);
    const want = model(points, keep, now);
    t.equal(got.length, points.length);
    const mismatch = got.filter((m) => want.get(m.point) !== m.keep);
    if (mismatch.length > 0) {
      t.fail(`round ${round}: keep ${JSON.stringify(keep)}: ${mismatch.map((m) => `${m.point} ${m.keep ? 'kept' : 'removed'} (${m.reason})`).join('; ')}`);
      return;
    }
    // Locks: nothing locked now is ever removed.
    for (const m of got) {
      const p = points.find((x) => x.point === m.point)!;
      if (p.lockedUntil !== undefined && now < p.lockedUntil) t.equal(m.keep, true);
    }
    checked++;
    if (got.some((m) => !m.keep)) removedSome++;
  }
  t.equal(checked, 400);
  t.ok(removedSome > 100, `the random cases remove points often enough to mean something (${removedSome})`);
});

t.test('worked examples: counting across rules, reasons, keep-all', async (t) => {
  const at = (iso: string) => ({ point: iso.replace(/:/g, '-').replace(/\.\d{3}/, ''), time: Date.parse(iso) });
  // Four points per day at 00, 06, 12, 18 local time for 3 days.
  const pts: PointTime[] = [];
  for (let d = 1; d <= 3; d++) for (const h of [0, 6, 12, 18]) pts.push(at(new Date(2026, 0, d, h).toISOString()));
  const marks = selectRetention(pts, { last: 1, daily: 2 }, Date.parse('2026-02-01T00:00:00Z'));
  const kept = marks.filter((m) => m.keep).map((m) => new Date(m.time));
  // last=1 keeps Jan 3 18:00; daily then skips Jan 3 (already covered) and keeps Jan 2 and Jan 1 at 18:00.
  t.same(kept.map((d) => `${d.getDate()} ${d.getHours()}`), ['3 18', '2 18', '1 18']);
  const jan3six = marks.find((m) => new Date(m.time).getDate() === 3 && new Date(m.time).getHours() === 6)!;
  t.equal(jan3six.keep, false);
  t.equal(jan3six.reason, 'not selected by any rule', 'a point in a covered period is left for later rules, then removed');
  const jan2six = marks.find((m) => new Date(m.time).getDate() === 2 && new Date(m.time).getHours() === 6)!;
  t.match(jan2six.reason, /^daily .* keeps a newer point$/);
  t.ok(selectRetention(pts, {}, 0).every((m) => m.keep), 'no rule keeps everything');
  t.ok(selectRetention(pts, { daily: 0 }, 0).every((m) => m.keep), 'all counts 0 keeps everything');
  const locked = selectRetention([{ ...pts[0], lockedUntil: Date.parse('2027-01-01T00:00:00Z') }, ...pts.slice(1)], { last: 1 }, Date.parse('2026-06-01T00:00:00Z'));
  const first = locked.find((m) => m.point === pts[0].point)!;
  t.equal(first.keep, true);
  t.match(first.reason, /^locked until 2027-01-01T00:00:00.000Z \(the rules would remove it: /);
});

t.test('point names give their times', async (t) => {
  t.equal(pointTime('2026-12-05T12-00-00Z'), Date.parse('2026-12-05T12:00:00Z'));
  t.equal(pointTime('2026-12-05T12-00-00Z-3'), Date.parse('2026-12-05T12:00:00Z'));
  t.equal(pointTime('manual-snap'), undefined);
});

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return isVmvaultError(err) ? `${err.code}: ${err.message}` : `bug: ${String(err)}`;
  }
}

t.test('bad --keep, --lock and --backup strings get clear messages', async (t) => {
  t.same(parseKeep('hourly=24,daily=14,weekly=8,monthly=12,yearly=3,last=2'), { hourly: 24, daily: 14, weekly: 8, monthly: 12, yearly: 3, last: 2 });
  for (const [bad, says] of [
    ['', 'must be rules'],
    ['daily', 'is not RULE=COUNT'],
    ['daily=-1', 'is not RULE=COUNT'],
    ['dayly=3', 'unknown rule "dayly"'],
    ['daily=3,daily=4', 'daily is given twice'],
    ['daily=999999', 'is more than'],
    ['daily=1.5', 'is not RULE=COUNT'],
  ] as const) {
    const r = codeOf(() => parseKeep(bad));
    t.match(r, /^INVALID_ARGUMENT: /, bad);
    t.match(r, says, bad);
  }
  t.equal(parseDuration('7d', '--lock'), 7 * 86_400_000);
  t.equal(parseDuration('90s', '--lock'), 90_000);
  t.equal(parseDuration('30min', '--lock'), 1_800_000);
  t.equal(parseDuration('1y', '--lock'), 365 * 86_400_000);
  t.equal(parseDuration('0', '--lock'), 0);
  for (const bad of ['7', '7 days', '-1d', '1.5d', 'd', '7m', '', 'forever']) {
    const r = codeOf(() => parseDuration(bad, '--lock'));
    t.match(r, /^INVALID_ARGUMENT: --lock .* is not a duration: write a whole number and one unit of s, min, h, d, w, y/, bad);
  }
  t.match(codeOf(() => parseDuration(7, '--lock')), /^INVALID_ARGUMENT: --lock must be a duration/);
  t.equal(codeOf(() => parseCron('0 */4 * * *')), 'ok');
  t.equal(codeOf(() => parseCron('*/5 * * * * *')), 'ok', 'six fields (seconds) are accepted');
  for (const bad of ['', '61 * * * *', 'every day', '* * * *', '0 0 31 2 * * * *']) {
    t.match(codeOf(() => parseCron(bad)), /^INVALID_ARGUMENT: --backup /, JSON.stringify(bad));
  }
});
