/**
 * WebSocket upgrades taken for at most `budgetMs` of a turn of the event loop, the rest queued in order
 * for the turns after. Each upgrade makes a key pair and sends a challenge, and the auth answering it
 * costs a DH and an engine script: a cluster node taking a third of a dead node's 14,000 clients ran
 * them in one turn (stalls of 4.7-13 s at 56,000 clients: its heartbeat late, and once it turned again
 * the auth timers of connections challenged 10 s before likely fired, more work). A budget of time, not
 * a count: 64 upgrades a turn held three nodes to 1,200 logins/s where unpaced they had reached
 * 2,800/s (their turns were long with other work, not with upgrades); time takes what a turn has room for.
 */
export class UpgradePacer<T> {
  private queue: T[] = [];
  private head = 0;
  private spentMs = 0;
  private turnEndScheduled = false;

  constructor(
    private readonly budgetMs: number,
    private readonly take: (item: T) => void,
    /** False: the item is no longer worth taking (its socket closed while it waited). */
    private readonly stillWanted: (item: T) => boolean,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Taken now if this turn has time left and nothing waits; else queued. */
  push(item: T): void {
    this.scheduleTurnEnd();
    if (this.waiting === 0 && this.spentMs < this.budgetMs) {
      this.takeTimed(item);
      return;
    }
    this.queue.push(item);
  }

  get waiting(): number {
    return this.queue.length - this.head;
  }

  /** Forgets what waits (the server is closing), handing each to `drop`. */
  clear(drop: (item: T) => void): void {
    const left = this.queue.slice(this.head);
    this.queue = [];
    this.head = 0;
    for (const item of left) drop(item);
  }

  private takeTimed(item: T): void {
    const started = this.now();
    try {
      this.take(item);
    } finally {
      this.spentMs += this.now() - started;
    }
  }

  /** In the check phase, once this turn's I/O has run: a new turn's time, and what waits takes it. */
  private scheduleTurnEnd(): void {
    if (this.turnEndScheduled) return;
    this.turnEndScheduled = true;
    setImmediate(() => {
      this.turnEndScheduled = false;
      this.spentMs = 0;
      while (this.waiting > 0 && this.spentMs < this.budgetMs) {
        const item = this.queue[this.head++]!;
        if (this.stillWanted(item)) this.takeTimed(item);
      }
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      // The time taken here counts against the next turn too; what still waits, waits for it.
      if (this.waiting > 0 || this.spentMs > 0) this.scheduleTurnEnd();
    });
  }
}
