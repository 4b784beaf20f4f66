// InterfaceFleet (`run` without --interface) with fake instances: an instance per interface, started in
// name order, stopped when its interface is gone, retried alone when it fails, all stopped at once.
import { afterEach, describe, expect, it } from "vitest";
import { InterfaceFleet } from "../../src/all-interfaces/interface-fleet.js";
import type { InstanceEnd, InterfaceInstance } from "../../src/all-interfaces/interface-instance.js";
import type { ReleaseAnswer } from "../../src/control/control-socket.js";
import type { StatusReport } from "../../src/control/status.js";
import { createLogger } from "../../src/log.js";
import { waitFor } from "../support/wait-for.js";

/** A fake instance: records what happens to it; `fail()` ends it as a crash would. */
class FakeInstance implements InterfaceInstance {
  stopped = false;
  failed = false;
  reloads = 0;
  private end: (result: InstanceEnd) => void = () => undefined;
  private readonly ended = new Promise<InstanceEnd>((resolve) => {
    this.end = resolve;
  });
  readonly running: Promise<void>;

  constructor(
    readonly name: string,
    readonly port: number,
    startsRunning = true,
  ) {
    this.running = startsRunning ? Promise.resolve() : new Promise(() => undefined);
  }

  serve(): Promise<InstanceEnd> {
    return this.ended;
  }

  fail(): void {
    this.failed = true;
    this.end({ exitCode: 1, error: new Error("worker died") });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.end({ exitCode: 0 });
  }

  async reload(): Promise<void> {
    this.reloads++;
  }

  async status(): Promise<StatusReport> {
    return { interface: this.name, catchAll: `127.0.0.1:${this.port}` } as StatusReport;
  }

  async release(): Promise<ReleaseAnswer> {
    return { restored: 1 };
  }
}

let fleet: InterfaceFleet | null = null;

afterEach(async () => {
  await fleet?.stop();
  fleet = null;
});

function makeFleet(list: () => Promise<string[]>, options: { startsRunning?: boolean } = {}) {
  const created: FakeInstance[] = [];
  const ports = new Map<string, number>();
  const released: string[] = [];
  const made = new InterfaceFleet({
    list,
    pollIntervalMs: 20,
    removalGraceMs: 0,
    portFor: async (name) => {
      if (!ports.has(name)) ports.set(name, 51821 + ports.size);
      return ports.get(name) ?? 0;
    },
    portReleased: async (name) => {
      released.push(name);
    },
    create: (name, port) => {
      const instance = new FakeInstance(name, port, options.startsRunning ?? true);
      created.push(instance);
      return instance;
    },
    logger: createLogger("test", "silent"),
    retry: { initialMs: 30, maxMs: 30 },
    startWaitMs: 50,
  });
  fleet = made;
  return { fleet: made, created, released };
}

const live = (created: FakeInstance[], name: string) =>
  created.filter((i) => i.name === name && !i.stopped && !i.failed);

describe("InterfaceFleet", () => {
  it("starts one instance per interface, in name order, each with its own catch-all port", async () => {
    const { fleet, created } = makeFleet(async () => ["wg1", "wg0"]);
    await fleet.start();
    expect(created.map((i) => [i.name, i.port])).toEqual([
      ["wg0", 51821],
      ["wg1", 51822],
    ]);
    expect((await fleet.statusReports()).map((r) => r.interface)).toEqual(["wg0", "wg1"]);
    expect(fleet.interfaces()).toEqual([
      { name: "wg0", catchAllPort: 51821, serving: true },
      { name: "wg1", catchAllPort: 51822, serving: true },
    ]);
  });

  it("follows interfaces created and removed later", async () => {
    let names = ["wg0"];
    const { fleet, created, released } = makeFleet(async () => names);
    await fleet.start();
    names = ["wg0", "wg5"];
    await waitFor(() => live(created, "wg5").length === 1, { what: "wg5 served" });
    expect(released).toEqual([]);
    names = ["wg5"];
    await waitFor(() => created.find((i) => i.name === "wg0")?.stopped, { what: "wg0 stopped" });
    expect(live(created, "wg5")).toHaveLength(1);
    expect(fleet.interfaces().map((i) => i.name)).toEqual(["wg5"]);
    // Its catch-all port is its own still, but another interface may take it once the range is used up.
    await waitFor(() => released.includes("wg0"), { what: "wg0's port released" });
    expect(released).toEqual(["wg0"]);
  });

  it("retries a failed instance with backoff and leaves the others alone", async () => {
    const { fleet, created } = makeFleet(async () => ["wg0", "wg1"]);
    await fleet.start();
    const [wg0, wg1] = created;
    wg0?.fail();
    await waitFor(() => live(created, "wg0").length === 1 && created.length === 3, { what: "wg0 again" });
    // The same port again; wg1 was never touched.
    expect(created[2]).toMatchObject({ name: "wg0", port: 51821 });
    expect(wg1?.stopped).toBe(false);
    expect(created.filter((i) => i.name === "wg1")).toHaveLength(1);
  });

  it("does not wait forever for an instance that takes long to start", async () => {
    const { fleet, created } = makeFleet(async () => ["a", "b"], { startsRunning: false });
    await fleet.start();
    expect(created.map((i) => i.name)).toEqual(["a", "b"]);
  });

  it("keeps looking when listing fails, and serves what appears afterwards", async () => {
    let fail = true;
    const { fleet, created } = makeFleet(async () => {
      if (fail) throw new Error("wg show interfaces failed");
      return ["wg0"];
    });
    await fleet.start();
    expect(created).toHaveLength(0);
    fail = false;
    await waitFor(() => created.length === 1, { what: "wg0 served after the failure" });
  });

  it("reloads, releases and stops every instance", async () => {
    const { fleet, created } = makeFleet(async () => ["wg0", "wg1"]);
    await fleet.start();
    await fleet.reload();
    expect(created.map((i) => i.reloads)).toEqual([1, 1]);
    expect(await fleet.release()).toEqual({ restored: 2 });
    await fleet.stop();
    expect(created.every((i) => i.stopped)).toBe(true);
    expect(fleet.interfaces()).toEqual([]);
  });
});
