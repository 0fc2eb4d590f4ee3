// The time a retention lock starts from, guarded against a clock set backwards.
//
// Rule: the appliance keeps a high-water mark of the wall clock in <data>/policy-clock.json
// (versioned, atomic), raised whenever a lock is made and at every scheduler tick. A new lock
// runs from max(wall clock, high-water mark). So a clock set backwards (by mistake or on
// purpose) never makes a lock end earlier in real time than its duration says: it is detected
// (the wall clock is behind the mark by more than CLOCK_SLACK_MS) and logged, and the mark is
// used instead. The namespace judges whether a lock has ended with the wall clock; a clock set
// backwards only makes locks last longer there.
//
// Limits (written down, not hidden): a clock set FORWARD cannot be told from time passing
// without a trusted outside time source, so setting the clock years ahead would end locks
// early; the mark then stays in the future, so new locks are long but not short. Deleting
// policy-clock.json (root on the appliance) forgets the mark. Compliance against the
// appliance's own root needs an outside clock (NTP with authentication, or S3 Object Lock
// when containers move to object storage): later.

import path from 'node:path';
import { Serial, readVersioned, writeAtomic } from './json-file.js';

export const CLOCK_VERSION = 1;
/** Backwards steps smaller than this are clock adjustments (NTP slews), not news. */
export const CLOCK_SLACK_MS = 5_000;

export class LockClock {
  private highWater = 0;
  private readonly serial = new Serial();
  private constructor(
    readonly file: string,
    private readonly wall: () => number,
    private readonly log: (l: string) => void,
  ) {}

  static async open(dataDir: string, opts: { now?: () => number; log?: (l: string) => void } = {}): Promise<LockClock> {
    const c = new LockClock(path.join(dataDir, 'policy-clock.json'), opts.now ?? Date.now, opts.log ?? (() => {}));
    const v = await readVersioned(c.file, CLOCK_VERSION, 'policy clock');
    const hw = v?.highWater;
    if (typeof hw === 'number' && Number.isFinite(hw)) c.highWater = hw;
    await c.observe();
    return c;
  }

  /** The persisted mark (ms since the epoch). */
  get mark(): number {
    return this.highWater;
  }

  /** max(wall clock, mark); raises and persists the mark; logs a clock found behind it. */
  async observe(): Promise<number> {
    const now = this.wall();
    if (now + CLOCK_SLACK_MS < this.highWater) {
      this.log(`the wall clock (${new Date(now).toISOString()}) is behind the highest time this appliance has seen (${new Date(this.highWater).toISOString()}): it was set backwards; locks run from the later time`);
      return this.highWater;
    }
    if (now > this.highWater) {
      this.highWater = now;
      const value = { version: CLOCK_VERSION, highWater: now };
      await this.serial.run(() => writeAtomic(this.file, value));
    }
    return Math.max(now, this.highWater);
  }

  /** When a lock of `ms` made now ends. */
  async lockUntil(ms: number): Promise<number> {
    return (await this.observe()) + ms;
  }
}
