import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";
import type { Logger } from "./log.js";

/** native/service_notify.c: 0, or the errno of the send. */
interface ServiceNotifyAddon {
  notify(path: string, message: string): number;
}

// dist/src/ and src/ are one and two levels below the package root.
const ADDON_PATHS = [
  "../native/build/Release/service_notify.node",
  "../../native/build/Release/service_notify.node",
];

function loadAddon(): ServiceNotifyAddon | string {
  const path = ADDON_PATHS.map((p) => fileURLToPath(new URL(p, import.meta.url))).find((p) => existsSync(p));
  if (!path) return "native/build/Release/service_notify.node is missing (not built at install)";
  try {
    return createRequire(import.meta.url)(path) as ServiceNotifyAddon;
  } catch (err) {
    return `cannot load ${path}: ${(err as Error).message}`;
  }
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/**
 * Tells systemd how the service stands (Type=notify): READY=1 once it serves, RELOADING=1 around a
 * SIGHUP, STOPPING=1 when it stops, STATUS= for `systemctl status`. Does nothing outside systemd (no
 * NOTIFY_SOCKET). The variable is removed from the environment, so the processes we start (the worker,
 * wg, tc) cannot speak for the service.
 */
export class ServiceNotifier {
  private warned = false;

  private constructor(
    private readonly socketPath: string,
    private readonly addon: ServiceNotifyAddon | string,
    private readonly log: Logger,
  ) {}

  /** The notifier of this process, or null when systemd did not ask for notifications. */
  static fromEnvironment(log: Logger, env: NodeJS.ProcessEnv = process.env): ServiceNotifier | null {
    const socketPath = env.NOTIFY_SOCKET;
    delete env.NOTIFY_SOCKET;
    if (!socketPath) return null;
    return new ServiceNotifier(socketPath, loadAddon(), log);
  }

  ready(status?: string): void {
    this.send(status === undefined ? "READY=1" : `READY=1\nSTATUS=${status}`);
  }

  reloading(): void {
    this.send("RELOADING=1");
  }

  stopping(): void {
    this.send("STOPPING=1");
  }

  status(text: string): void {
    this.send(`STATUS=${text}`);
  }

  private send(message: string): void {
    if (typeof this.addon === "string") {
      // Without it systemd waits for READY=1 until TimeoutStartSec= and fails the start: say why once.
      if (!this.warned)
        this.log.error(
          { why: this.addon },
          "cannot notify systemd (Type=notify): rebuild the native addons (npm run build:native)",
        );
      this.warned = true;
      return;
    }
    const errno = this.addon.notify(this.socketPath, message);
    if (errno !== 0) {
      this.log.warn(
        { socket: this.socketPath, errno: ERRNO_NAMES.get(errno) ?? errno, message: message.split("\n")[0] },
        "cannot notify systemd",
      );
    }
  }
}
