import type { Logger } from "./log.js";
import { errnoName, loadNativeAddon } from "./native-addon.js";

/** native/service_notify.c: 0, or the errno of the send. */
interface ServiceNotifyAddon {
  notify(path: string, message: string): number;
}

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
    return new ServiceNotifier(socketPath, loadNativeAddon<ServiceNotifyAddon>("service_notify"), log);
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
        { socket: this.socketPath, errno: errnoName(errno), message: message.split("\n")[0] },
        "cannot notify systemd",
      );
    }
  }
}
