// `tunnelbore run` without --interface: every WireGuard interface of the host, each with its own
// catch-all port, control socket and (with privilege separation) worker, followed as interfaces come
// and go. It runs until SIGINT/SIGTERM, also while there is no interface at all (a service waits for
// them); only an unexpected failure of this process itself ends it early (exit 1).

import { type ConfigRecheck, withConfigRecheck } from "../commands/config-reload.js";
import type { ControlHandlers } from "../control/control-socket.js";
import type { Logger } from "../log.js";
import { serveRunMetricsOnDemand } from "../metrics/run-metrics-on-demand.js";
import type { PrivilegeChoice } from "../privsep/privsep-mode.js";
import type { SeparatedRunConfig } from "../privsep/supervisor.js";
import { findUdpPortHolders } from "../proxy/port-holder.js";
import { runService, type Service } from "../service-lifecycle.js";
import type { ServiceNotifier } from "../service-notify.js";
import type { Tunnelbore } from "../tunnelbore.js";
import { listWireGuardInterfaces } from "../wg/interface-set.js";
import { CatchAllPortStore } from "./catch-all-ports.js";
import { InterfaceFleet } from "./interface-fleet.js";
import { createInterfaceInstance, type InterfaceInstance } from "./interface-instance.js";

/** `run`'s configuration for every interface; each instance gets its own name and catch-all port. */
export type AllInterfacesConfig = Omit<SeparatedRunConfig, "interfaceName">;

export interface RunAllOptions {
  config: AllInterfacesConfig;
  privileges: PrivilegeChoice;
  logger: Logger;
  /** What the control socket answers in one-process mode (the same as `run --interface`'s). */
  controlHandlers: (tunnelbore: Tunnelbore) => ControlHandlers;
  notifier: ServiceNotifier | null;
  /** SIGHUP's look at the configuration (what changed since the start: it needs a restart). */
  recheckConfig: () => ConfigRecheck;
}

/** An interface missing this long is gone; a WireGuard restart recreates it well within it. */
export const REMOVAL_GRACE_MS = 5_000;

/** Runs until SIGINT/SIGTERM (0) or an unexpected failure (1); serving each interface as it comes. */
export async function runAllInterfaces(options: RunAllOptions): Promise<number> {
  const { config, logger } = options;
  // `wg` missing or not permitted: a configuration problem, reported at once (exit 2).
  await listWireGuardInterfaces();
  const { address } = config.catchAll;
  const ports = new CatchAllPortStore(
    config.stateDir,
    config.catchAll.port,
    async (port) => (await findUdpPortHolders(address, port).catch(() => [])).length > 0,
    logger,
  );
  const fleet = new InterfaceFleet({
    list: listWireGuardInterfaces,
    pollIntervalMs: config.pollIntervalMs,
    removalGraceMs: Math.max(REMOVAL_GRACE_MS, 2 * config.pollIntervalMs),
    portFor: (name) => ports.portFor(name),
    portReleased: (name) => ports.released(name),
    create: (name, port) => createInstance(options, name, port),
    logger,
  });
  // One metrics server for the process, reporting every interface served.
  const metrics =
    config.metrics && (await serveRunMetricsOnDemand(config.metrics, () => fleet.statusReports(), logger));
  try {
    const service: Service = {
      start: () => fleet.start(),
      reload: () => fleet.reload(),
      stop: () => fleet.stop(),
      describe: () => {
        const interfaces = fleet.interfaces().map((i) => `${i.name}:${i.catchAllPort ?? "-"}`);
        const message =
          interfaces.length > 0
            ? "tunnelbore running for every WireGuard interface"
            : "tunnelbore running: waiting for WireGuard interfaces";
        return { fields: { interfaces, catchAllBase: `${address}:${config.catchAll.port}` }, message };
      },
    };
    return await runService(
      withConfigRecheck(service, options.recheckConfig, logger),
      logger,
      options.notifier,
    );
  } finally {
    await metrics?.close();
  }
}

function createInstance(options: RunAllOptions, name: string, catchAllPort: number): InterfaceInstance {
  const { config } = options;
  return createInterfaceInstance({
    ...options,
    logger: options.logger.child({ interface: name }),
    config: {
      ...config,
      interfaceName: name,
      catchAll: { address: config.catchAll.address, port: catchAllPort },
      // Listed by `wg`, but it may still be being configured (no listen port yet): wait for that.
      waitForInterface: true,
      wgQuickConfig: undefined,
      metrics: undefined, // served once for all of them (runAllInterfaces)
    },
  });
}
