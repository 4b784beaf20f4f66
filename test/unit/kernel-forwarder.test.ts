// KernelForwarder against a fake FastPathProgram (maps kept in memory, counters set by the test) and a
// fake route lookup: which entries it installs for a path, when it installs none, how it orders
// concurrent updates, and how the kernel's counters reach the peer.
import type { Socket } from "node:dgram";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  type EntryCounters,
  type FastPathProgram,
  filterPreference,
  type InboundEntry,
  type OutboundEntry,
} from "../../ebpf/loader.js";
import { KernelForwarder, type KernelRoute } from "../../src/proxy/kernel-forwarder.js";
import type { PathKind, PeerPath, UdpRoute } from "../../src/proxy/path.js";
import { ProxyPeer } from "../../src/proxy/proxy-peer.js";

const WG_INTERFACE = "wg0";
const WG_PORT = 51820;
const LOOPBACK = { address: "127.12.34.56", port: 51822 };
const UPLINK: KernelRoute = { dev: "eth0", ifindex: 7, source: "192.0.2.10" };

interface Counted {
  packets: bigint;
  bytes: bigint;
}

const outKey = (address: string, port: number): string => `${address}:${port}`;
const inKey = (local: string, localPort: number, remote: string, remotePort: number): string =>
  `${local}:${localPort}<${remote}:${remotePort}`;

/** The maps of the program in memory; every call is logged so churn is visible. */
class FakeProgram {
  readonly outbound = new Map<string, OutboundEntry & Counted>();
  readonly inbound = new Map<string, InboundEntry & Counted>();
  readonly calls: string[] = [];
  readonly attached: Array<[string, number]> = [];
  attachError: Error | null = null;

  async attach(dev: string, ifindex: number): Promise<void> {
    if (this.attachError) throw this.attachError;
    this.attached.push([dev, ifindex]);
  }

  setOutbound(e: OutboundEntry): void {
    const key = outKey(e.loopbackAddress, e.loopbackPort);
    this.calls.push(`setOutbound ${key}`);
    this.outbound.set(key, {
      loopbackAddress: e.loopbackAddress,
      loopbackPort: e.loopbackPort,
      localAddress: e.localAddress,
      localPort: e.localPort,
      remoteAddress: e.remoteAddress,
      remotePort: e.remotePort,
      wireguardPort: e.wireguardPort,
      ifindex: e.ifindex,
      toLoopback: e.toLoopback,
      packets: 0n,
      bytes: 0n,
    });
  }

  deleteOutbound(loopbackAddress: string, loopbackPort: number): void {
    const key = outKey(loopbackAddress, loopbackPort);
    this.calls.push(`deleteOutbound ${key}`);
    this.outbound.delete(key);
  }

  outboundCounters(loopbackAddress: string, loopbackPort: number): EntryCounters | null {
    const e = this.outbound.get(outKey(loopbackAddress, loopbackPort));
    return e ? { packets: e.packets, bytes: e.bytes } : null;
  }

  setInbound(e: InboundEntry): void {
    const key = inKey(e.localAddress, e.localPort, e.remoteAddress, e.remotePort);
    this.calls.push(`setInbound ${key}`);
    this.inbound.set(key, {
      localAddress: e.localAddress,
      localPort: e.localPort,
      remoteAddress: e.remoteAddress,
      remotePort: e.remotePort,
      loopbackAddress: e.loopbackAddress,
      loopbackPort: e.loopbackPort,
      wireguardPort: e.wireguardPort,
      loopbackIfindex: e.loopbackIfindex,
      packets: 0n,
      bytes: 0n,
    });
  }

  deleteInbound(localAddress: string, localPort: number, remoteAddress: string, remotePort: number): void {
    const key = inKey(localAddress, localPort, remoteAddress, remotePort);
    this.calls.push(`deleteInbound ${key}`);
    this.inbound.delete(key);
  }

