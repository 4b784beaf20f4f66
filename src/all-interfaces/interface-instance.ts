// One interface's Tunnelbore: in its own unprivileged worker (a Supervisor, privilege separation: a
// failure stays in that worker), or in this process (--no-privsep). `run --interface` serves one as
// the whole service (instanceService); `run` without it, one per interface (InterfaceFleet).
import {
  type ControlHandlers,
  ControlServer,
  controlSocketPath,
  type ReleaseAnswer,
} from "../control/control-socket.js";
import type { StatusReport } from "../control/status.js";
import { ConfigError, RuntimeError } from "../errors.js";
import type { Logger } from "../log.js";
import type { PrivilegeChoice } from "../privsep/privsep-mode.js";
import { type SeparatedRunConfig, Supervisor } from "../privsep/supervisor.js";
import type { Service } from "../service-lifecycle.js";
import type { Tunnelbore, TunnelboreOptions } from "../tunnelbore.js";

/** How an instance ended: 0 after stop(); else its failure (2: a configuration problem). */
export interface InstanceEnd {
  exitCode: number;
  error?: unknown;
}

export interface InterfaceInstance {
  readonly name: string;
  /** Runs until stop() or a failure, and says how it ended; never rejects. */
  serve(): Promise<InstanceEnd>;
  /** Resolves once it serves (the interface read, its sockets bound). */
  readonly running: Promise<void>;
  /** The PID of its worker, when it has one (privilege separation). */
  readonly workerPid?: number;
  /** Gives WireGuard its real endpoints back and ends serve(). */
  stop(): Promise<void>;
  reload(): Promise<void>;
  status(): Promise<StatusReport>;
  release(): Promise<ReleaseAnswer>;
}

export interface InstanceSettings {
  /** `run`'s configuration for this interface. */
  config: SeparatedRunConfig;
  privileges: PrivilegeChoice;
  logger: Logger;
  /** What the control socket answers in one-process mode. */
  controlHandlers: (tunnelbore: Tunnelbore) => ControlHandlers;
}

/** The interface's instance: in its own worker with privilege separation, else in this process. */
export function createInterfaceInstance(settings: InstanceSettings): InterfaceInstance {
  const { config, privileges, logger } = settings;
  if (privileges.separate) {
    return new SeparatedInstance(
      config.interfaceName,
      new Supervisor(config, privileges.user, privileges.status, logger),
    );
  }
  return new LocalInstance(config.interfaceName, {
    options: { ...config, privileges: privileges.status, logger },
    runDir: config.runDir,
    controlHandlers: settings.controlHandlers,
  });
}

function ended(err: unknown): InstanceEnd {
  return { exitCode: err instanceof ConfigError ? 2 : 1, error: err };
}

/** An interface served by its own Supervisor and worker (privilege separation). */
export class SeparatedInstance implements InterfaceInstance {
  constructor(
    readonly name: string,
    private readonly supervisor: Supervisor,
  ) {}

  get running(): Promise<void> {
    return this.supervisor.running;
  }

  get workerPid(): number | undefined {
    return this.supervisor.workerPid;
  }

  serve(): Promise<InstanceEnd> {
    return this.supervisor.serve().then(({ exitCode, error }) => ({ exitCode, error }), ended);
  }

  stop(): Promise<void> {
    return this.supervisor.shutdown(0);
  }

  reload(): Promise<void> {
    return this.supervisor.reload();
  }

  status(): Promise<StatusReport> {
    return this.supervisor.status();
  }

  release(): Promise<ReleaseAnswer> {
    return this.supervisor.release();
  }
}

export interface LocalInstanceOptions {
  options: TunnelboreOptions;
  runDir: string;
  /** What the control socket answers for a Tunnelbore (the same as `run --interface`'s). */
  controlHandlers: (tunnelbore: Tunnelbore) => ControlHandlers;
}

/**
 * An interface served in this process (--no-privsep). An exception thrown outside a promise cannot be
 * told apart by interface here: that ends the whole process, as with --interface.
 */
export class LocalInstance implements InterfaceInstance {
  private tunnelbore: Tunnelbore | null = null;
  private onStop: () => void = () => undefined;
  private readonly stopRequested = new Promise<void>((resolve) => {
    this.onStop = resolve;
  });
  private onRunning: () => void = () => undefined;
  readonly running = new Promise<void>((resolve) => {
    this.onRunning = resolve;
  });
  private finished: Promise<InstanceEnd> | null = null;

  constructor(
    readonly name: string,
    private readonly config: LocalInstanceOptions,
  ) {}

  serve(): Promise<InstanceEnd> {
    this.finished ??= this.serveOnce();
    return this.finished;
  }

  private async serveOnce(): Promise<InstanceEnd> {
    // Loaded only here: a separated parent never parses network input.
    const { Tunnelbore } = await import("../tunnelbore.js");
    const tunnelbore = new Tunnelbore(this.config.options);
    this.tunnelbore = tunnelbore;
    const control = new ControlServer(
      controlSocketPath(this.config.runDir, this.name),
      this.config.controlHandlers(tunnelbore),
    );
    try {
      await control.listen(); // not closed when this fails: the socket may be another tunnelbore's
    } catch (err) {
      return ended(err);
    }
    try {
      const starting = tunnelbore.start();
      starting.catch(() => undefined); // a failure after stop() is not worth reporting
      await Promise.race([starting.then(() => this.onRunning()), this.stopRequested]);
      await this.stopRequested;
      return { exitCode: 0 };
    } catch (err) {
      return ended(err);
    } finally {
      await control.close();
      await tunnelbore.stop();
    }
  }

  async stop(): Promise<void> {
    this.onStop();
    await this.finished;
  }

  async reload(): Promise<void> {
    await this.tunnelbore?.reload();
  }

  async status(): Promise<StatusReport> {
    const tunnelbore = this.tunnelbore;
    if (!tunnelbore) throw new ConfigError("not-running", `interface ${this.name} is not served yet`);
    return tunnelbore.statusReport();
  }

  async release(): Promise<ReleaseAnswer> {
    const tunnelbore = this.tunnelbore;
    if (!tunnelbore) return { restored: 0 };
    return tunnelbore.release();
  }
}

/**
 * One instance as the whole service (`run --interface`): its failure to start is the run's error (exit
 * 2 for a configuration problem), its end after that (a worker that died) ends the run with exit 1.
 */
export function instanceService(instance: InterfaceInstance, describe: Service["describe"]): Service {
  let onEnded: (exitCode: number) => void = () => undefined;
  const ended = new Promise<number>((resolve) => {
    onEnded = resolve;
  });
  return {
    async start() {
      const serving = instance.serve();
      const early = await Promise.race([instance.running.then(() => null), serving]);
      if (early) {
        throw (
          early.error ??
          new RuntimeError("start-failed", `interface ${instance.name}: stopped while starting`)
        );
      }
      void serving.then((end) => onEnded(end.exitCode));
    },
    ended,
    reload: () => instance.reload(),
    stop: () => instance.stop(),
    describe,
  };
}
