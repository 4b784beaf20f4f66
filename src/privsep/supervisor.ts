/**
 * The privileged parent of a privilege-separated `tunnelbore run`: forks the worker as an unprivileged
 * user, checks that it really has no root and no capabilities, answers its requests through
 * PrivilegedServer and serves the control socket (relaying to the worker). When the worker dies
 * unexpectedly the parent gives WireGuard its real endpoints back and serve() ends with exit code 1 (a
 * service manager restarts the whole; a worker restarted behind its back could hide a crash loop).
 * Signals are the caller's (src/service-lifecycle.ts); without --interface, src/all-interfaces/ runs
 * one Supervisor per interface and retries a failed one with backoff while the others carry on.
 */
import { type ChildProcess, fork } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import type { ReleaseAnswer } from "../control/control-socket.js";
import { ControlServer, controlSocketPath } from "../control/control-socket.js";
import type { PingAnswer } from "../control/path-probe.js";
import type { StatusReport } from "../control/status.js";
import { ConfigError, RuntimeError, TunnelboreError } from "../errors.js";
import type { LogFormat, Logger } from "../log.js";
import type { MetricsAddress } from "../metrics/metrics-address.js";
import type { IceServersAnswer } from "../netcheck/ice-servers.js";
import type { Endpoint } from "../proxy/endpoint.js";
import type { TunnelboreOptions } from "../tunnelbore.js";
import {
  type ParentMessage,
  type WorkerCommand,
  type WorkerMessage,
  workerMessageSchema,
} from "./ipc-protocol.js";
import type { PrivilegeStatus } from "./privilege-status.js";
import { LocalPrivilegedOps } from "./privileged-ops.js";
import { PrivilegedServer } from "./privileged-server.js";
import { type WorkerUser, workerScriptPath } from "./privsep-mode.js";
import { caCertsForWorker } from "./worker-ca-certs.js";
import type { WorkerStart } from "./worker-main.js";

/** The parts of `run`'s configuration the parent needs itself; the rest goes to the worker as is. */
export interface SeparatedRunConfig extends Omit<TunnelboreOptions, "logger" | "privileged" | "privileges"> {
  runDir: string;
  /** --metrics: served by the parent from the worker's status, so the worker needs no listening port. */
  metrics?: MetricsAddress;
  logLevel: string;
  logFormat: LogFormat;
  staticEndpoints: Map<string, Endpoint>;
}

/** How a Supervisor's serve() ended: its exit code, and the error when the worker failed to start. */
export interface SupervisorOutcome {
  exitCode: number;
  error?: TunnelboreError;
}

/** setpriv (util-linux): the kernel kills the worker when the parent dies, even by SIGKILL. */
const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p)) ?? null;

/** How long the worker has to stop (close paths, restore endpoints through us) before it is killed. */
const STOP_TIMEOUT_MS = 20_000;
/** How long a control command may take in the worker. */
const COMMAND_TIMEOUT_MS = 15_000;

/** What /proc says of a process: its real uid and effective and permitted capabilities. */
export async function processPrivileges(
  pid: number,
): Promise<{ uid: number; capEff: bigint; capPrm: bigint }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const field = (name: string) =>
    /^\S+:\s*(\S+)/.exec(status.split("\n").find((l) => l.startsWith(`${name}:`)) ?? "")?.[1];
  return {
    uid: Number(field("Uid")),
    capEff: BigInt(`0x${field("CapEff") ?? "ffffffff"}`),
    capPrm: BigInt(`0x${field("CapPrm") ?? "ffffffff"}`),
  };
}

export class Supervisor {
  private readonly log: Logger;
  private readonly ops: LocalPrivilegedOps;
  private readonly server: PrivilegedServer;
  private worker: ChildProcess | null = null;
  private nextCommand = 1;
  private readonly commands = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  private stopping = false;
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> = Promise.resolve({
    code: 0,
    signal: null,
  });
  private onCreated: () => void = () => undefined;
  /** Commands wait until the worker has its Tunnelbore (which may then wait for the interface). */
  private readonly created = new Promise<void>((resolve) => {
    this.onCreated = resolve;
  });
  private onRunning: () => void = () => undefined;
  /** Resolves once the worker's Tunnelbore runs (its interface read, its sockets bound). */
  readonly running = new Promise<void>((resolve) => {
    this.onRunning = resolve;
  });
  private removeCaCerts: () => Promise<void> = async () => undefined;
  private finish: (outcome: SupervisorOutcome) => void = () => undefined;
  /** How serve() ends: a stop, the worker's failure to start, or its death. */
  private readonly outcome = new Promise<SupervisorOutcome>((resolve) => {
    this.finish = resolve;
  });

