/**
 * Watches a cluster node's event loop: a turn that runs longer than the heartbeat's TTL gets the node
 * taken for dead by the others (issue 15, 56,000 clients). Logs every stall over a threshold with what
 * the node was doing (counts of its work since the last tick, the long GCs), and keeps the loop delay's
 * max and p99 (perf_hooks.monitorEventLoopDelay) for the log and for tests.
 */
import { type IntervalHistogram, monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import type { Logger } from "../../src/log.js";

export interface LoopMonitorOptions {
  /** A turn of the loop longer than this is logged (warn). */
  stallMs: number;
  /** How often the monitor's own timer runs: a stall is seen as this timer being late. */
  tickMs: number;
  /** What the node did since the last tick, for the stall's log line (cheap counters). */
  context: () => Record<string, unknown>;
}

export interface LoopDelay {
  maxMs: number;
  p99Ms: number;
  /** Stalls over the threshold since start, and the longest one. */
  stalls: number;
  longestStallMs: number;
}

const DEFAULT_OPTIONS: Omit<LoopMonitorOptions, "context"> = { stallMs: 1_000, tickMs: 100 };

export class LoopMonitor {
  private readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: 20 });
  private readonly options: LoopMonitorOptions;
  private timer: NodeJS.Timeout | undefined;
  private gcObserver: PerformanceObserver | undefined;
  private last = 0;
  private longestGcMs = 0;
  private stalls = 0;
  private longestStallMs = 0;

  constructor(
    private readonly log: Logger,
    options: Partial<LoopMonitorOptions> = {},
  ) {
    this.options = { ...DEFAULT_OPTIONS, context: () => ({}), ...options };
  }

  start(): void {
    this.histogram.enable();
    // GC pauses are part of a turn: the longest since the last tick tells a stall that was GC.
    this.gcObserver = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) this.longestGcMs = Math.max(this.longestGcMs, entry.duration);
    });
    this.gcObserver.observe({ entryTypes: ["gc"] });
    this.last = performance.now();
    this.timer = setInterval(() => this.tick(), this.options.tickMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.gcObserver?.disconnect();
    this.histogram.disable();
  }

  delay(): LoopDelay {
    return {
      maxMs: this.histogram.max / 1e6,
      p99Ms: this.histogram.percentile(99) / 1e6,
      stalls: this.stalls,
      longestStallMs: this.longestStallMs,
    };
  }

  private tick(): void {
    const now = performance.now();
    const stallMs = now - this.last - this.options.tickMs;
    this.last = now;
    const context = this.options.context();
    if (stallMs > this.options.stallMs) {
      this.stalls++;
      this.longestStallMs = Math.max(this.longestStallMs, stallMs);
      this.log.warn(
        {
          stallMs: Math.round(stallMs),
          loopDelayMaxMs: Math.round(this.histogram.max / 1e6),
          loopDelayP99Ms: Math.round(this.histogram.percentile(99) / 1e6),
          longestGcMs: Math.round(this.longestGcMs),
          ...context,
        },
        "cluster node: event loop stalled",
      );
    }
    this.longestGcMs = 0;
  }
}
