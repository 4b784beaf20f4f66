// `run` without --interface: one instance per WireGuard interface on the host, following interfaces as
// they come and go. A failed instance is logged and retried with backoff; the others never notice.
import { setTimeout as sleep } from "node:timers/promises";
import { Backoff, type BackoffOptions } from "../backoff.js";
import type { ReleaseAnswer } from "../control/control-socket.js";
import type { StatusReport } from "../control/status.js";
import type { Logger } from "../log.js";
import { InterfaceSetTracker } from "../wg/interface-set.js";
import type { InstanceEnd, InterfaceInstance } from "./interface-instance.js";

export interface InterfaceFleetOptions {
  /** The interfaces there are now (listWireGuardInterfaces). */
  list: () => Promise<string[]>;
  pollIntervalMs: number;
  /** How long an interface may be missing before its instance stops (a WireGuard restart recreates it). */
  removalGraceMs: number;
  /** The interface's catch-all port (CatchAllPortStore). */
  portFor: (name: string) => Promise<number>;
  /** The interface is not served any more: its port may go to another once every port is taken. */
  portReleased?: (name: string) => Promise<void>;
  create: (name: string, catchAllPort: number) => InterfaceInstance;
  logger: Logger;
  /** Retries of a failed instance (default 1 s doubling to 60 s, jittered). */
  retry?: BackoffOptions;
  /** How long each new interface may take to start before the next one starts anyway (default 10 s). */
  startWaitMs?: number;
  now?: () => number;
}

const DEFAULT_RETRY: BackoffOptions = { initialMs: 1000, maxMs: 60_000, jitter: [0.5, 1] };
/** An instance that served this long before failing was fine: its next failure retries quickly again. */
const STABLE_MS = 60_000;

/** An interface being served: its instance (null while waiting for a retry) and its retries. */
interface Slot {
  readonly name: string;
  instance: InterfaceInstance | null;
  catchAllPort: number | null;
  launchedAt: number;
  readonly backoff: Backoff;
  retryTimer: NodeJS.Timeout | null;
}

export class InterfaceFleet {
  private readonly log: Logger;
  private readonly tracker: InterfaceSetTracker;
  private readonly slots = new Map<string, Slot>();
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<void> | null = null;
  private listFailure: string | null = null;
  private stopped = false;

  constructor(private readonly options: InterfaceFleetOptions) {
    this.log = options.logger;
    this.now = options.now ?? Date.now;
    this.tracker = new InterfaceSetTracker(options.removalGraceMs);
  }

  /** Looks at the interfaces now, starts an instance for each, and keeps following them until stop(). */
  async start(): Promise<void> {
    await this.poll();
    // Not unref'd: with no interface yet, this timer is what keeps `run` waiting for one.
    this.timer = setInterval(() => void this.poll(), this.options.pollIntervalMs);
  }

  /** The interfaces served (or being retried), with their catch-all ports. */
  interfaces(): { name: string; catchAllPort: number | null; serving: boolean }[] {
    return [...this.slots.values()].map((slot) => ({
      name: slot.name,
      catchAllPort: slot.catchAllPort,
      serving: slot.instance !== null,
    }));
  }

  /** Every serving instance's status, by interface name; an instance that cannot answer is left out. */
  async statusReports(): Promise<StatusReport[]> {
    const instances = [...this.slots.values()].flatMap((slot) => (slot.instance ? [slot.instance] : []));
    const answers = await Promise.allSettled(instances.map((instance) => instance.status()));
    return answers.flatMap((answer) => (answer.status === "fulfilled" ? [answer.value] : []));
  }

  /** SIGHUP: every instance reads its configuration and interface again. */
  async reload(): Promise<void> {
    await Promise.all(
      [...this.slots.values()].map((slot) =>
        slot.instance
          ?.reload()
          .catch((err: unknown) => this.log.warn({ err, interface: slot.name }, "reload failed")),
      ),
    );
  }

  /** Releases every interface (as `tunnelbore release` does one); how many endpoints were given back. */
  async release(): Promise<ReleaseAnswer> {
    const answers = await Promise.all(
      [...this.slots.values()].map((slot) => slot.instance?.release().catch(() => ({ restored: 0 }))),
    );
    return { restored: answers.reduce((sum, answer) => sum + (answer?.restored ?? 0), 0) };
  }

