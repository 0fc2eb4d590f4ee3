// Grandfather-father-son retention: which restore points to keep, following Proxmox Backup
// Server's prune semantics (pbs-datastore/src/prune.rs), so an operator who knows PBS's
// `keep-*` options reads ours the same way:
//
//   Points are taken newest first. The rules run in the order last, hourly, daily, weekly,
//   monthly, yearly. For a rule with count N, each point not yet decided by an earlier rule is
//   visited newest first and named by its period (last: itself; hourly: its local hour; daily:
//   its local day; weekly: its ISO week; monthly; yearly). A period that already holds a point
//   kept by an EARLIER rule is skipped (the point stays undecided for later rules). The first
//   point of a new period is kept (the period counts towards N); once N periods are taken the
//   rule stops. A later point of a period this rule already took is marked for removal, and no
//   later rule looks at it again. Whatever no rule kept is removed.
//
// So a point kept by one rule counts for the next rule's period too: with hourly=2,daily=2 the
// two newest hours are kept, and daily then starts with the newest day none of them is in.
// Periods are in the appliance's local time zone (as the schedules are), weeks are ISO 8601.
// No rule at all (every count 0 or absent) keeps everything, as in PBS.
//
// One departure from PBS: a retention-locked point is not taken out of the rules (PBS skips
// "protected" snapshots before counting). Here every new point is locked, so skipping them would
// push every rule onto older points. The rules run over all points; a point the rules would
// remove but whose lock has not ended is kept, with the lock as its reason, and goes at the
// first prune after the lock ends.

import { vmError } from '../errors.js';

export const KEEP_RULES = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
export type KeepRule = (typeof KEEP_RULES)[number];
export type Keep = Partial<Record<KeepRule, number>>;

/** The most a count may be (a typo of 1e9 is a mistake, not a policy). */
export const MAX_KEEP = 100_000;

/** "hourly=24,daily=14,weekly=8,monthly=12,yearly=3,last=5" -> Keep. */
export function parseKeep(text: unknown): Keep {
  if (typeof text !== 'string' || text.trim() === '') {
    throw vmError('INVALID_ARGUMENT', `--keep must be rules such as 'daily=14,weekly=8' (rules: ${KEEP_RULES.join(', ')}), not ${JSON.stringify(text)}`);
  }
  const keep: Keep = {};
  for (const part of text.split(',')) {
    const m = /^\s*([a-z]+)\s*=\s*(\d{1,6})\s*$/.exec(part);
    if (!m) throw vmError('INVALID_ARGUMENT', `--keep ${JSON.stringify(text)}: ${JSON.stringify(part)} is not RULE=COUNT (rules: ${KEEP_RULES.join(', ')})`);
    const rule = m[1] as KeepRule;
    if (!KEEP_RULES.includes(rule)) throw vmError('INVALID_ARGUMENT', `--keep ${JSON.stringify(text)}: unknown rule ${JSON.stringify(m[1])} (rules: ${KEEP_RULES.join(', ')})`);
    if (keep[rule] !== undefined) throw vmError('INVALID_ARGUMENT', `--keep ${JSON.stringify(text)}: ${rule} is given twice`);
    const n = Number(m[2]);
    if (n > MAX_KEEP) throw vmError('INVALID_ARGUMENT', `--keep ${JSON.stringify(text)}: ${rule}=${n} is more than ${MAX_KEEP}`);
    keep[rule] = n;
  }
  return keep;
}

/** Checks a Keep that arrived as JSON (API body, policies.json). */
export function checkKeep(v: unknown, where: string): Keep {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw vmError('INVALID_ARGUMENT', `${where}: keep must be an object of rule -> count`);
  const out: Keep = {};
  for (const [k, n] of Object.entries(v)) {
    if (!KEEP_RULES.includes(k as KeepRule)) throw vmError('INVALID_ARGUMENT', `${where}: unknown keep rule ${JSON.stringify(k)} (rules: ${KEEP_RULES.join(', ')})`);
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_KEEP) throw vmError('INVALID_ARGUMENT', `${where}: keep ${k} must be a whole number from 0 to ${MAX_KEEP}`);
    out[k as KeepRule] = n;
  }
  return out;
}

