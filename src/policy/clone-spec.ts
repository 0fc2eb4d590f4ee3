// `--clone 'daily 02:00 -> site-b'` (issue 14): when to copy a policy's newest points, and where.
// The schedule is a cron expression (5 fields, or 6 with seconds, local time) or one of the
// words: 'hourly' (on the hour), 'hourly :MM', 'daily HH:MM', 'weekly DAY HH:MM' (DAY: mon..sun).
// The destination is a name from `vmvault destination add`.

import { vmError } from '../errors.js';
import { checkDestinationName } from './destinations.js';
import { parseCron } from './policies.js';

export interface CloneSpec {
  /** As the operator wrote it (normalised spaces). */
  spec: string;
  /** The cron expression it means. */
  cron: string;
  destination: string;
}

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

function bad(spec: string, why: string): Error {
  return vmError('INVALID_ARGUMENT', `--clone ${JSON.stringify(spec.slice(0, 200))}: ${why} (write 'daily 02:00 -> site-b', 'hourly -> site-b', 'weekly sun 03:30 -> site-b' or a cron expression such as '0 2 * * * -> site-b')`);
}

function hhmm(spec: string, s: string): [number, number] {
  const m = /^(\d{1,2}):(\d{2})$/.exec(s);
  if (!m || Number(m[1]) > 23 || Number(m[2]) > 59) throw bad(spec, `${JSON.stringify(s)} is not a time HH:MM`);
  return [Number(m[1]), Number(m[2])];
}

export function parseCloneSpec(input: unknown): CloneSpec {
  if (typeof input !== 'string') throw vmError('INVALID_ARGUMENT', `--clone must be a string such as 'daily 02:00 -> site-b', not ${JSON.stringify(input)}`);
  const spec = input.trim().replace(/\s+/g, ' ');
  const arrow = spec.lastIndexOf('->');
  if (arrow < 0) throw bad(spec, "no '->' between the schedule and the destination");
  const when = spec.slice(0, arrow).trim();
  const dest = spec.slice(arrow + 2).trim();
  if (when === '') throw bad(spec, 'no schedule before ->');
  if (dest === '') throw bad(spec, 'no destination after ->');
  let destination: string;
  try {
    destination = checkDestinationName(dest);
  } catch (err) {
    throw bad(spec, (err as Error).message);
  }
  const w = when.split(' ');
  let cron: string;
  if (w[0] === 'hourly') {
    if (w.length === 1) cron = '0 * * * *';
    else if (w.length === 2 && /^:\d{2}$/.test(w[1]) && Number(w[1].slice(1)) < 60) cron = `${Number(w[1].slice(1))} * * * *`;
    else throw bad(spec, "'hourly' takes nothing or :MM");
  } else if (w[0] === 'daily') {
    if (w.length !== 2) throw bad(spec, "'daily' takes a time HH:MM");
    const [h, m] = hhmm(spec, w[1]);
    cron = `${m} ${h} * * *`;
  } else if (w[0] === 'weekly') {
    if (w.length !== 3 || !DAYS.includes(w[1].toLowerCase().slice(0, 3)) || w[1].length < 3) throw bad(spec, "'weekly' takes a day (mon..sun) and a time HH:MM");
    const [h, m] = hhmm(spec, w[2]);
    cron = `${m} ${h} * * ${DAYS.indexOf(w[1].toLowerCase().slice(0, 3))}`;
  } else {
    try {
      parseCron(when);
    } catch {
      throw bad(spec, `${JSON.stringify(when)} is neither a cron expression nor hourly/daily/weekly`);
    }
    cron = when;
  }
  return { spec: `${when} -> ${destination}`, cron, destination };
}

/** One spec or several, as `policy create --clone` (repeatable) gives them. */
export function parseCloneSpecs(input: unknown): CloneSpec[] {
  const list = Array.isArray(input) ? input : [input];
  if (list.length > 16) throw vmError('INVALID_ARGUMENT', `at most 16 --clone copies per policy, not ${list.length}`);
  const out = list.map(parseCloneSpec);
  const seen = new Set<string>();
  for (const c of out) {
    const k = `${c.cron} ${c.destination}`;
    if (seen.has(k)) throw vmError('INVALID_ARGUMENT', `--clone ${JSON.stringify(c.spec)} is given twice`);
    seen.add(k);
  }
  return out;
}
