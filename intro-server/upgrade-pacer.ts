/**
 * WebSocket upgrades taken at most `perTurn` a turn of the event loop, the rest queued in order for the
 * turns after. Each upgrade makes a key pair and sends a challenge, and the auth answering it costs a
 * DH and an engine script: a cluster node taking a third of a dead node's 14,000 clients ran them in
 * one turn (stalls of 4.7-13 s at 56,000 clients: its heartbeat late, and once it turned again the auth
 * timers of connections challenged 10 s before fired and sent their clients to try again, more work).
 * Paced, the loop turns often, its timers run, and the challenges (and so the auths) come a batch a turn.
 */
export class UpgradePacer<T> {
  private queue: T[] = [];
  private head = 0;
  private takenThisTurn = 0;
  private turnEndScheduled = false;

  constructor(
    private readonly perTurn: number,
    private readonly take: (item: T) => void,
    /** False: the item is no longer worth taking (its socket closed while it waited). */
    private readonly stillWanted: (item: T) => boolean,
  ) {}

  /** Taken now if this turn has room and nothing waits; else queued. */
  push(item: T): void {
    this.scheduleTurnEnd();
    if (this.waiting === 0 && this.takenThisTurn < this.perTurn) {
      this.takenThisTurn++;
      this.take(item);
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

  /** In the check phase, once this turn's I/O has run: a new turn's room, and what waits takes it. */
  private scheduleTurnEnd(): void {
    if (this.turnEndScheduled) return;
    this.turnEndScheduled = true;
    setImmediate(() => {
      this.turnEndScheduled = false;
      this.takenThisTurn = 0;
      while (this.waiting > 0 && this.takenThisTurn < this.perTurn) {
        const item = this.queue[this.head++]!;
        if (!this.stillWanted(item)) continue;
        this.takenThisTurn++;
        this.take(item);
      }
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      // The room taken here counts against the next turn too; what still waits, waits for it.
      if (this.waiting > 0 || this.takenThisTurn > 0) this.scheduleTurnEnd();
    });
  }
}
