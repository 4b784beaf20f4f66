// The cluster node's event-loop watch: a turn longer than the threshold is logged with the node's
// context, and shorter ones are not.
import { pino } from "pino";
import { expect, it } from "vitest";
import { LoopMonitor } from "../../intro-server/cluster/loop-monitor.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function block(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // the event loop is held, as by a long synchronous loop
  }
}

it("logs a stall over the threshold with the context, and nothing for short turns", async () => {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: "warn" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const monitor = new LoopMonitor(log, { stallMs: 300, tickMs: 20, context: () => ({ claims: 7 }) });
  monitor.start();
  try {
    await sleep(100);
    block(50);
    await sleep(100);
    expect(lines).toEqual([]);
    block(600);
    await sleep(100);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: "cluster node: event loop stalled", claims: 7 });
    expect(lines[0]!.stallMs).toBeGreaterThanOrEqual(450);
    expect(monitor.delay()).toMatchObject({ stalls: 1 });
    expect(monitor.delay().maxMs).toBeGreaterThanOrEqual(450);
  } finally {
    monitor.stop();
  }
});