export function formatKeep(keep: Keep): string {
  const parts = KEEP_RULES.filter((r) => (keep[r] ?? 0) > 0).map((r) => `${r}=${keep[r]}`);
  return parts.length === 0 ? 'all' : parts.join(',');
}

export interface PointTime {
  point: string;
  /** ms since the epoch. */
  time: number;
  /** The end of its retention lock, ms since the epoch. */
  lockedUntil?: number;
}

export interface RetentionMark {
  point: string;
  time: number;
  keep: boolean;
  /** Why: "daily 2026-12-05", "locked until ...", "not selected by any rule", "hourly 2026-12-05 10h keeps a newer point". */
  reason: string;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** ISO 8601 week-numbering year and week of a local date. */
function isoWeek(d: Date): string {
  const day = new Date(d.getFullYear(), d.getMonth(), d.getDate());
  const dow = (day.getDay() + 6) % 7; // Monday 0
  day.setDate(day.getDate() - dow + 3); // the Thursday of this week
  const year = day.getFullYear();
  const jan4 = new Date(year, 0, 4);
  const week = 1 + Math.round(((day.getTime() - jan4.getTime()) / 86_400_000 - 3 + ((jan4.getDay() + 6) % 7)) / 7);
  return `${year}/W${pad(week)}`;
}

/** The period a point falls in for `rule`, in local time. */
export function periodOf(rule: KeepRule, time: number, point: string): string {
  const d = new Date(time);
  switch (rule) {
    case 'last':
      return point;
    case 'hourly':
      return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}h`;
    case 'daily':
      return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    case 'weekly':
      return isoWeek(d);
    case 'monthly':
      return `${d.getFullYear()}-${pad(d.getMonth() + 1)}`;
    case 'yearly':
      return String(d.getFullYear());
  }
}

/**
 * Marks every point keep or remove (the rule above), newest first. `now` judges locks.
 * Points with equal times are ordered by name, newest name first.
 */
export function selectRetention(points: PointTime[], keep: Keep, now: number): RetentionMark[] {
  const list = [...points].sort((a, b) => b.time - a.time || b.point.localeCompare(a.point));
  const marks = new Map<string, { keep: boolean; reason: string }>();
  const any = KEEP_RULES.some((r) => (keep[r] ?? 0) > 0);
  if (!any) for (const p of list) marks.set(p.point, { keep: true, reason: 'no keep rule: everything is kept' });
  for (const rule of KEEP_RULES) {
    const n = keep[rule] ?? 0;
    if (n <= 0 || !any) continue;
    const already = new Set<string>();
    for (const p of list) if (marks.get(p.point)?.keep) already.add(periodOf(rule, p.time, p.point));
    const taken = new Set<string>();
    for (const p of list) {
      if (marks.has(p.point)) continue;
      const period = periodOf(rule, p.time, p.point);
      if (already.has(period)) continue;
      if (!taken.has(period)) {
        if (taken.size >= n) break;
        taken.add(period);
        marks.set(p.point, { keep: true, reason: `${rule} ${period}` });
      } else {
        marks.set(p.point, { keep: false, reason: `${rule} ${period} keeps a newer point` });
      }
    }
  }
  return list.map((p) => {
    const m = marks.get(p.point) ?? { keep: false, reason: 'not selected by any rule' };
    if (!m.keep && p.lockedUntil !== undefined && now < p.lockedUntil) {
      return { point: p.point, time: p.time, keep: true, reason: `locked until ${new Date(p.lockedUntil).toISOString()} (the rules would remove it: ${m.reason})` };
    }
    return { point: p.point, time: p.time, keep: m.keep, reason: m.reason };
  });
}

/** A point's time from its name (point-name.ts: 2026-12-05T12-00-00Z, maybe with -2, -3 ...). */
export function pointTime(point: string): number | undefined {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})Z(?:-\d+)?$/.exec(point);
  if (!m) return undefined;
  const t = Date.parse(`${m[1]}T${m[2]}:${m[3]}:${m[4]}Z`);
  return Number.isFinite(t) ? t : undefined;
}