  inboundCounters(
    localAddress: string,
    localPort: number,
    remoteAddress: string,
    remotePort: number,
  ): EntryCounters | null {
    const e = this.inbound.get(inKey(localAddress, localPort, remoteAddress, remotePort));
    return e ? { packets: e.packets, bytes: e.bytes } : null;
  }

  /** The only outbound entry (fails the test when there is not exactly one). */
  theOutbound(): OutboundEntry & Counted {
    expect(this.outbound.size).toBe(1);
    const [entry] = this.outbound.values();
    if (!entry) throw new Error("no outbound entry");
    return entry;
  }

  theInbound(): InboundEntry & Counted {
    expect(this.inbound.size).toBe(1);
    const [entry] = this.inbound.values();
    if (!entry) throw new Error("no inbound entry");
    return entry;
  }
}

/** A path whose UDP route the test sets; records what the forwarder tells it about kernel traffic. */
class FakePath implements PeerPath {
  readonly kind: PathKind = "direct";
  readonly remote = "test";
  onDatagram: ((datagram: Buffer) => void) | null = null;
  onRouteChange: (() => void) | null = null;
  readonly told: Array<[number, number]> = [];

  constructor(public route: UdpRoute | null) {}

  send(): void {}
  close(): void {}
  udpRoute(): UdpRoute | null {
    return this.route ? { ...this.route } : null;
  }
  kernelTraffic(sent: number, received: number): void {
    this.told.push([sent, received]);
  }
}

function makePeer(route: UdpRoute | null, loopback = LOOPBACK): { peer: ProxyPeer; path: FakePath } {
  const socket = {} as unknown as Socket; // never used by the forwarder
  const peer = new ProxyPeer("peer-key", new Uint8Array(32).fill(1), loopback, socket);
  const path = new FakePath(route);
  peer.path = path;
  return { peer, path };
}

/** A resolveRoute whose answers the test releases one by one, in any order. */
function deferredRoutes(): {
  resolveRoute: (remote: string) => Promise<KernelRoute | null>;
  pending: Array<{ remote: string; answer: (r: KernelRoute | null) => void }>;
} {
  const pending: Array<{ remote: string; answer: (r: KernelRoute | null) => void }> = [];
  return {
    pending,
    resolveRoute: (remote) =>
      new Promise((resolve) => {
        pending.push({ remote, answer: resolve });
      }),
  };
}

