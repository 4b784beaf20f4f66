// `tunnelbore run` without --interface: every WireGuard interface of the host, each with its own
// catch-all port, control socket and (with privilege separation) worker, followed as interfaces come
// and go. It runs until SIGINT/SIGTERM, also while there is no interface at all (a service waits for
// them); only an unexpected failure of this process itself ends it early (exit 1).
import type { ControlHandlers } from "../control/control-socket.js";
import type { Logger } from "../log.js";
import { serveRunMetrics } from "../metrics/run-metrics.js";
import type { PrivilegeChoice } from "../privsep/privsep-mode.js";
import { type SeparatedRunConfig, Supervisor } from "../privsep/supervisor.js";
import { installProcessHandlers } from "../process-handlers.js";
import { findUdpPortHolders } from "../proxy/port-holder.js";
import type { Tunnelbore } from "../tunnelbore.js";
import { listWireGuardInterfaces } from "../wg/interface-set.js";
import { CatchAllPortStore } from "./catch-all-ports.js";
import { InterfaceFleet } from "./interface-fleet.js";
import { type InterfaceInstance, LocalInstance, SeparatedInstance } from "./interface-instance.js";

/** `run`'s configuration for every interface; each instance gets its own name and catch-all port. */
export type AllInterfacesConfig = Omit<SeparatedRunConfig, "interfaceName">;

export interface RunAllOptions {
  config: AllInterfacesConfig;
  privileges: PrivilegeChoice;
  logger: Logger;
  /** What the control socket answers in one-process mode (the same as `run --interface`'s). */
  controlHandlers: (tunnelbore: Tunnelbore) => ControlHandlers;
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
  );
  const fleet = new InterfaceFleet({
    list: listWireGuardInterfaces,
    pollIntervalMs: config.pollIntervalMs,
    removalGraceMs: Math.max(REMOVAL_GRACE_MS, 2 * config.pollIntervalMs),
    portFor: (name) => ports.portFor(name),
    create: (name, port) => createInstance(options, name, port),
    logger,
  });
  let exitCode = 0;
  let stopping = false;
  let onStop: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    onStop = resolve;
  });
  const stop = (code: number) => {
    exitCode = Math.max(exitCode, code);
    if (stopping) return;
    stopping = true;
    onStop();
  };
  // One metrics server for the process, reporting every interface served.
  const metrics =
    config.metrics && (await serveRunMetrics(config.metrics, () => fleet.statusReports(), logger));
  const removeHandlers = installProcessHandlers(
    {
      stop: (signal) => {
        logger.info({ signal }, "stopping every interface");
        stop(0);
      },
      reload: () => {
        logger.info({ signal: "SIGHUP" }, "reloading every interface");
        void fleet.reload();
      },
      fatal: (err) => {
        logger.fatal({ err }, "unexpected failure: giving WireGuard its endpoints back and exiting");
        stop(1);
      },
    },
    logger,
  );
  try {
    await Promise.race([fleet.start(), stopped]);
    if (!stopping) {
      const interfaces = fleet.interfaces().map((i) => `${i.name}:${i.catchAllPort ?? "-"}`);
      logger.info(
        { interfaces, catchAllBase: `${address}:${config.catchAll.port}` },
        interfaces.length > 0
          ? "tunnelbore running for every WireGuard interface"
          : "tunnelbore running: waiting for WireGuard interfaces",
      );
    }
    await stopped;
  } finally {
    await metrics?.close();
    await fleet.stop();
    removeHandlers();
  }
  return exitCode;
}

function createInstance(options: RunAllOptions, name: string, catchAllPort: number): InterfaceInstance {
  const { config, privileges, logger } = options;
  const log = logger.child({ interface: name });
  const instanceConfig: SeparatedRunConfig = {
    ...config,
    interfaceName: name,
    catchAll: { address: config.catchAll.address, port: catchAllPort },
    // Listed by `wg`, but it may still be being configured (no listen port yet): wait for that.
    waitForInterface: true,
    wgQuickConfig: undefined,
    metrics: undefined, // served once for all of them (runAllInterfaces)
  };
  if (privileges.separate) {
    return new SeparatedInstance(
      name,
      new Supervisor(instanceConfig, privileges.user, privileges.status, log),
    );
  }
  return new LocalInstance(name, {
    options: { ...instanceConfig, privileges: privileges.status, logger: log },
    runDir: config.runDir,
    controlHandlers: options.controlHandlers,
  });
}
