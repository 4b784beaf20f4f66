/**
 * A token bucket: `capacity` tokens, refilled continuously at `refillPerSecond`. The server limits
 * each connection with it; the client paces itself with it to stay under those limits.
 */
/** Shared: a default closure per bucket would cost every server connection two closures. */
const monotonicNow = (): number => performance.now();

export class TokenBucket {
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly capacity: number,
    private readonly refillPerSecond: number,
    private readonly now: () => number = monotonicNow,
  ) {
    this.tokens = capacity;
    this.refilledAt = this.now();
  }

  /** Whether `cost` tokens are there now (a cost above capacity is allowed once the bucket is full). */
  canTake(cost = 1): boolean {
    this.refill();
    return this.tokens >= Math.min(cost, this.capacity);
  }

  /** Takes `cost` tokens if there are that many; false (and takes none) otherwise. */
  take(cost = 1): boolean {
    if (!this.canTake(cost)) return false;
    this.tokens -= cost;
    return true;
  }

  private refill(): void {
    const now = this.now();
    this.tokens = Math.min(
      this.capacity,
      this.tokens + ((now - this.refilledAt) / 1000) * this.refillPerSecond,
    );
    this.refilledAt = now;
  }
}