/** Lets every pending promise chain run (fake timers fake only the interval and the clock here). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

const ROUTE: UdpRoute = {
  localAddress: null,
  localPort: 40000,
  remoteAddress: "198.51.100.7",
  remotePort: 51820,
};

describe("KernelForwarder", () => {
  let program: FakeProgram;
  let forwarder: KernelForwarder | null;
  let routeLookups: string[];

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
    vi.setSystemTime(new Date("2030-01-01T00:00:00Z"));
    program = new FakeProgram();
    forwarder = null;
    routeLookups = [];
  });

  afterEach(() => {
    forwarder?.close();
    vi.useRealTimers();
  });

  function makeForwarder(
    resolveRoute: (remote: string) => Promise<KernelRoute | null> = async (remote) => {
      routeLookups.push(remote);
      return UPLINK;
    },
    wireguardPort = WG_PORT,
  ): KernelForwarder {
    const f = new KernelForwarder(program as unknown as FastPathProgram, {
      wireguardInterface: WG_INTERFACE,
      logger: pino({ level: "silent" }),
      resolveRoute,
    });
    forwarder = f;
    if (wireguardPort !== 0) f.setWireGuardPort(wireguardPort, []);
    return f;
  }

  describe("installing entries", () => {
    it("a wildcard-bound path gets entries from the route's source address, out of the route's interface", async () => {
      const f = makeForwarder();
      const { peer } = makePeer(ROUTE);
      await f.update(peer);
      expect(routeLookups).toEqual(["198.51.100.7"]);
      expect(program.attached).toEqual([["eth0", 7]]);
      expect(program.theOutbound()).toEqual({
        loopbackAddress: LOOPBACK.address,
        loopbackPort: LOOPBACK.port,
        localAddress: "192.0.2.10",
        localPort: 40000,
        remoteAddress: "198.51.100.7",
        remotePort: 51820,
        wireguardPort: WG_PORT,
        ifindex: 7,
        toLoopback: false,
        packets: 0n,
        bytes: 0n,
      });
      expect(program.theInbound()).toEqual({
        localAddress: "192.0.2.10",
        localPort: 40000,
        remoteAddress: "198.51.100.7",
        remotePort: 51820,
        loopbackAddress: LOOPBACK.address,
        loopbackPort: LOOPBACK.port,
        wireguardPort: WG_PORT,
        loopbackIfindex: 1,
        packets: 0n,
        bytes: 0n,
      });
      expect(f.carries(peer)).toBe(true);
    });

    it("a path bound to 0.0.0.0 also takes the route's source address", async () => {
      const f = makeForwarder();
      const { peer } = makePeer({ ...ROUTE, localAddress: "0.0.0.0" });
      await f.update(peer);
      expect(program.theOutbound().localAddress).toBe("192.0.2.10");
      expect(program.inbound.has(inKey("192.0.2.10", 40000, "198.51.100.7", 51820))).toBe(true);
    });

    it("a path bound to a specific address keeps that address", async () => {
      const f = makeForwarder();
      const { peer } = makePeer({ ...ROUTE, localAddress: "203.0.113.5" });
      await f.update(peer);
      expect(program.theOutbound().localAddress).toBe("203.0.113.5");
      expect(program.theInbound()).toMatchObject({ localAddress: "203.0.113.5", localPort: 40000 });
    });

    it("a remote on this host (route via lo) is sent into lo, and inbound goes to lo's ifindex", async () => {
      const f = makeForwarder(async () => ({ dev: "lo", ifindex: 1, source: "127.0.0.1" }));
      const { peer } = makePeer({ ...ROUTE, remoteAddress: "127.0.0.1", remotePort: 41000 });
      await f.update(peer);
      expect(program.theOutbound()).toMatchObject({
        localAddress: "127.0.0.1",
        remoteAddress: "127.0.0.1",
        remotePort: 41000,
        ifindex: 1,
        toLoopback: true,
      });
      expect(program.theInbound()).toMatchObject({ loopbackIfindex: 1, wireguardPort: WG_PORT });
      expect(program.attached).toEqual([["lo", 1]]);
    });

    it("a peer with its own loopback port gets its own outbound key", async () => {
      const f = makeForwarder();
      const a = makePeer(ROUTE);
      const b = makePeer({ ...ROUTE, localPort: 40001 }, { address: LOOPBACK.address, port: 51823 });
      await f.update(a.peer);
      await f.update(b.peer);
      expect([...program.outbound.keys()].sort()).toEqual([
        outKey(LOOPBACK.address, 51822),
        outKey(LOOPBACK.address, 51823),
      ]);
      expect(program.inbound.size).toBe(2);
    });
  });

  describe("installing nothing", () => {
    const cases: Array<[string, UdpRoute | null, KernelRoute | null, number]> = [
      ["the path has no UDP route (relayed)", null, UPLINK, WG_PORT],
      ["the remote is IPv6", { ...ROUTE, remoteAddress: "2001:db8::7" }, UPLINK, WG_PORT],
      ["the kernel has no route", ROUTE, null, WG_PORT],
      ["the route goes into the WireGuard interface", ROUTE, { ...UPLINK, dev: WG_INTERFACE }, WG_PORT],
      ["WireGuard's port is unknown", ROUTE, UPLINK, 0],
    ];
    for (const [why, route, kernelRoute, port] of cases) {
      it(`when ${why}`, async () => {
        const f = makeForwarder(async () => kernelRoute, port);
        const { peer } = makePeer(route);
        await f.update(peer);
        expect(program.outbound.size).toBe(0);
        expect(program.inbound.size).toBe(0);
        expect(f.carries(peer)).toBe(false);
      });
    }

    it("never attaches to the WireGuard interface", async () => {
      const f = makeForwarder(async () => ({ ...UPLINK, dev: WG_INTERFACE }));
      await f.update(makePeer(ROUTE).peer);
      expect(program.attached).toEqual([]);
    });

    it("when the peer has no path", async () => {
      const f = makeForwarder();
      const { peer } = makePeer(ROUTE);
      peer.path = null;
      await f.update(peer);
      expect(program.calls.filter((c) => c.startsWith("set"))).toEqual([]);
    });

    it("removes installed entries when the path stops being plain UDP (e.g. switched to a relay)", async () => {
      const f = makeForwarder();
      const { peer, path } = makePeer(ROUTE);
      await f.update(peer);
      expect(f.carries(peer)).toBe(true);
      path.route = null;
      await f.update(peer);
      expect(program.outbound.size).toBe(0);
      expect(program.inbound.size).toBe(0);
      expect(f.carries(peer)).toBe(false);
    });

    it("when the route lookup throws: no entries, no throw, and installed entries go", async () => {
      let fail = false;
      const f = makeForwarder(async () => {
        if (fail) throw new Error("ip route get failed");
        return UPLINK;
      });
      const { peer, path } = makePeer(ROUTE);
      fail = true;
      await expect(f.update(peer)).resolves.toBeUndefined();
      expect(program.outbound.size + program.inbound.size).toBe(0);
      fail = false;
      await f.update(peer);
      expect(f.carries(peer)).toBe(true);
      fail = true;
      path.route = { ...ROUTE, remotePort: 9999 };
      await expect(f.update(peer)).resolves.toBeUndefined();
      expect(program.outbound.size + program.inbound.size).toBe(0);
      expect(f.carries(peer)).toBe(false);
    });

    it("when attaching to the route's interface fails: no entries, no throw", async () => {
      const f = makeForwarder();
      program.attachError = new Error("tc failed");
      const { peer } = makePeer(ROUTE);
      await expect(f.update(peer)).resolves.toBeUndefined();
      expect(program.outbound.size + program.inbound.size).toBe(0);
    });
  });

  describe("concurrent and repeated updates", () => {
    it("a newer update wins over an older one whose route lookup answers later", async () => {
      const d = deferredRoutes();
      const f = makeForwarder(d.resolveRoute);
      const { peer, path } = makePeer({ ...ROUTE, remoteAddress: "198.51.100.1" });
      const older = f.update(peer);
      path.route = { ...ROUTE, remoteAddress: "198.51.100.2" };
      const newer = f.update(peer);
      expect(d.pending.map((p) => p.remote)).toEqual(["198.51.100.1", "198.51.100.2"]);
      d.pending[1]?.answer({ dev: "eth1", ifindex: 8, source: "192.0.2.20" });
      await newer;
      d.pending[0]?.answer({ dev: "eth0", ifindex: 7, source: "192.0.2.10" });
      await older;
      expect(program.theOutbound()).toMatchObject({
        remoteAddress: "198.51.100.2",
        localAddress: "192.0.2.20",
        ifindex: 8,
      });
      expect([...program.inbound.keys()]).toEqual([inKey("192.0.2.20", 40000, "198.51.100.2", 51820)]);
    });

    it("an older update answering first installs nothing; the newer one installs its route", async () => {
      const d = deferredRoutes();
      const f = makeForwarder(d.resolveRoute);
      const { peer, path } = makePeer({ ...ROUTE, remoteAddress: "198.51.100.1" });
      const older = f.update(peer);
      path.route = { ...ROUTE, remoteAddress: "198.51.100.2" };
      const newer = f.update(peer);
      d.pending[0]?.answer(UPLINK);
      await older;
      expect(program.calls).toEqual([]);
      d.pending[1]?.answer(UPLINK);
      await newer;
      expect(program.theOutbound().remoteAddress).toBe("198.51.100.2");
    });

    it("a newer update that removes the route wins over an older one still resolving", async () => {
      const d = deferredRoutes();
      const f = makeForwarder(d.resolveRoute);
      const { peer, path } = makePeer(ROUTE);
      const older = f.update(peer);
      path.route = null;
      await f.update(peer);
      d.pending[0]?.answer(UPLINK);
      await older;
      expect(program.outbound.size + program.inbound.size).toBe(0);
      expect(f.carries(peer)).toBe(false);
    });

    it("remove() during a pending update: the update installs nothing afterwards", async () => {
      const d = deferredRoutes();
      const f = makeForwarder(d.resolveRoute);
      const { peer } = makePeer(ROUTE);
      const pending = f.update(peer);
      f.remove(peer);
      d.pending[0]?.answer(UPLINK);
      await pending;
      expect(program.outbound.size + program.inbound.size).toBe(0);
      expect(f.carries(peer)).toBe(false);
    });

    it("an unchanged route does not reinstall (no delete and set churn)", async () => {
      const f = makeForwarder();
      const { peer } = makePeer(ROUTE);
      await f.update(peer);
      const installed = [...program.calls];
      expect(installed).toEqual([
        `setOutbound ${outKey(LOOPBACK.address, LOOPBACK.port)}`,
        `setInbound ${inKey("192.0.2.10", 40000, "198.51.100.7", 51820)}`,
      ]);
      await f.update(peer);
      f.refresh([peer]);
      await settle();
      expect(program.calls).toEqual(installed);
      expect(routeLookups).toHaveLength(3);
    });

    it("a changed route deletes the old entries before installing the new ones", async () => {
      const f = makeForwarder();
      const { peer, path } = makePeer(ROUTE);
      await f.update(peer);
      program.calls.length = 0;
      path.route = { ...ROUTE, remotePort: 51999 };
      await f.update(peer);
      const oldIn = inKey("192.0.2.10", 40000, "198.51.100.7", 51820);
      const newIn = inKey("192.0.2.10", 40000, "198.51.100.7", 51999);
      expect(program.calls).toEqual([
        `deleteOutbound ${outKey(LOOPBACK.address, LOOPBACK.port)}`,
        `deleteInbound ${oldIn}`,
        `setOutbound ${outKey(LOOPBACK.address, LOOPBACK.port)}`,
        `setInbound ${newIn}`,
      ]);
      expect([...program.inbound.keys()]).toEqual([newIn]);
      expect(program.theOutbound().remotePort).toBe(51999);
    });

    it("a new source address from the kernel (route change) reinstalls with it", async () => {
      let route = UPLINK;
      const f = makeForwarder(async () => route);
      const { peer } = makePeer(ROUTE);
      await f.update(peer);
      route = { dev: "eth1", ifindex: 9, source: "192.0.2.99" };
      f.refresh([peer]);
      await settle();
      expect(program.theOutbound()).toMatchObject({ localAddress: "192.0.2.99", ifindex: 9 });
      expect([...program.inbound.keys()]).toEqual([inKey("192.0.2.99", 40000, "198.51.100.7", 51820)]);
      expect(program.attached).toEqual([
        ["eth0", 7],
        ["eth1", 9],
      ]);
    });

    it("remove() deletes both entries", async () => {
      const f = makeForwarder();
      const { peer } = makePeer(ROUTE);
      await f.update(peer);
      program.calls.length = 0;
      f.remove(peer);
      expect(program.calls).toEqual([
        `deleteOutbound ${outKey(LOOPBACK.address, LOOPBACK.port)}`,
        `deleteInbound ${inKey("192.0.2.10", 40000, "198.51.100.7", 51820)}`,
      ]);
      expect(program.outbound.size + program.inbound.size).toBe(0);
      expect(f.carries(peer)).toBe(false);
    });

    it("setWireGuardPort re-installs every peer with the new port, and a repeat of the port does nothing", async () => {
      const f = makeForwarder(undefined, 0);
      const { peer } = makePeer(ROUTE);
      await f.update(peer);
      expect(program.outbound.size).toBe(0);
      f.setWireGuardPort(51820, [peer]);
      await settle();
      expect(program.theOutbound().wireguardPort).toBe(51820);
      expect(program.theInbound().wireguardPort).toBe(51820);
      f.setWireGuardPort(51900, [peer]);
      await settle();
      expect(program.theOutbound().wireguardPort).toBe(51900);
      expect(program.theInbound().wireguardPort).toBe(51900);
      const calls = program.calls.length;
      const lookups = routeLookups.length;
      f.setWireGuardPort(51900, [peer]);
      await settle();
      expect(program.calls.length).toBe(calls);
      expect(routeLookups.length).toBe(lookups);
    });

    it("close() removes every peer's entries", async () => {
      const f = makeForwarder();
      const a = makePeer(ROUTE);
      const b = makePeer({ ...ROUTE, localPort: 40001 }, { address: "127.1.2.3", port: 51822 });
      await f.update(a.peer);
      await f.update(b.peer);
      expect(program.outbound.size).toBe(2);
      f.close();
      expect(program.outbound.size + program.inbound.size).toBe(0);
    });
  });

  describe("counters", () => {
    async function installed(): Promise<{
      f: KernelForwarder;
      peer: ProxyPeer;
      path: FakePath;
      out: OutboundEntry & Counted;
      inb: InboundEntry & Counted;
    }> {
      const f = makeForwarder();
      const { peer, path } = makePeer(ROUTE);
      await f.update(peer);
      return { f, peer, path, out: program.theOutbound(), inb: program.theInbound() };
    }

    it("folds the kernel's counts into traffic and kernelTraffic each second, as deltas", async () => {
      const { peer, path, out, inb } = await installed();
      peer.traffic.txDatagrams = 5; // what user space carried before
      peer.traffic.txBytes = 500;
      out.packets = 10n;
      out.bytes = 1000n;
      inb.packets = 4n;
      inb.bytes = 320n;
      vi.advanceTimersByTime(1000);
      const firstPoll = Date.now();
      expect(peer.traffic).toEqual({ txDatagrams: 15, txBytes: 1500, rxDatagrams: 4, rxBytes: 320 });
      expect(peer.kernelTraffic).toEqual({ txDatagrams: 10, txBytes: 1000, rxDatagrams: 4, rxBytes: 320 });
      expect(peer.lastSentAt).toBe(firstPoll);
      expect(peer.lastReceivedAt).toBe(firstPoll);
      expect(path.told).toEqual([
        [10, 0],
        [0, 4],
      ]);

      // Only outbound moves: only the deltas are added, and only lastSentAt moves.
      out.packets = 13n;
      out.bytes = 1300n;
      vi.advanceTimersByTime(1000);
      expect(peer.traffic).toEqual({ txDatagrams: 18, txBytes: 1800, rxDatagrams: 4, rxBytes: 320 });
      expect(peer.kernelTraffic).toEqual({ txDatagrams: 13, txBytes: 1300, rxDatagrams: 4, rxBytes: 320 });
      expect(peer.lastSentAt).toBe(firstPoll + 1000);
      expect(peer.lastReceivedAt).toBe(firstPoll);
      expect(path.told.at(-1)).toEqual([3, 0]);

      // Nothing moves: nothing changes, the path is told nothing.
      const told = path.told.length;
      vi.advanceTimersByTime(1000);
      expect(peer.kernelTraffic).toEqual({ txDatagrams: 13, txBytes: 1300, rxDatagrams: 4, rxBytes: 320 });
      expect(peer.lastSentAt).toBe(firstPoll + 1000);
      expect(path.told.length).toBe(told);

      // Only inbound moves.
      inb.packets = 6n;
      inb.bytes = 480n;
      vi.advanceTimersByTime(1000);
      expect(peer.kernelTraffic).toEqual({ txDatagrams: 13, txBytes: 1300, rxDatagrams: 6, rxBytes: 480 });
      expect(peer.lastReceivedAt).toBe(firstPoll + 3000);
      expect(peer.lastSentAt).toBe(firstPoll + 1000);
      expect(path.told.at(-1)).toEqual([0, 2]);
    });

    it("nothing is folded before the first poll", async () => {
      const { peer, path, out } = await installed();
      out.packets = 3n;
      out.bytes = 300n;
      vi.advanceTimersByTime(999);
      expect(peer.kernelTraffic.txDatagrams).toBe(0);
      expect(peer.lastSentAt).toBe(0);
      expect(path.told).toEqual([]);
    });

    it("counts made since the last poll are folded in when the entries are removed", async () => {
      const { f, peer, path, out, inb } = await installed();
      out.packets = 2n;
      out.bytes = 200n;
      vi.advanceTimersByTime(1000);
      out.packets = 7n;
      out.bytes = 700n;
      inb.packets = 3n;
      inb.bytes = 90n;
      vi.advanceTimersByTime(500);
      f.remove(peer);
      expect(peer.kernelTraffic).toEqual({ txDatagrams: 7, txBytes: 700, rxDatagrams: 3, rxBytes: 90 });
      expect(peer.traffic).toEqual({ txDatagrams: 7, txBytes: 700, rxDatagrams: 3, rxBytes: 90 });
      expect(peer.lastSentAt).toBe(Date.now());
      expect(peer.lastReceivedAt).toBe(Date.now());
      expect(path.told).toEqual([
        [2, 0],
        [5, 0],
        [0, 3],
      ]);
      // Gone for good: later polls add nothing.
      vi.advanceTimersByTime(5000);
      expect(peer.kernelTraffic.txDatagrams).toBe(7);
    });

    it("counts of the old entries are folded in at a route change, and the new entries count from zero", async () => {
      const { f, peer, path, out } = await installed();
      out.packets = 4n;
      out.bytes = 400n;
      path.route = { ...ROUTE, remotePort: 51999 };
      await f.update(peer);
      expect(peer.kernelTraffic.txDatagrams).toBe(4);
      const fresh = program.theOutbound();
      expect(fresh.remotePort).toBe(51999);
      fresh.packets = 1n;
      fresh.bytes = 100n;
      vi.advanceTimersByTime(1000);
      expect(peer.kernelTraffic).toMatchObject({ txDatagrams: 5, txBytes: 500 });
    });

    it("close() stops polling", async () => {
      const { f, peer, out } = await installed();
      f.close();
      out.packets = 9n;
      out.bytes = 900n;
      vi.advanceTimersByTime(3000);
      expect(peer.kernelTraffic.txDatagrams).toBe(0);
    });

    it("a counter read that throws is skipped, and the next poll catches up", async () => {
      const { peer, out } = await installed();
      const read = program.outboundCounters.bind(program);
      let broken = true;
      program.outboundCounters = (address, port) => {
        if (broken) throw new Error("map read failed");
        return read(address, port);
      };
      out.packets = 2n;
      out.bytes = 64n;
      vi.advanceTimersByTime(1000);
      expect(peer.kernelTraffic.txDatagrams).toBe(0);
      broken = false;
      vi.advanceTimersByTime(1000);
      expect(peer.kernelTraffic).toMatchObject({ txDatagrams: 2, txBytes: 64 });
    });
  });
});

describe("filterPreference", () => {
  it("is stable and within 49152..53247", () => {
    const names = ["wg0", "wg1", "wg-office", "tbt-a1b2c3", "x", "", "a-very-long-interface-name"];
    for (const name of names) {
      const pref = filterPreference(name);
      expect(Number.isInteger(pref)).toBe(true);
      expect(pref).toBeGreaterThanOrEqual(49152);
      expect(pref).toBeLessThanOrEqual(53247);
      expect(filterPreference(name)).toBe(pref);
    }
  });

  it("differs between interfaces in practice", () => {
    expect(filterPreference("wg0")).not.toBe(filterPreference("wg1"));
    const names = Array.from({ length: 50 }, (_, i) => `wg${i}`);
    const prefs = new Set(names.map(filterPreference));
    // 50 names in 4096 slots: a few collisions at most, never all in one.
    expect(prefs.size).toBeGreaterThanOrEqual(45);
  });
});
