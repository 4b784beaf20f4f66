// `run` without --interface: the interface set's differences, the grace before an interface counts as
// removed, the catch-all port each interface gets (and keeps), and the same peer on two interfaces.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  assignCatchAllPort,
  CATCH_ALL_PORT_RANGE,
  CatchAllPortStore,
  parseAssignments,
} from "../../src/all-interfaces/catch-all-ports.js";
import type { Logger } from "../../src/log.js";
import { createLogger } from "../../src/log.js";
import { WireGuardProxy } from "../../src/proxy/wireguard-proxy.js";
import { diffInterfaceSet, InterfaceSetTracker } from "../../src/wg/interface-set.js";

describe("diffInterfaceSet", () => {
  it("names what came and what went, sorted", () => {
    expect(diffInterfaceSet(["wg0", "wg1"], ["wg2", "wg0", "home"])).toEqual({
      added: ["home", "wg2"],
      removed: ["wg1"],
    });
  });

  it("sees no change in the same set in another order, nor in two empty sets", () => {
    expect(diffInterfaceSet(["b", "a"], ["a", "b"])).toEqual({ added: [], removed: [] });
    expect(diffInterfaceSet([], [])).toEqual({ added: [], removed: [] });
  });
});

describe("InterfaceSetTracker", () => {
  it("starts every interface seen once, and removes one only after it was missing for the grace", () => {
    const tracker = new InterfaceSetTracker(5000);
    expect(tracker.update(["wg1", "wg0"], 0)).toEqual({ added: ["wg0", "wg1"], removed: [] });
    expect(tracker.update(["wg0", "wg1"], 1000)).toEqual({ added: [], removed: [] });
    // wg1 missing: still served (a WireGuard restart recreates it at once) ...
    expect(tracker.update(["wg0"], 2000)).toEqual({ added: [], removed: [] });
    expect(tracker.update(["wg0"], 6999)).toEqual({ added: [], removed: [] });
    expect(tracker.known).toEqual(["wg0", "wg1"]);
    // ... until the grace has passed.
    expect(tracker.update(["wg0"], 7000)).toEqual({ added: [], removed: ["wg1"] });
    expect(tracker.known).toEqual(["wg0"]);
    // Back later: a new interface.
    expect(tracker.update(["wg0", "wg1"], 8000)).toEqual({ added: ["wg1"], removed: [] });
  });

  it("forgets a short absence: back within the grace, the clock starts again at the next absence", () => {
    const tracker = new InterfaceSetTracker(5000);
    tracker.update(["wg0"], 0);
    tracker.update([], 1000);
    expect(tracker.update(["wg0"], 4000)).toEqual({ added: [], removed: [] });
    expect(tracker.update([], 7000)).toEqual({ added: [], removed: [] });
    expect(tracker.update([], 11_999)).toEqual({ added: [], removed: [] });
    expect(tracker.update([], 12_000)).toEqual({ added: [], removed: ["wg0"] });
  });

  it("with no grace, removes at the first look without the interface", () => {
    const tracker = new InterfaceSetTracker(0);
    tracker.update(["a", "b"], 0);
    expect(tracker.update(["a"], 1)).toEqual({ added: [], removed: ["b"] });
  });
});

describe("assignCatchAllPort", () => {
  const free = async () => false;

  it("keeps an interface's port, and gives a new one the lowest port no interface has", async () => {
    const assigned = new Map([
      ["wg0", 51821],
      ["wg2", 51823],
    ]);
    expect(await assignCatchAllPort("wg0", assigned, 51821, free)).toBe(51821);
    expect(await assignCatchAllPort("wg1", assigned, 51821, free)).toBe(51822);
    expect(await assignCatchAllPort("wg9", new Map(), 51821, free)).toBe(51821);
  });

  it("skips ports some socket holds (WireGuard's own, say)", async () => {
    const busy = async (port: number) => port === 51821 || port === 51822;
    expect(await assignCatchAllPort("wg0", new Map(), 51821, busy)).toBe(51823);
  });

  it("keeps an assigned port even while it is busy (WireGuard configurations may name it)", async () => {
    const busy = async () => true;
    expect(await assignCatchAllPort("wg0", new Map([["wg0", 51900]]), 51821, busy)).toBe(51900);
  });

  it("gives up when the range is exhausted, and never goes past 65535", async () => {
    const taken = new Map(
      Array.from({ length: CATCH_ALL_PORT_RANGE }, (_, i) => [`wg${i}`, 51821 + i] as const),
    );
    expect(await assignCatchAllPort("new", taken, 51821, free)).toBeNull();
    expect(await assignCatchAllPort("new", new Map([["a", 65535]]), 65535, free)).toBeNull();
  });
});

