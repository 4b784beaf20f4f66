/** Time and timers of a peer's life, injected so that the life cycle runs under a fake clock in tests. */
export interface Clock {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Runs `callback` once after `ms`; never keeps the process alive on its own. */
  setTimeout(callback: () => void, ms: number): ClockTimer;
  clearTimeout(timer: ClockTimer | null): void;
}

/** An opaque handle of a pending timer. */
export interface ClockTimer {
  readonly __clockTimer?: never;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout(callback, ms) {
    const timer = setTimeout(callback, ms);
    timer.unref();
    return timer as ClockTimer;
  },
  clearTimeout(timer) {
    if (timer) clearTimeout(timer as NodeJS.Timeout);
  },
};
