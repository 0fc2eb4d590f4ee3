// A SchedulerClock moved by hand (src/policy/clock.ts): tests set the time and fire the timers
// that came due, and never wait on the real clock.

import type { SchedulerClock } from '../../src/policy/clock.js';

export class ManualClock implements SchedulerClock {
  private timers = new Map<number, { at: number; fn: () => void }>();
  private nextId = 1;
  constructor(public t: number) {}

  now = (): number => this.t;

  setTimer(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + ms, fn });
    // Already due (a time passed while its owner was busy): fires soon, as a real timer would.
    if (ms <= 0) setImmediate(() => this.set(this.t));
    return id;
  }

  clear(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Moves the time to `t` (or by `ms` with advance) and fires every timer due by then, in order. */
  set(t: number): void {
    this.t = t;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, v]) => v.at <= this.t).sort((a, b) => a[1].at - b[1].at);
      if (due.length === 0) return;
      const [id, v] = due[0];
      this.timers.delete(id);
      v.fn();
    }
  }

  advance(ms: number): void {
    this.set(this.t + ms);
  }

  pending(): number {
    return this.timers.size;
  }
}
