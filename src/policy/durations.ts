// Lock durations as an operator writes them: "7d", "12h", "90s", "30min", "2w", "1y"; "0" or
// "none" for no lock. A year is 365 days and a week 7 (fixed lengths: a lock is a span of time,
// not a calendar date). Anything else is INVALID_ARGUMENT naming the text and the units.

import { vmError } from '../errors.js';

const UNIT_MS: Record<string, number> = {
  s: 1000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
  y: 365 * 86_400_000,
};

/** Milliseconds of `text`; `what` names the option in the message ("--lock"). */
export function parseDuration(text: unknown, what: string): number {
  if (typeof text !== 'string') throw vmError('INVALID_ARGUMENT', `${what} must be a duration such as 7d, not ${JSON.stringify(text)}`);
  const t = text.trim();
  if (t === '0' || t === 'none') return 0;
  const m = /^(\d{1,6})(s|min|h|d|w|y)$/.exec(t);
  if (!m) {
    throw vmError('INVALID_ARGUMENT', `${what} ${JSON.stringify(text)} is not a duration: write a whole number and one unit of s, min, h, d, w, y (e.g. 7d, 12h, 1y), or 0 for none`);
  }
  const ms = Number(m[1]) * UNIT_MS[m[2]];
  if (ms === 0) return 0;
  return ms;
}

/** An exact form in years, days, hours, minutes or seconds: 604800000 -> "7d"; 0 -> "none". */
export function formatDurationMs(ms: number): string {
  if (ms === 0) return 'none';
  for (const u of ['y', 'd', 'h', 'min', 's']) if (ms % UNIT_MS[u] === 0) return `${ms / UNIT_MS[u]}${u}`;
  return `${ms}ms`;
}
