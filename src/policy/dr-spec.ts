// `--dr 'daily 03:00 -> dr-1'` (issue 14): when to make the appliance's disaster-recovery copy,
// and where. The schedule is written as for --clone (clone-spec.ts: 'hourly', 'hourly :MM',
// 'daily HH:MM', 'weekly DAY HH:MM' or a cron expression, local time); the destination is a
// directory destination's name (`vmvault destination add dr-1 --dir /mnt/dr`) or an absolute path.

import path from 'node:path';
import { vmError } from '../errors.js';
import { parseCloneSpec } from './clone-spec.js';

export interface DrSpec {
  /** As the operator wrote it (normalised spaces). */
  spec: string;
  /** The cron expression it means. */
  cron: string;
  /** A destination name, or an absolute directory path. */
  destination: string;
}

export function parseDrSpec(input: unknown): DrSpec {
  if (typeof input !== 'string') throw vmError('INVALID_ARGUMENT', `--dr must be a string such as 'daily 03:00 -> dr-1', not ${JSON.stringify(input)}`);
  const spec = input.trim().replace(/\s+/g, ' ');
  const arrow = spec.lastIndexOf('->');
  const dest = arrow < 0 ? '' : spec.slice(arrow + 2).trim();
  const isPath = dest.startsWith('/');
  if (isPath && (dest.includes('\0') || dest.length > 4096)) throw vmError('INVALID_ARGUMENT', `--dr ${JSON.stringify(spec.slice(0, 200))}: the destination path is not usable`);
  try {
    // The schedule (and, for a name, the name's syntax) as --clone reads them.
    const c = parseCloneSpec(isPath ? `${spec.slice(0, arrow)}-> placeholder` : spec);
    const destination = isPath ? path.resolve(dest) : c.destination;
    return { spec: `${spec.slice(0, arrow).trim()} -> ${destination}`, cron: c.cron, destination };
  } catch (err) {
    const m = (err as Error).message.replace(/^--clone/, '--dr').replace(/site-b/g, 'dr-1').replace("'daily 02:00", "'daily 03:00");
    throw vmError('INVALID_ARGUMENT', m);
  }
}
