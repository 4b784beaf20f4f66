// A debounce with a deadline: `fire` runs once events have been quiet for `quietMs`, but never later
// than `maxWaitMs` after the first event it covers, so a steady stream of events closer together than
// `quietMs` (routes changing 10 times a second) cannot postpone it for ever. One timer per period,
// re-armed only when it falls due: an event costs no timer of its own.

export class BoundedDebounce {
  private timer: NodeJS.Timeout | null = null;
  private firstAt = 0;
  private lastAt = 0;

  constructor(
    private readonly fire: () => void,
    private readonly quietMs: number,
    private readonly maxWaitMs: number,
  ) {}

  /** An event: `fire` runs after the quiet time, or at the deadline of the first pending event. */
  poke(): void {
    const now = Date.now();
    this.lastAt = now;
    if (this.timer) return;
    this.firstAt = now;
    this.arm(this.quietMs);
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => this.due(), ms);
  }

  private due(): void {
    this.timer = null;
    const now = Date.now();
    const wait = Math.min(this.lastAt + this.quietMs, this.firstAt + this.maxWaitMs) - now;
    if (wait > 0) this.arm(wait);
    else this.fire();
  }
}
