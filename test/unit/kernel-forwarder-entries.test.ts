// KernelForwarder against a fake FastPathProgram and route lookup: which entries it installs for a path,
// and when it installs none (or removes what it had). Also the tc filter preference per interface.
import { beforeEach, describe, expect, it } from "vitest";
import { filterPreference } from "../../ebpf/loader.js";
import { type KernelRoute, nextHopsSafe } from "../../src/proxy/kernel-forwarder.js";
import type { UdpRoute } from "../../src/proxy/path.js";
import {
  type FakeProgram,
  inKey,
  LOOPBACK,
  makePeer,
  outKey,
  ROUTE,
  UPLINK,
  useKernelForwarder,
  WG_INTERFACE,
  WG_PORT,
} from "../support/kernel-forwarder-fakes.js";

describe("KernelForwarder", () => {
  const harness = useKernelForwarder();
  const { makeForwarder } = harness;
  let program: FakeProgram;
  let routeLookups: string[];

  beforeEach(() => {
    program = harness.program;
    routeLookups = harness.routeLookups;
  });

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

    describe("the next hop of an IPv6 path, from the same route answer as the interface", () => {
      const ROUTE6 = { ...ROUTE, remoteAddress: "2001:db8:1::7" };
      const UPLINK6 = { ...UPLINK, source: "2001:db8::10" };

      it("via a gateway: the gateway goes into the outbound entry (a router's link-local address too)", async () => {
        for (const gateway of ["2001:db8::1", "fe80::1"]) {
          const f = makeForwarder(async () => ({ ...UPLINK6, nextHop: gateway }));
          const { peer } = makePeer(ROUTE6);
          await f.update(peer);
          expect(program.theOutbound()).toMatchObject({ ifindex: 7, nextHop: gateway, toLoopback: false });
          expect(program.theInbound()).not.toHaveProperty("nextHop");
          f.remove(peer);
        }
      });

      it("on the link: the remote itself is the next hop", async () => {
        const f = makeForwarder(async () => ({ ...UPLINK6, nextHop: "2001:db8:1::7" }));
        const { peer } = makePeer(ROUTE6);
        await f.update(peer);
        expect(program.theOutbound().nextHop).toBe("2001:db8:1::7");
      });

      it("none when the route tells none: the kernel looks the route up (as before)", async () => {
        const f = makeForwarder(async () => UPLINK6);
        const { peer } = makePeer(ROUTE6);
        await f.update(peer);
        expect(f.carries(peer)).toBe(true);
        expect(program.theOutbound()).not.toHaveProperty("nextHop");
      });

      it("never an IPv4 one", async () => {
        const f = makeForwarder(async () => ({ ...UPLINK6, nextHop: "192.0.2.1" }));
        const { peer } = makePeer(ROUTE6);
        await f.update(peer);
        expect(f.carries(peer)).toBe(true);
        expect(program.theOutbound()).not.toHaveProperty("nextHop");
      });

      it("none for an IPv4 path: its datagram keeps lo's route, which only the kernel's lookup replaces", async () => {
        const f = makeForwarder(async () => ({ ...UPLINK, nextHop: "192.0.2.1" }));
        const { peer } = makePeer(ROUTE);
        await f.update(peer);
        expect(f.carries(peer)).toBe(true);
        expect(program.theOutbound()).not.toHaveProperty("nextHop");
      });

      it("none into lo: a peer on this host goes on with its local route", async () => {
        const f = makeForwarder(async () => ({
          dev: "lo",
          ifindex: 1,
          source: "127.0.0.1",
          nextHop: "127.0.0.1",
        }));
        const { peer } = makePeer({ ...ROUTE, remoteAddress: "127.0.0.1", remotePort: 41000 });
        await f.update(peer);
        expect(program.theOutbound().toLoopback).toBe(true);
        expect(program.theOutbound()).not.toHaveProperty("nextHop");
      });
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
      [
        "the remote is IPv6 and on this host (route via lo)",
        { ...ROUTE, remoteAddress: "::1" },
        { dev: "lo", ifindex: 1, source: "::1" },
        WG_PORT,
      ],
      [
        "the socket is bound to an IPv4 address and the remote is IPv6",
        { ...ROUTE, localAddress: "192.0.2.10", remoteAddress: "2001:db8::7" },
        UPLINK,
        WG_PORT,
      ],
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
});

describe("nextHopsSafe: only kernels whose 4 -> 6 translation drops lo's route get next hops", () => {
  it("from 6.16 on (verified on 6.18); not before, nor for a release it cannot read", () => {
    for (const release of ["6.18.44", "6.16.0-1-amd64", "7.0.1", "6.18.0-rc3"])
      expect(nextHopsSafe(release), release).toBe(true);
    for (const release of ["6.15.9", "6.1.0-27-amd64", "5.15.0", "", "unknown"])
      expect(nextHopsSafe(release), release).toBe(false);
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
