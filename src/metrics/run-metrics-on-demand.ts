// prom-client and the metrics server (~13 MiB of RSS) are loaded only when --metrics asks for them:
// most instances run without, and the privileged parent of a big host keeps its memory for its work.
import type { serveRunMetrics } from "./run-metrics.js";

export async function serveRunMetricsOnDemand(
  ...args: Parameters<typeof serveRunMetrics>
): ReturnType<typeof serveRunMetrics> {
  return (await import("./run-metrics.js")).serveRunMetrics(...args);
}
