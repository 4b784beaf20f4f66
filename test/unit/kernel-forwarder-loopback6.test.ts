// KernelForwarder with an L6(P) source (useLoopback6), against a fake FastPathProgram and route lookup:
// a plain UDP path over IPv6 gets entries keyed by L6(P) ([::1]:port; WireGuard sends IPv6, nothing is
// translated) plus L(P)'s translating outbound entry; relayed paths, IPv4 paths and a source without an
// L6(P) keep L(P) only. Also: both outbound entries go when the path does, their counts are summed into
// the peer's, and an install waiting for the source gives up when the peer goes.
import { isIP } from "node:net";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { KernelForwarder, KernelRoute } from "../../src/proxy/kernel-forwarder.js";
import type { LoopbackAddress } from "../../src/proxy/loopback-address.js";
import type { ChannelRoute, UdpRoute } from "../../src/proxy/path.js";
import type { ProxyPeer } from "../../src/proxy/proxy-peer.js";
import {
  type FakePath,
  type FakeProgram,
  inKey,
  LOOPBACK,
  type MovedFakeProgram,
  makePeer,
  outKey,
  ROUTE,
  settle,
  UPLINK,
  useKernelForwarder,
  WG_PORT,
} from "../support/kernel-forwarder-fakes.js";

const L6: LoopbackAddress = { address: "::1", port: 20500 };
const L6_KEY = outKey(L6.address, L6.port);
const L_KEY = outKey(LOOPBACK.address, LOOPBACK.port);
const GATEWAY6 = "fe80::1";

const ROUTE6: UdpRoute = { ...ROUTE, remoteAddress: "2001:db8:1::7" };
const UPLINK6: KernelRoute = { dev: "eth0", ifindex: 7, source: "2001:db8::10", nextHop: GATEWAY6 };
const TURN6: ChannelRoute = {
  localAddress: "::",
  localPort: 50000,
  remoteAddress: "2001:db8::3",
  remotePort: 3478,
  channel: 0x4001,
};

type Loopback6Source = (peer: ProxyPeer) => Promise<LoopbackAddress | null>;

/** The uplink for the family of the remote: IPv6 with a gateway next hop, or the IPv4 one. */
const dualStackRoute = async (remote: string): Promise<KernelRoute> =>
  isIP(remote) === 6 ? UPLINK6 : UPLINK;

/** A source the test answers itself, after the forwarder asked. */
function deferredSource(): {
  source: Loopback6Source;
  asked: ProxyPeer[];
  answer: (a: LoopbackAddress | null) => void;
} {
  const asked: ProxyPeer[] = [];
  const answers: Array<(a: LoopbackAddress | null) => void> = [];
  return {
    asked,
    source: (peer) =>
      new Promise((resolve) => {
        asked.push(peer);
        answers.push(resolve);
      }),
    answer: (a) => {
      const next = answers.shift();
      if (!next) throw new Error("the source was not asked");
      next(a);
    },
  };
}

function relayedPeer(channel: ChannelRoute): { peer: ProxyPeer; path: FakePath } {
  const made = makePeer(null);
  made.path.kind = "relay";
  made.path.channel = channel;
  return made;
}