  constructor(
    private readonly config: SeparatedRunConfig,
    private readonly user: WorkerUser,
    private readonly privileges: PrivilegeStatus,
    logger: Logger,
  ) {
    this.log = logger;
    this.ops = new LocalPrivilegedOps({
      interfaceName: config.interfaceName,
      stateDir: config.stateDir,
      wgQuickConfig: config.wgQuickConfig,
      logger,
      markedPid: () => this.worker?.pid ?? process.pid,
    });
    this.server = new PrivilegedServer({ interfaceName: config.interfaceName, ops: this.ops, logger });
  }

  /**
   * Serves the control socket and runs the worker until shutdown() or the worker's end, and says how it
   * ended (throws when the worker cannot be started). Signals are the caller's (src/service-lifecycle.ts
   * through an InterfaceInstance: one for --interface, one per interface otherwise).
   */
  async serve(): Promise<SupervisorOutcome> {
    const ask = (cmd: WorkerCommand) => this.ask(cmd);
    const control = new ControlServer(controlSocketPath(this.config.runDir, this.config.interfaceName), {
      status: () => ask("status") as Promise<StatusReport>,
      release: () => ask("release") as Promise<ReleaseAnswer>,
      ping: (request) => ask({ op: "ping", request }) as Promise<PingAnswer>,
      iceServers: () => ask("ice-servers") as Promise<IceServersAnswer>,
    });
    await control.listen();
    try {
      await this.startWorker();
      return await this.outcome;
    } finally {
      await control.close();
      await this.stop();
    }
  }

  /** The worker's PID while it runs (logged, so an operator can find it). */
  get workerPid(): number | undefined {
    return this.worker?.pid;
  }

  /** Stops the worker (restoring endpoints) and ends serve() with `exitCode`. */
  shutdown(exitCode: number): Promise<void> {
    return this.stop().then(() => this.finish({ exitCode }));
  }

  /** SIGHUP: the worker reads its configuration and the interface again. */
  async reload(): Promise<void> {
    await this.command("reload");
  }

  /** The worker's status (waits while it is being created). */
  status(): Promise<StatusReport> {
    return this.ask("status") as Promise<StatusReport>;
  }

  /** `tunnelbore release`, relayed to the worker. */
  release(): Promise<ReleaseAnswer> {
    return this.ask("release") as Promise<ReleaseAnswer>;
  }

  /** A control command for the worker, once it has its Tunnelbore; refused once serve() has ended. */
  private async ask(cmd: WorkerCommand): Promise<unknown> {
    const gone = this.outcome.then(() => {
      throw new RuntimeError("privsep-gone", "the worker is not running");
    });
    gone.catch(() => undefined);
    await Promise.race([this.created, gone]);
    return this.command(cmd);
  }