describe("CatchAllPortStore", () => {
  let root: string;
  let stateDir: string;

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), "tbt-catch-all-"));
    stateDir = join(root, "state");
  });

  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
  });

  it("assigns in the order asked, saves, and a new store (a restart) gives every interface its port again", async () => {
    const first = new CatchAllPortStore(stateDir, 51821, async () => false);
    // Asked at once: never the same port twice.
    const [a, b] = await Promise.all([first.portFor("wg1"), first.portFor("wg0")]);
    expect([a, b]).toEqual([51821, 51822]);
    expect(JSON.parse(readFileSync(join(stateDir, "catch-all-ports.json"), "utf8"))).toEqual({
      ports: { wg0: 51822, wg1: 51821 },
      seen: { wg0: expect.any(Number), wg1: expect.any(Number) },
    });
    // After a restart, with other interfaces first and 51821 busy: the same ports.
    const again = new CatchAllPortStore(stateDir, 51821, async (port) => port === 51821);
    expect(await again.portFor("wg3")).toBe(51823);
    expect(await again.portFor("wg0")).toBe(51822);
    expect(await again.portFor("wg1")).toBe(51821);
  });

  it("once the range is used up, a new interface takes the port of the one gone longest, never a served one's", async () => {
    mkdirSync(stateDir, { mode: 0o700 });
    // Every port of the range assigned, to interfaces seen at different times (wg7 longest ago).
    const ports = Object.fromEntries(
      Array.from({ length: CATCH_ALL_PORT_RANGE }, (_, i) => [`wg${i}`, 51821 + i]),
    );
    const seen = Object.fromEntries(Object.keys(ports).map((name, i) => [name, i === 7 ? 1_000 : 5_000 + i]));
    writeFileSync(join(stateDir, "catch-all-ports.json"), JSON.stringify({ ports, seen }));
    let clock = 1_000_000;
    const warned: unknown[] = [];
    const log = { warn: (fields: unknown) => warned.push(fields) } as unknown as Logger;
    const store = new CatchAllPortStore(
      stateDir,
      51821,
      async () => false,
      log,
      () => clock,
    );
    expect(await store.portFor("wg3")).toBe(51824); // served now: its own port
    expect(await store.portFor("tbnew")).toBe(51828); // wg7's
    expect(warned).toEqual([
      expect.objectContaining({ interface: "tbnew", from: "wg7", catchAllPort: 51828 }),
    ]);
    const file = JSON.parse(readFileSync(join(stateDir, "catch-all-ports.json"), "utf8"));
    expect(file.ports.wg7).toBeUndefined();
    expect(file.seen.wg7).toBeUndefined();
    expect(file.ports.tbnew).toBe(51828);
    // wg0 (seen at 5,000) is the longest gone now, not wg3 (served) nor tbnew (served).
    expect(await store.portFor("tbnext")).toBe(51821);
    // Once wg3 is gone it is seen now, so older absent ones go first; its port is still its own.
    clock += 1000;
    await store.released("wg3");
    expect(await store.portFor("tbthird")).toBe(51822); // wg1's (seen at 5,001)
    expect(await store.portFor("wg3")).toBe(51824);
  });

  it("does not reclaim a port another socket holds: the next oldest absent interface's instead", async () => {
    mkdirSync(stateDir, { mode: 0o700 });
    const ports = { wg0: 65534, wg1: 65535 };
    writeFileSync(
      join(stateDir, "catch-all-ports.json"),
      JSON.stringify({ ports, seen: { wg0: 1, wg1: 2 } }),
    );
    const store = new CatchAllPortStore(stateDir, 65534, async (port) => port === 65534);
    expect(await store.portFor("wg2")).toBe(65535); // wg0's is older, but held
    await expect(store.portFor("wg3")).rejects.toMatchObject({ code: "catch-all-exhausted" });
  });

  it("refuses a new interface when every port belongs to an interface being served", async () => {
    const store = new CatchAllPortStore(stateDir, 65535 - 1, async () => false);
    expect(await store.portFor("wg0")).toBe(65534);
    expect(await store.portFor("wg1")).toBe(65535);
    await expect(store.portFor("wg2")).rejects.toMatchObject({ code: "catch-all-exhausted" });
    await store.released("wg0");
    expect(await store.portFor("wg2")).toBe(65534);
  });

  it("refuses an unreadable file with an error naming it, and keeps only valid entries of a valid one", async () => {
    mkdirSync(stateDir, { mode: 0o700 });
    writeFileSync(join(stateDir, "catch-all-ports.json"), "{not json");
    const store = new CatchAllPortStore(stateDir, 51821, async () => false);
    await expect(store.portFor("wg0")).rejects.toMatchObject({
      code: "state-unreadable",
      message: expect.stringContaining("catch-all-ports.json"),
    });
    const invalid = () => new Error("invalid");
    const parsed = parseAssignments(
      JSON.stringify({ ports: { wg0: 51821, "../x": 1, wg1: 70000, wg2: "1", wg3: 51821, wg4: 51830 } }),
      invalid,
    );
    expect([...parsed]).toEqual([
      ["wg0", 51821],
      ["wg4", 51830],
    ]);
    expect(() => parseAssignments("[]", invalid)).toThrow("invalid");
  });
});

describe("the same peer on two interfaces", () => {
  const silent = createLogger("test", "silent");
  const proxies: WireGuardProxy[] = [];

  afterEach(async () => {
    for (const proxy of proxies.splice(0)) await proxy.close();
  });

  it("gets a loopback address on each: the second interface skips the candidate the first holds", async () => {
    const key = Buffer.alloc(32, 7);
    const publicKey = key.toString("base64");
    const base = 40000 + Math.floor(Math.random() * 20000);
    const loopbacks = [];
    // One interface each, as `run` without --interface has them (both in one process here; with
    // privilege separation, in two workers of the same user: the bind fails the same way).
    for (const wireguardPort of [51820, 51830]) {
      const proxy = new WireGuardProxy({
        wireguardPort,
        catchAll: { address: "127.0.0.1", port: 0 },
        loopbackPortBase: base,
        logger: silent,
      });
      proxies.push(proxy);
      await proxy.start();
      loopbacks.push((await proxy.addPeer(publicKey, key)).loopback);
    }
    const [first, second] = loopbacks;
    expect(first).toEqual({ address: expect.stringMatching(/^127\./), port: base });
    expect(second).not.toEqual(first);
    expect(second?.address).toMatch(/^127\./);
  });
});
