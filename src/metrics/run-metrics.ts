/**
 * `run --metrics`: one call that serves the metrics and health of the interfaces whose StatusReports
 * `reports` returns. Whoever serves the control socket calls it (the privileged parent asks its worker
 * over IPC; one process asks its Tunnelbore), so the worker never listens on a port.
 */
import { collectDefaultMetrics, Registry } from "prom-client";
import type { StatusReport } from "../control/status.js";
import type { Logger } from "../log.js";
import type { MetricsAddress } from "./metrics-address.js";
import { type Health, MetricsServer, type MetricsSource } from "./metrics-server.js";
import { StatusMetrics } from "./status-metrics.js";

/** The current StatusReports, one per interface served. */
export type StatusReports = () => Promise<StatusReport[]>;

/** Healthy while every interface is served: started, and not waiting for its interface. */
export function runHealth(reports: readonly StatusReport[]): Health {
  if (reports.length === 0) return { healthy: false, text: "starting: no interface served yet" };
  const waiting = reports.filter((r) => !r.ready || r.waitingFor !== null);
  if (waiting.length === 0)
    return { healthy: true, text: `ok: serving ${reports.map((r) => r.interface).join(", ")}` };
  const why = waiting.map(
    (r) => `${r.interface}: ${r.waitingFor ? `waiting for ${r.waitingFor}` : "starting"}`,
  );
  return { healthy: false, text: why.join("; ") };
}

export class RunMetrics implements MetricsSource {
  readonly registry = new Registry();
  private readonly status: StatusMetrics;

  constructor(private readonly reports: StatusReports) {
    // RSS, CPU, heap, event loop lag of this process (under privilege separation: the parent's).
    collectDefaultMetrics({ register: this.registry });
    this.status = new StatusMetrics(this.registry);
  }

  async refresh(): Promise<void> {
    this.status.render(await this.reports());
  }

  async health(): Promise<Health> {
    try {
      return runHealth(await this.reports());
    } catch (err) {
      return { healthy: false, text: `no status: ${err instanceof Error ? err.message : String(err)}` };
    }
  }
}

/** Starts `--metrics` for `run`; a busy address is a ConfigError (exit 2). */
export function serveRunMetrics(
  address: MetricsAddress,
  reports: StatusReports,
  logger: Logger,
): Promise<MetricsServer> {
  return MetricsServer.start(address, new RunMetrics(reports), logger);
}
