// The life of `tunnelbore run` as a service, for one interface or all of them: serve until SIGINT or
// SIGTERM (exit 0), the service's own end (a worker that died) or an unexpected failure (exit 1);
// SIGHUP reloads; systemd hears each step (READY, RELOADING, STOPPING: Type=notify).
import type { Logger } from "./log.js";
import { installProcessHandlers } from "./process-handlers.js";
import type { ServiceNotifier } from "./service-notify.js";

export interface Service {
  /** Starts serving; resolves once it serves. A rejection ends the run with that error, after stop(). */
  start(): Promise<void>;
  /** Resolves with an exit code when the service ends by itself (e.g. its worker died). */
  readonly ended?: Promise<number>;
  reload(): Promise<void>;
  /** Stops serving, giving WireGuard its endpoints back; called once at the end, whatever happened. */
  stop(): Promise<void>;
  /** Logged, and given to systemd as its STATUS, once serving. */
  describe(): { fields: Record<string, unknown>; message: string };
}

/** Runs `service` until it should end; returns the exit code (throws when it failed to start). */
export async function runService(
  service: Service,
  log: Logger,
  notifier: ServiceNotifier | null,
): Promise<number> {
  let exitCode: number | null = null;
  let onEnd: () => void = () => undefined;
  const endRequested = new Promise<void>((resolve) => {
    onEnd = resolve;
  });
  const end = (code: number) => {
    if (exitCode === null) {
      notifier?.stopping();
      onEnd();
    }
    exitCode = Math.max(exitCode ?? 0, code);
  };
  const removeHandlers = installProcessHandlers(
    {
      stop: (signal) => {
        log.info({ signal }, "stopping");
        end(0);
      },
      reload: () => {
        log.info({ signal: "SIGHUP" }, "reloading");
        notifier?.reloading();
        service
          .reload()
          .catch((err: unknown) => log.warn({ err }, "reload failed"))
          .finally(() => {
            if (exitCode === null) notifier?.ready();
          });
      },
      fatal: (err) => {
        log.fatal({ err }, "unexpected failure: giving WireGuard its endpoints back and exiting");
        end(1);
      },
    },
    log,
  );
  void service.ended?.then(end);
  try {
    const starting = service.start();
    starting.catch(() => undefined); // a failure after a stop signal is not worth a crash
    await Promise.race([starting, endRequested]);
    if (exitCode === null) {
      const { fields, message } = service.describe();
      log.info(fields, message);
      notifier?.ready(message);
    }
    await endRequested;
  } finally {
    await service.stop();
    removeHandlers();
  }
  return exitCode ?? 0;
}