  private async startWorker(): Promise<void> {
    const { uid, gid } = this.user;
    const caCerts = await caCertsForWorker(this.user, this.log);
    this.removeCaCerts = () => caCerts.remove();
    // Without setpriv the worker still ends at once when the IPC channel closes (worker-main.ts).
    const worker = fork(workerScriptPath(), [], {
      uid,
      gid,
      cwd: "/",
      env: caCerts.env,
      execPath: SETPRIV ?? process.execPath,
      // --no-new-privs: no setuid binary or file capability can hand the worker privileges back.
      execArgv: [
        ...(SETPRIV ? ["--pdeathsig", "KILL", "--no-new-privs", "--", process.execPath] : []),
        // A profiled parent (bench/hub.ts) has its worker profiled too (CPU, or heap snapshots on a
        // signal), each to a file of its own.
        ...process.execArgv.filter((arg) => /^--(cpu-prof|heapsnapshot-signal|diagnostic-dir)/.test(arg)),
      ],
      serialization: "json",
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.worker = worker;
    this.exited = new Promise((resolve) => worker.once("exit", (code, signal) => resolve({ code, signal })));
    worker.on("error", (err) => this.log.error({ err }, "privilege separation: the worker failed"));
    worker.on("message", (message) => this.onWorkerMessage(message));
    void this.exited.then(({ code, signal }) => this.onWorkerExit(code, signal));
    await new Promise<void>((resolve, reject) => {
      worker.once("spawn", resolve);
      worker.once("error", reject);
    });
    // The promise of separation, checked rather than assumed: no root, no capabilities.
    const seen = await processPrivileges(worker.pid ?? -1);
    if (seen.uid === 0 || seen.capEff !== 0n || seen.capPrm !== 0n) {
      worker.kill("SIGKILL");
      throw new RuntimeError("privsep-failed", "the worker kept privileges after switching users", {
        uid: seen.uid,
        capEff: seen.capEff.toString(16),
      });
    }
    if (this.stopping) {
      worker.kill("SIGKILL"); // stopped while it was being forked: it has done nothing yet
      return;
    }
    this.log.debug({ pid: worker.pid, uid }, "worker started");
    // The Map goes as its entries (JSON); everything else as it is.
    const { staticEndpoints, ...options } = this.config;
    const start: WorkerStart = {
      options,
      staticEndpoints: [...staticEndpoints],
      logLevel: this.config.logLevel,
      logFormat: this.config.logFormat,
      // What the parent's lines carry (`run` without --interface: the interface), the worker's carry too.
      logBindings: this.log.bindings(),
      privileges: this.privileges,
    };
    this.send({ t: "start", config: start });
  }

  /** Malformed or hostile messages from the worker are refused, logged and never crash the parent. */
  private onWorkerMessage(raw: unknown): void {
    const parsed = workerMessageSchema.safeParse(raw);
    if (!parsed.success) {
      this.log.warn("privilege separation: ignoring a malformed message from the worker");
      return;
    }
    const message: WorkerMessage = parsed.data;
    switch (message.t) {
      case "req":
        this.server.handle(message.req).then(
          (value) => this.send({ t: "res", id: message.id, ok: true, value }),
          (err: unknown) => {
            const code = err instanceof TunnelboreError ? err.code : "privsep-failed";
            const text = err instanceof Error ? err.message : String(err);
            if (code === "privsep-refused")
              this.log.warn({ err: text }, "privilege separation: request refused");
            const config = err instanceof ConfigError;
            this.send({ t: "res", id: message.id, ok: false, error: { code, message: text, config } });
          },
        );
        return;
      case "ans": {
        const waiting = this.commands.get(message.id);
        this.commands.delete(message.id);
        if (!waiting) return;
        if (message.ok) waiting.resolve(message.value);
        else waiting.reject(new RuntimeError("privsep-command-failed", String(message.value).slice(0, 512)));
        return;
      }
      case "created":
        this.onCreated();
        return;
      case "running":
        this.onRunning();
        this.log.debug({ interface: this.config.interfaceName, worker: this.worker?.pid }, "worker running");
        return;
      case "failed": {
        const ErrorType = message.exitCode === 2 ? ConfigError : RuntimeError;
        const error = new ErrorType("start-failed", message.message);
        void this.stop().then(() => this.finish({ exitCode: message.exitCode, error }));
        return;
      }
    }
  }

  private onWorkerExit(code: number | null, signal: NodeJS.Signals | null): void {
    for (const waiting of this.commands.values())
      waiting.reject(new RuntimeError("privsep-gone", "the worker is gone"));
    this.commands.clear();
    if (this.stopping) return;
    this.log.error(
      { interface: this.config.interfaceName, code, signal },
      "the unprivileged worker exited unexpectedly: giving WireGuard its real endpoints back",
    );
    void this.stop().then(() => this.finish({ exitCode: 1 }));
  }

  /** Asks the worker (control socket, signals). */
  private command(cmd: WorkerCommand, timeoutMs = COMMAND_TIMEOUT_MS): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const worker = this.worker;
      if (!worker?.connected) {
        reject(new RuntimeError("privsep-gone", "the worker is not running"));
        return;
      }
      const id = this.nextCommand++;
      const timer = setTimeout(() => {
        this.commands.delete(id);
        const name = typeof cmd === "string" ? cmd : cmd.op;
        reject(new RuntimeError("privsep-timeout", `the worker did not answer "${name}" in time`));
      }, timeoutMs);
      timer.unref();
      this.commands.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      this.send({ t: "cmd", id, cmd });
    });
  }

  private stopped: Promise<void> | null = null;

  /** The worker stops (restoring through us), then the parent restores what is left and unloads. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping = true;
      const worker = this.worker;
      if (worker && worker.exitCode === null && worker.signalCode === null) {
        await this.command("stop", STOP_TIMEOUT_MS).catch((err: unknown) =>
          this.log.warn({ err }, "the worker did not stop cleanly"),
        );
        const killer = setTimeout(() => worker.kill("SIGKILL"), 5_000);
        await this.exited;
        clearTimeout(killer);
      }
      await this.server.close();
      await this.removeCaCerts();
    })();
    return this.stopped;
  }

  private send(message: ParentMessage): void {
    try {
      if (this.worker?.connected) this.worker.send(message);
    } catch (err) {
      this.log.debug({ err }, "privilege separation: cannot send to the worker");
    }
  }
}
