/**
 * Capped exponential backoff with multiplicative jitter: the n-th delay is
 * `min(maxMs, initialMs * 2^n) * jitter`, jitter drawn uniformly from [jitterMin, jitterMax].
 * One helper for every retry loop (ICE retries and upgrades, the introduction server, `ip monitor`).
 */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** Jitter factor range (default [1, 1]: none). "Equal jitter" is [0.5, 1]. */
  jitter?: readonly [min: number, max: number];
  /** Jitter source in [0, 1) (tests pass a fixed one). */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly jitterMin: number;
  private readonly jitterSpan: number;
  private readonly random: () => number;

  constructor(private readonly options: BackoffOptions) {
    const [min, max] = options.jitter ?? [1, 1];
    this.jitterMin = min;
    this.jitterSpan = max - min;
    this.random = options.random ?? Math.random;
  }

  /** Attempts counted since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The delay before the next attempt, in ms; counts the attempt. */
  next(): number {
    const base = Math.min(this.options.maxMs, this.options.initialMs * 2 ** this.attempt);
    this.attempt++;
    return base * (this.jitterMin + this.jitterSpan * this.random());
  }

  /** The longest delay, jittered (used where retrying fast would only fight, e.g. a rejected key). */
  ceiling(): number {
    return this.options.maxMs * (this.jitterMin + this.jitterSpan * this.random());
  }

  /** Success: the next delay starts from `initialMs` again. */
  reset(): void {
    this.attempt = 0;
  }
}
