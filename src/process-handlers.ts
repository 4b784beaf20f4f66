// The process-wide handlers of a long-running command (run, and the privilege-separated parent):
// stop signals, SIGHUP reload, a fatal exception, and stray promise rejections.
import type { Logger } from "./log.js";

export interface ProcessHandlers {
  /** SIGINT or SIGTERM. */
  stop(signal: NodeJS.Signals): void;
  /** SIGHUP. */
  reload(): void;
  /** An uncaught exception: give WireGuard its endpoints back and exit 1. */
  fatal(err: unknown): void;
}

/** Installs the handlers; returns what removes them again. */
export function installProcessHandlers(handlers: ProcessHandlers, logger: Logger): () => void {
  // A promise some library left unhandled (werift's sockets and timers) is a bug to see, not a reason
  // to drop every peer's connection: unlike Node's default, it does not end the process.
  const onStrayRejection = (reason: unknown) => {
    logger.error({ err: reason }, "unhandled promise rejection (ignored)");
  };
  const onHangUp = () => handlers.reload();
  process.on("SIGINT", handlers.stop);
  process.on("SIGTERM", handlers.stop);
  process.on("SIGHUP", onHangUp);
  process.on("uncaughtException", handlers.fatal);
  process.on("unhandledRejection", onStrayRejection);
  return () => {
    process.off("SIGINT", handlers.stop);
    process.off("SIGTERM", handlers.stop);
    process.off("SIGHUP", onHangUp);
    process.off("uncaughtException", handlers.fatal);
    process.off("unhandledRejection", onStrayRejection);
  };
}
