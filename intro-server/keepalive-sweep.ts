/**
 * The server's one sweep over its connections (rather than a timer each): idle check and keepalive
 * ping, every pingIntervalMs, in slices of SLICE connections with a turn of the event loop between
 * them. In one loop, pinging the 14,000 connections of a cluster node held its event loop 1.1-4.3 s on
 * a loaded 2-vCPU VM every 20 s, longer than the cluster heartbeat's TTL (issue 15, docs/benchmarks.md).
 */
import { WebSocket } from "ws";

/** The parts of a connection the sweep reads. */
export interface SweptConnection {
  readonly ws: WebSocket;
  readonly state: string;
  readonly lastSeen: number;
}

/** Connections a turn of the event loop: tens of ms, even on a loaded machine. */
const SLICE = 256;

export class KeepaliveSweep<C extends SweptConnection> {
  private readonly timer: NodeJS.Timeout;
  private running = false;
  private stopped = false;

  constructor(
    private readonly live: ReadonlySet<C>,
    private readonly limits: { pingIntervalMs: number; idleTimeoutMs: number },
    /** Closes a connection silent for longer than idleTimeoutMs. */
    private readonly onIdle: (connection: C) => void,
  ) {
    this.timer = setInterval(() => this.sweep(), limits.pingIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  private sweep(): void {
    if (this.running) return;
    this.running = true;
    const now = Date.now();
    const connections = [...this.live];
    let next = 0;
    const slice = () => {
      const end = this.stopped ? next : Math.min(connections.length, next + SLICE);
      for (; next < end; next++) {
        const connection = connections[next]!;
        if (connection.state === "closing") continue;
        if (now - connection.lastSeen > this.limits.idleTimeoutMs) this.onIdle(connection);
        else if (connection.ws.readyState === WebSocket.OPEN) connection.ws.ping();
      }
      if (!this.stopped && next < connections.length) setImmediate(slice);
      else this.running = false;
    };
    slice();
  }
}
