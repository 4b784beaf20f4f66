/**
 * Whether the introduction server is still there. Everything heard from it counts (messages, its
 * pings, pongs to ours). The server pings every keepaliveSeconds; hearing nothing for 2.5 of those
 * means it is gone. We ping too, every half interval: when our NAT forgot the connection (a conntrack
 * flush, a NAT reboot), the server's pings die at the NAT and we would hear of it only after 2.5
 * intervals, while our own ping meets a reset at once and we reconnect (peers' offers meanwhile go
 * nowhere). A check on demand (a path went suspect) pings at once and gives up after a short wait.
 */
import type { WebSocket } from "ws";

export class ServerLiveness {
  private lastHeard = 0;
  /** A check of life compares this count, not clocks. */
  private heardCount = 0;
  private watchdog: NodeJS.Timeout | undefined;
  /** The check under way: its timer, its verdict (shared by whoever asks meanwhile), how to give it. */
  private aliveCheck:
    | { timer: NodeJS.Timeout; verdict: Promise<boolean>; give: (alive: boolean) => void }
    | undefined;

  /** Something came from the server (or a connection attempt starts). */
  heard(): void {
    this.lastHeard = Date.now();
    this.heardCount++;
  }

  /** Once authenticated: pings every half keepalive interval; `onSilent` after 2.5 silent intervals. */
  watch(ws: WebSocket, keepaliveSeconds: number, onSilent: () => void): void {
    const keepaliveMs = keepaliveSeconds * 1000;
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastHeard > keepaliveMs * 2.5) {
        onSilent();
        return;
      }
      if (ws.readyState === ws.OPEN) ws.ping();
    }, keepaliveMs / 2);
    this.watchdog.unref();
  }

  /**
   * Pings now; `onSilent` if nothing at all is heard within `timeoutMs`. Resolves true when something
   * was heard, false when not or when the connection went first (stop). A check under way is shared.
   */
  check(ws: WebSocket, timeoutMs: number, onSilent: () => void): Promise<boolean> {
    if (this.aliveCheck) return this.aliveCheck.verdict;
    const heardBefore = this.heardCount;
    let give: (alive: boolean) => void = () => {};
    const verdict = new Promise<boolean>((resolve) => {
      give = resolve;
    });
    ws.ping();
    const timer = setTimeout(() => {
      // Timers run before sockets are read: on a busy loop the pong may be waiting unread. Judge after
      // this turn's reads (setImmediate follows the poll phase), or a live connection is replaced.
      setImmediate(() => {
        if (this.aliveCheck?.verdict !== verdict) return; // stopped meanwhile
        this.aliveCheck = undefined;
        const alive = this.heardCount !== heardBefore;
        if (!alive) onSilent();
        give(alive);
      });
    }, timeoutMs);
    timer.unref();
    this.aliveCheck = { timer, verdict, give };
    return verdict;
  }

  /** The connection is gone. */
  stop(): void {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
    if (this.aliveCheck) {
      clearTimeout(this.aliveCheck.timer);
      this.aliveCheck.give(false);
      this.aliveCheck = undefined;
    }
  }
}
