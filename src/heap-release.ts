// After a burst of work at a hub's scale (thousands of peers set up or changed at once) V8 keeps the
// burst's garbage, promoted to its old space and in fragmented pages, and its young generation at the
// size the burst grew it to, until the heap has grown to about twice what it held at the last full
// collection: a 10,000-peer start left the worker at 268 MiB RSS, 177 MiB after the collection below,
// and idle it stays there (issue 16). So once such a burst is over, one memory-reducing collection:
// what the inspector's HeapProfiler.collectGarbage does (V8's LowMemoryNotification: compacts, and
// shrinks the young generation), through an in-process session (no port is opened). A plain gc() left
// fragmented pages and the young generation as they were.
import type { Logger } from "./log.js";

/** A burst this large (peers or entries) is worth a collection afterwards. */
export const HEAP_RELEASE_MIN_ITEMS = 500;
/** Quiet this long after the burst's last part: what it left behind is garbage by then, and a start is over. */
const SETTLE_MS = 8000;
/** At most one collection per this long, however often bursts come. */
const MIN_INTERVAL_MS = 30_000;

type Collect = () => Promise<void>;

async function lowMemoryCollection(): Promise<void> {
  const { Session } = await import("node:inspector/promises");
  const session = new Session();
  session.connect();
  try {
    await session.post("HeapProfiler.collectGarbage");
  } finally {
    session.disconnect();
  }
}

export class HeapRelease {
  private timer: NodeJS.Timeout | null = null;
  private lastAt = Number.NEGATIVE_INFINITY;
  /** Items handled since the last collection. */
  private pending = 0;
  constructor(
    private readonly log: Logger,
    private readonly collect: Collect = lowMemoryCollection,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * `items` were just handled: once HEAP_RELEASE_MIN_ITEMS were since the last collection (one burst, or
   * several: peers going dormant a few hundred per sweep), collect when they have settled.
   */
  after(items: number): void {
    if (items === 0) return;
    this.pending += items;
    if (this.pending < HEAP_RELEASE_MIN_ITEMS) return;
    if (this.timer) clearTimeout(this.timer);
    const wait = Math.max(SETTLE_MS, this.lastAt + MIN_INTERVAL_MS - this.now());
    this.timer = setTimeout(() => this.run(), wait);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private async run(): Promise<void> {
    this.timer = null;
    this.pending = 0;
    this.lastAt = this.now();
    const before = process.memoryUsage();
    const started = performance.now();
    try {
      await this.collect();
    } catch (err) {
      this.log.debug({ err }, "heap not released (no inspector in this Node?)");
      return;
    }
    const after = process.memoryUsage();
    this.log.debug(
      {
        ms: Math.round(performance.now() - started),
        heapTotalMiB: [before.heapTotal, after.heapTotal].map((b) => Math.round(b / 2 ** 20)),
        rssMiB: [before.rss, after.rss].map((b) => Math.round(b / 2 ** 20)),
      },
      "heap released after a burst of work",
    );
  }
}
