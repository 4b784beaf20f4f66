// KernelForwarder against a fake FastPathProgram and route lookup: concurrent updates (the newest wins
// whatever order the route lookups answer in), repeated ones (no churn), removal and close.
import { beforeEach, describe, expect, it } from "vitest";
import {
  deferredRoutes,
  type FakeProgram,
  inKey,
  LOOPBACK,
  makePeer,
  outKey,
  ROUTE,
  settle,
  UPLINK,
  useKernelForwarder,
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

    it("a new gateway on the same interface (route change, refresh) reinstalls with it", async () => {
      const uplink6 = { ...UPLINK, source: "2001:db8::10" };
      let route: typeof uplink6 & { nextHop?: string } = { ...uplink6, nextHop: "fe80::1" };
      const f = makeForwarder(async () => route);
      const { peer } = makePeer({ ...ROUTE, remoteAddress: "2001:db8:1::7" });
      await f.update(peer);
      expect(program.theOutbound().nextHop).toBe("fe80::1");
      program.calls.length = 0;
      f.refresh([peer]);
      await settle();
      expect(program.calls).toEqual([]);
      route = { ...uplink6, nextHop: "fe80::2" };
      f.refresh([peer]);
      await settle();
      expect(program.theOutbound()).toMatchObject({ ifindex: 7, nextHop: "fe80::2" });
      // The remote now on the link, then no next hop known: each a reinstall, never the old gateway.
      route = { ...uplink6, nextHop: "2001:db8:1::7" };
      f.refresh([peer]);
      await settle();
      expect(program.theOutbound().nextHop).toBe("2001:db8:1::7");
      route = { ...uplink6 };
      f.refresh([peer]);
      await settle();
      expect(program.theOutbound()).not.toHaveProperty("nextHop");
      expect(program.calls.filter((c) => c.startsWith("setOutbound"))).toHaveLength(3);
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
});
