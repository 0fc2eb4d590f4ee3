// The scheduler's clock: time and timers as one injectable thing, so tests move time by hand and
// never wait on the real one (ManualClock, test/helpers/manual-clock.ts).

export interface SchedulerClock {
  now(): number;
  /** Calls `fn` once, `ms` from now; the handle goes to clear(). */
  setTimer(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

export const systemClock: SchedulerClock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};