describe("KernelForwarder with L6(P)", () => {
  const harness = useKernelForwarder();
  let program: FakeProgram;

  beforeEach(() => {
    program = harness.program;
  });

  /** A forwarder whose L6(P) source answers `answer` (a spy: what it was asked is visible). */
  function forwarderWith(answer: LoopbackAddress | null): {
    f: KernelForwarder;
    source: ReturnType<typeof vi.fn<Loopback6Source>>;
  } {
    const f = harness.makeForwarder(dualStackRoute);
    const source = vi.fn<Loopback6Source>(async () => answer);
    f.useLoopback6(source);
    return { f, source };
  }

  describe("a plain UDP path over IPv6, the source answering L6(P)", () => {
    it("outbound at L6(P) without a next hop and at L(P), inbound delivering from L6(P)", async () => {
      const { f, source } = forwarderWith(L6);
      const { peer } = makePeer(ROUTE6);
      await f.update(peer);

      expect(source).toHaveBeenCalledTimes(1);
      expect(source).toHaveBeenCalledWith(peer);
      expect(program.outbound.size).toBe(2);
      const flow = {
        localAddress: "2001:db8::10",
        localPort: 40000,
        remoteAddress: "2001:db8:1::7",
        remotePort: 51820,
        wireguardPort: WG_PORT,
        ifindex: 7,
        toLoopback: false,
        packets: 0n,
        bytes: 0n,
      };
      // Native: WireGuard's IPv6 datagrams are only rewritten, the kernel routes them.
      expect(program.outbound.get(L6_KEY)).toEqual({ ...flow, loopbackAddress: "::1", loopbackPort: 20500 });
      // Translating, for what WireGuard still sends to L(P) (its next hop: the test below).
      expect(program.outbound.get(L_KEY)).toMatchObject({
        ...flow,
        loopbackAddress: LOOPBACK.address,
        loopbackPort: LOOPBACK.port,
      });
      expect([...program.inbound.keys()]).toEqual([inKey("2001:db8::10", 40000, "2001:db8:1::7", 51820)]);
      expect(program.theInbound()).toEqual({
        localAddress: "2001:db8::10",
        localPort: 40000,
        remoteAddress: "2001:db8:1::7",
        remotePort: 51820,
        loopbackAddress: "::1",
        loopbackPort: 20500,
        wireguardPort: WG_PORT,
        loopbackIfindex: 1,
        packets: 0n,
        bytes: 0n,
      });
      expect(peer.deliversFrom6).toBe(true);
      expect(f.carries(peer)).toBe(true);
    });

    it("L(P)'s translating outbound entry keeps the route's gateway as its next hop, as before", async () => {
      const { f } = forwarderWith(L6);
      const { peer } = makePeer(ROUTE6);
      await f.update(peer);
      expect(program.outbound.get(L_KEY)?.nextHop).toBe(GATEWAY6);
      expect(program.outbound.get(L6_KEY)).not.toHaveProperty("nextHop");
    });

    it("the same path again changes no entry", async () => {
      const { f } = forwarderWith(L6);
      const { peer } = makePeer(ROUTE6);
      await f.update(peer);
      const calls = program.calls.length;
      await f.update(peer);
      expect(program.calls.length).toBe(calls);
      expect(peer.deliversFrom6).toBe(true);
    });

    it("a path bound to an IPv6 address keeps it in both outbound entries and the inbound one", async () => {
      const { f } = forwarderWith(L6);
      const { peer } = makePeer({ ...ROUTE6, localAddress: "2001:db8::99" });
      await f.update(peer);
      expect(program.outbound.get(L6_KEY)?.localAddress).toBe("2001:db8::99");
      expect(program.outbound.get(L_KEY)?.localAddress).toBe("2001:db8::99");
      expect(program.theInbound().localAddress).toBe("2001:db8::99");
    });
  });

  describe("paths that keep L(P) only", () => {
    it("a relayed IPv6 path: the source is never asked, its entries are L(P)'s", async () => {
      const { f, source } = forwarderWith(L6);
      const { peer } = relayedPeer(TURN6);
      await f.update(peer);
      expect(source).not.toHaveBeenCalled();
      expect([...program.outbound.keys()]).toEqual([L_KEY]);
      expect(program.theOutbound()).toMatchObject({
        localAddress: "2001:db8::10",
        remoteAddress: "2001:db8::3",
        channel: 0x4001,
        nextHop: GATEWAY6,
      });
      expect(program.theInbound()).toMatchObject({
        loopbackAddress: LOOPBACK.address,
        loopbackPort: LOOPBACK.port,
        channel: 0x4001,
      });
      expect(peer.deliversFrom6).toBe(false);
      expect(f.carries(peer)).toBe(true);
    });

    it("an IPv4 path: the source is never asked", async () => {
      const { f, source } = forwarderWith(L6);
      const { peer } = makePeer(ROUTE);
      await f.update(peer);
      expect(source).not.toHaveBeenCalled();
      expect([...program.outbound.keys()]).toEqual([L_KEY]);
      expect(program.theOutbound()).not.toHaveProperty("nextHop");
      expect(program.theInbound()).toMatchObject({
        loopbackAddress: LOOPBACK.address,
        loopbackPort: LOOPBACK.port,
      });
      expect(peer.deliversFrom6).toBe(false);
    });

    it("an IPv6 path whose source answers null: L(P)'s entries, translated, with the next hop", async () => {
      const { f, source } = forwarderWith(null);
      const { peer } = makePeer(ROUTE6);
      await f.update(peer);
      expect(source).toHaveBeenCalledTimes(1);
      expect([...program.outbound.keys()]).toEqual([L_KEY]);
      expect(program.theOutbound()).toMatchObject({ remoteAddress: "2001:db8:1::7", nextHop: GATEWAY6 });
      expect(program.theInbound()).toMatchObject({
        loopbackAddress: LOOPBACK.address,
        loopbackPort: LOOPBACK.port,
      });
      expect(peer.deliversFrom6).toBe(false);
      expect(f.carries(peer)).toBe(true);
    });

    it("an IPv6 path without any source (useLoopback6 never called): L(P) only", async () => {
      const f = harness.makeForwarder(dualStackRoute);
      const { peer } = makePeer(ROUTE6);
      await f.update(peer);
      expect([...program.outbound.keys()]).toEqual([L_KEY]);
      expect(peer.deliversFrom6).toBe(false);
    });
  });

  describe("leaving L6(P)", () => {
    it("a switch to an IPv4 path removes both outbound entries and installs L(P)'s", async () => {
      const { f, source } = forwarderWith(L6);
      const { peer, path } = makePeer(ROUTE6);
      await f.update(peer);
      program.calls.length = 0;
      path.route = ROUTE;
      await f.update(peer);
      expect(source).toHaveBeenCalledTimes(1);
      expect(program.calls).toEqual(
        expect.arrayContaining([`deleteOutbound ${L6_KEY}`, `deleteOutbound ${L_KEY}`]),
      );
      expect([...program.outbound.keys()]).toEqual([L_KEY]);
      expect(program.theOutbound()).toMatchObject({
        remoteAddress: "198.51.100.7",
        localAddress: UPLINK.source,
      });
      expect(program.theOutbound()).not.toHaveProperty("nextHop");
      expect(program.theInbound()).toMatchObject({
        remoteAddress: "198.51.100.7",
        loopbackAddress: LOOPBACK.address,
        loopbackPort: LOOPBACK.port,
      });
      expect(peer.deliversFrom6).toBe(false);
      expect(f.carries(peer)).toBe(true);
    });

    it("a switch to a relayed IPv6 path removes both and installs L(P)'s ChannelData entries", async () => {
      const { f } = forwarderWith(L6);
      const { peer, path } = makePeer(ROUTE6);
      await f.update(peer);
      path.route = null;
      path.kind = "relay";
      path.channel = TURN6;
      await f.update(peer);
      expect(program.calls).toContain(`deleteOutbound ${L6_KEY}`);
      expect([...program.outbound.keys()]).toEqual([L_KEY]);
      expect(program.theOutbound().channel).toBe(0x4001);
      expect(program.theInbound().loopbackAddress).toBe(LOOPBACK.address);
      expect(peer.deliversFrom6).toBe(false);
    });

    it("the path gone (peer.path = null) removes every entry", async () => {
      const { f } = forwarderWith(L6);
      const { peer } = makePeer(ROUTE6);
      await f.update(peer);
      program.calls.length = 0;
      peer.path = null;
      await f.update(peer);
      expect(program.calls).toEqual(
        expect.arrayContaining([
          `deleteOutbound ${L6_KEY}`,
          `deleteOutbound ${L_KEY}`,
          `deleteInbound ${inKey("2001:db8::10", 40000, "2001:db8:1::7", 51820)}`,
        ]),
      );
      expect(program.calls.filter((c) => c.startsWith("set"))).toEqual([]);
      expect(program.outbound.size + program.inbound.size).toBe(0);
      expect(peer.deliversFrom6).toBe(false);
      expect(f.carries(peer)).toBe(false);
    });

    it("the peer removed, or the forwarder closed, removes every entry", async () => {
      const { f } = forwarderWith(L6);
      const a = makePeer(ROUTE6);
      const b = makePeer(
        { ...ROUTE6, remoteAddress: "2001:db8:2::7" },
        { address: "127.9.9.9", port: 51822 },
      );
      f.useLoopback6(async (peer) => (peer === a.peer ? L6 : { address: "::1", port: 20501 }));
      await f.update(a.peer);
      await f.update(b.peer);
      expect(program.outbound.size).toBe(4);
      f.remove(a.peer);
      expect([...program.outbound.keys()].sort()).toEqual([outKey("127.9.9.9", 51822), outKey("::1", 20501)]);
      expect(program.inbound.size).toBe(1);
      expect(a.peer.deliversFrom6).toBe(false);
      f.close();
      expect(program.outbound.size + program.inbound.size).toBe(0);
      expect(b.peer.deliversFrom6).toBe(false);
    });
  });

  describe("counters", () => {
    it("sums both outbound entries' counts into the peer's traffic at each poll, as deltas", async () => {
      const { f } = forwarderWith(L6);
      const { peer, path } = makePeer(ROUTE6);
      await f.update(peer);
      const native = program.outbound.get(L6_KEY)!;
      const translated = program.outbound.get(L_KEY)!;
      const inbound = program.theInbound();
      peer.traffic.txDatagrams = 5; // what user space carried before
      peer.traffic.txBytes = 500;
      native.packets = 10n;
      native.bytes = 1000n;
      translated.packets = 3n;
      translated.bytes = 300n;
      inbound.packets = 4n;
      inbound.bytes = 320n;
      vi.advanceTimersByTime(250);
      expect(peer.traffic).toEqual({ txDatagrams: 18, txBytes: 1800, rxDatagrams: 4, rxBytes: 320 });
      expect(peer.kernelTraffic).toEqual({ txDatagrams: 13, txBytes: 1300, rxDatagrams: 4, rxBytes: 320 });
      expect(path.told).toEqual([
        [13, 0],
        [0, 4],
      ]);

      // Only L(P)'s entry moves: only its delta is added.
      translated.packets = 5n;
      translated.bytes = 500n;
      vi.advanceTimersByTime(250);
      expect(peer.kernelTraffic).toMatchObject({ txDatagrams: 15, txBytes: 1500 });
      expect(path.told.at(-1)).toEqual([2, 0]);

      // Moves since the last poll are folded in when the path leaves IPv6; the new entry counts from 0.
      native.packets = 16n;
      native.bytes = 1600n;
      path.route = ROUTE;
      await f.update(peer);
      expect(peer.kernelTraffic).toMatchObject({ txDatagrams: 21, txBytes: 2100 });
      program.theOutbound().packets = 1n;
      program.theOutbound().bytes = 100n;
      vi.advanceTimersByTime(250);
      expect(peer.kernelTraffic).toMatchObject({ txDatagrams: 22, txBytes: 2200 });
      expect(peer.traffic).toMatchObject({ txDatagrams: 27, txBytes: 2700 });
    });

    it("takes the later of the two entries' latest datagrams for lastSentAt", async () => {
      const { f } = forwarderWith(L6);
      const { peer } = makePeer(ROUTE6);
      await f.update(peer);
      const native = program.outbound.get(L6_KEY)!;
      const translated = program.outbound.get(L_KEY)!;
      native.packets = 1n;
      native.bytes = 100n;
      native.lastNs = process.hrtime.bigint() - 180_000_000n;
      translated.packets = 1n;
      translated.bytes = 100n;
      translated.lastNs = process.hrtime.bigint() - 40_000_000n;
      vi.advanceTimersByTime(250);
      expect(Date.now() - peer.lastSentAt).toBeGreaterThanOrEqual(40);
      expect(Date.now() - peer.lastSentAt).toBeLessThan(90);
    });

    it("counts made before the peer is removed are folded in from both entries", async () => {
      const { f } = forwarderWith(L6);
      const { peer } = makePeer(ROUTE6);
      await f.update(peer);
      program.outbound.get(L6_KEY)!.packets = 2n;
      program.outbound.get(L_KEY)!.packets = 7n;
      f.remove(peer);
      expect(peer.kernelTraffic.txDatagrams).toBe(9);
      vi.advanceTimersByTime(5000);
      expect(peer.kernelTraffic.txDatagrams).toBe(9);
    });
  });

  describe("while the source has not answered", () => {
    it("a peer removed meanwhile gets no entries", async () => {
      const f = harness.makeForwarder(dualStackRoute);
      const pending = deferredSource();
      f.useLoopback6(pending.source);
      const { peer } = makePeer(ROUTE6);
      const installing = f.update(peer);
      await settle();
      expect(pending.asked).toEqual([peer]);
      f.remove(peer);
      pending.answer(L6);
      await installing;
      expect(program.calls.filter((c) => c.startsWith("set"))).toEqual([]);
      expect(program.outbound.size + program.inbound.size).toBe(0);
      expect(peer.deliversFrom6).toBe(false);
      expect(f.carries(peer)).toBe(false);
    });

    for (const [what, removedFirst] of [
      ["a newer path installed meanwhile is not overwritten by the late answer", false],
      ["a peer removed and updated again meanwhile keeps the entries of the new update", true],
    ] as const) {
      it(what, async () => {
        const f = harness.makeForwarder(dualStackRoute);
        const pending = deferredSource();
        f.useLoopback6(pending.source);
        const { peer, path } = makePeer(ROUTE6);
        const installing = f.update(peer);
        await settle();
        if (removedFirst) f.remove(peer);
        path.route = ROUTE;
        await f.update(peer);
        pending.answer(L6);
        await installing;
        expect([...program.outbound.keys()]).toEqual([L_KEY]);
        expect(program.theOutbound().remoteAddress).toBe("198.51.100.7");
        expect(peer.deliversFrom6).toBe(false);
      });
    }
  });
});

describe("KernelForwarder with L6(P), asking which entries moved", () => {
  const harness = useKernelForwarder({ moved: true });

  it("a quiet peer's move on either outbound entry, or inbound, is found and folded in", async () => {
    const f = harness.makeForwarder(dualStackRoute);
    f.useLoopback6(async () => L6);
    const { peer } = makePeer(ROUTE6);
    await f.update(peer);
    const program = harness.program as MovedFakeProgram;
    // Past the active window: the peer is read only when the program says an entry of its moved.
    await vi.advanceTimersByTimeAsync(11_000);
    const reads = vi.spyOn(program, "outboundCounters");
    await vi.advanceTimersByTimeAsync(4_000);
    expect(reads).not.toHaveBeenCalled();

    program.outbound.get(L_KEY)!.packets = 3n;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(peer.kernelTraffic.txDatagrams).toBe(3);

    await vi.advanceTimersByTimeAsync(11_000);
    program.outbound.get(L6_KEY)!.packets = 4n;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(peer.kernelTraffic.txDatagrams).toBe(7);

    await vi.advanceTimersByTimeAsync(11_000);
    program.theInbound().packets = 2n;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(peer.kernelTraffic.rxDatagrams).toBe(2);
  });
});