  /** Stops every instance at once, each giving WireGuard its real endpoints back. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const removeAll = () => Promise.all([...this.slots.keys()].map((name) => this.remove(name)));
    await removeAll(); // first, so that a look waiting for a starting instance ends at once
    await this.polling;
    await removeAll();
  }

  /** One look at the interfaces at a time; a look asked for meanwhile is that one. */
  private poll(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.polling ??= this.pollOnce().finally(() => {
      this.polling = null;
    });
    return this.polling;
  }

  private async pollOnce(): Promise<void> {
    let names: string[];
    try {
      names = await this.options.list();
    } catch (err) {
      const text = (err as Error).message;
      if (this.listFailure !== text) this.log.warn({ err }, "cannot list the WireGuard interfaces");
      this.listFailure = text;
      return;
    }
    this.listFailure = null;
    const { added, removed } = this.tracker.update(names, this.now());
    await Promise.all(
      removed.map(async (name) => {
        this.log.info({ interface: name }, "interface is gone: stopping its instance");
        await this.remove(name);
      }),
    );
    // One at a time, in name order (as long as each starts within startWaitMs): a peer on two
    // interfaces gets the same loopback address on each at every start.
    for (const name of added) {
      if (this.stopped) return;
      this.log.info({ interface: name }, "new WireGuard interface");
      const slot: Slot = {
        name,
        instance: null,
        catchAllPort: null,
        launchedAt: 0,
        backoff: new Backoff(this.options.retry ?? DEFAULT_RETRY),
        retryTimer: null,
      };
      this.slots.set(name, slot);
      await this.launch(slot);
    }
  }

  /** Starts the slot's instance; resolves once it runs, ended, or took startWaitMs. */
  private async launch(slot: Slot): Promise<void> {
    if (!this.current(slot)) return;
    let port: number;
    try {
      port = await this.options.portFor(slot.name);
    } catch (err) {
      this.retryLater(slot, { exitCode: 1, error: err });
      return;
    }
    if (!this.current(slot)) return;
    slot.catchAllPort = port;
    const instance = this.options.create(slot.name, port);
    slot.instance = instance;
    slot.launchedAt = this.now();
    this.log.info({ interface: slot.name, catchAllPort: port }, "serving interface");
    const end = instance.serve();
    void end.then((result) => this.onEnded(slot, instance, result));
    void instance.running.then(() => {
      if (slot.instance === instance) {
        const worker = instance.workerPid;
        this.log.info({ interface: slot.name, catchAllPort: port, worker }, "tunnelbore running");
      }
    });
    const wait = new AbortController();
    await Promise.race([
      instance.running,
      end,
      sleep(this.options.startWaitMs ?? 10_000, undefined, { signal: wait.signal }).catch(() => undefined),
    ]);
    wait.abort();
  }

  /** Whether the slot is still wanted (not stopped, its interface not removed). */
  private current(slot: Slot): boolean {
    return !this.stopped && this.slots.get(slot.name) === slot;
  }

  private onEnded(slot: Slot, instance: InterfaceInstance, result: InstanceEnd): void {
    if (slot.instance !== instance) return; // stopped on purpose
    slot.instance = null;
    if (!this.current(slot)) return;
    if (this.now() - slot.launchedAt >= STABLE_MS) slot.backoff.reset();
    this.retryLater(slot, result);
  }

  private retryLater(slot: Slot, result: InstanceEnd): void {
    if (!this.current(slot)) return;
    const delay = Math.round(slot.backoff.next());
    this.log.error(
      { interface: slot.name, err: result.error, exitCode: result.exitCode, retryInMs: delay },
      "the interface's instance failed: retrying (the other interfaces carry on)",
    );
    slot.retryTimer = setTimeout(() => {
      slot.retryTimer = null;
      void this.launch(slot);
    }, delay);
  }

  /** The interface is not served any more: its instance stops, giving WireGuard its endpoints back. */
  private async remove(name: string): Promise<void> {
    const slot = this.slots.get(name);
    if (!slot) return;
    this.slots.delete(name);
    if (slot.retryTimer) clearTimeout(slot.retryTimer);
    const instance = slot.instance;
    slot.instance = null;
    if (instance) {
      await instance.stop().catch((err: unknown) => this.log.warn({ err, interface: name }, "stop failed"));
      this.log.info({ interface: name }, "stopped serving interface");
    }
    await this.options
      .portReleased?.(name)
      .catch((err: unknown) => this.log.warn({ err, interface: name }, "catch-all port not released"));
  }
}
