/**
 * The unprivileged worker of `tunnelbore run` (forked by supervisor.ts as the worker's user, with no
 * capabilities): runs Tunnelbore (introduction server link, ICE, proxy sockets, peers) and asks the
 * privileged parent for everything else (RemotePrivilegedOps). It stops only when the parent asks, and
 * exits when the parent goes: signals are the parent's to handle.
 */
import { ConfigError, RuntimeError, TunnelboreError } from "../errors.js";
import { createLogger, type LogFormat, type Logger } from "../log.js";
import type { Endpoint } from "../proxy/endpoint.js";
import { hideFromSameUser, installSyscallFilter } from "../syscall-filter.js";
import { Tunnelbore, type TunnelboreOptions } from "../tunnelbore.js";
import type { ParentMessage, Request, WorkerCommand, WorkerMessage } from "./ipc-protocol.js";
import type { PrivilegeStatus } from "./privilege-status.js";
import { RemotePrivilegedOps } from "./remote-ops.js";

// Before anything else runs, and before any network input is read.
const syscallFilter = installSyscallFilter();
const hidden = hideFromSameUser();

/** What the parent sends to start: the parsed `run` configuration (JSON-safe) and the mode. */
export interface WorkerStart {
  options: Omit<TunnelboreOptions, "logger" | "privileged" | "staticEndpoints" | "privileges">;
  staticEndpoints: [string, Endpoint][];
  logLevel: string;
  logFormat: LogFormat;
  /** The parent logger's bindings (e.g. the interface, when `run` serves every interface). */
  logBindings?: Record<string, unknown>;
  privileges: PrivilegeStatus;
}

const pending = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
let nextId = 1;
let tunnelbore: Tunnelbore | null = null;
let log: Logger = createLogger("tunnelbore-worker", process.env.TUNNELBORE_LOG ?? "info");

function send(message: WorkerMessage): void {
  if (process.connected) process.send?.(message);
}

function ask(request: Request): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (!process.connected) {
      reject(new RuntimeError("privsep-gone", "the privileged parent is gone"));
      return;
    }
    const id = nextId++;
    pending.set(id, { resolve, reject });
    send({ t: "req", id, req: request });
  });
}

async function start(message: WorkerStart): Promise<void> {
  log = createLogger("tunnelbore", message.logLevel, message.logFormat).child(message.logBindings ?? {});
  if (syscallFilter.on) log.info("worker: syscall filter on (seccomp)");
  else log.warn({ reason: syscallFilter.reason }, "worker runs without a syscall filter");
  if (hidden !== null) log.warn({ reason: hidden }, "worker stays open to ptrace by processes of its user");
  tunnelbore = new Tunnelbore({
    ...message.options,
    staticEndpoints: new Map(message.staticEndpoints),
    privileged: new RemotePrivilegedOps(ask, log),
    privileges: { ...message.privileges, syscallFilter },
    logger: log,
  });
  send({ t: "created" });
  try {
    await tunnelbore.start();
    send({ t: "running" });
  } catch (err) {
    const exitCode = err instanceof ConfigError ? 2 : 1;
    const text = err instanceof TunnelboreError ? err.message : String((err as Error)?.stack ?? err);
    send({ t: "failed", message: text.slice(0, 4096), exitCode });
  }
}

async function command(cmd: WorkerCommand): Promise<unknown> {
  const current = tunnelbore;
  if (!current) throw new RuntimeError("privsep-not-started", "not started yet");
  if (typeof cmd === "object") return current.ping(cmd.request);
  switch (cmd) {
    case "status":
      return current.statusReport();
    case "release":
      return current.release();
    case "ice-servers":
      return current.iceServers();
    case "reload":
      await current.reload();
      return null;
    case "stop":
      await current.stop();
      return null;
  }
}

function onMessage(raw: unknown): void {
  const message = raw as ParentMessage;
  switch (message?.t) {
    case "start":
      void start(message.config as WorkerStart);
      return;
    case "res": {
      const waiting = pending.get(message.id);
      pending.delete(message.id);
      if (!waiting) return;
      if (message.ok) waiting.resolve(message.value);
      else {
        const ErrorType = message.error.config ? ConfigError : RuntimeError;
        waiting.reject(new ErrorType(message.error.code, message.error.message));
      }
      return;
    }
    case "cmd":
      command(message.cmd).then(
        (value) => {
          send({ t: "ans", id: message.id, ok: true, value });
          if (message.cmd === "stop") process.disconnect();
        },
        (err: unknown) => send({ t: "ans", id: message.id, ok: false, value: (err as Error).message }),
      );
      return;
  }
}

process.on("message", onMessage);
// The parent handles signals (a Ctrl-C reaches both): it asks us to stop, then restores endpoints.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => undefined);
process.on("disconnect", () => {
  // Stopped on request, or the parent is gone: either way nothing is left to do here.
  process.exit(0);
});
process.on("uncaughtException", (err) => {
  log.fatal({ err }, "worker: unexpected failure");
  process.exit(1);
});
process.on("unhandledRejection", (reason) => {
  log.error({ err: reason }, "unhandled promise rejection (ignored)");
});
