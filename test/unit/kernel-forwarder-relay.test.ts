// KernelForwarder on relayed paths (fake FastPathProgram and route lookup): a path on our own TURN
// allocation over UDP with a bound channel gets ChannelData entries (the allocation's five-tuple and
// the channel); a path whose channel is not bound yet, or relayed over TCP/TLS, stays in user space.
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { ChannelRoute } from "../../src/proxy/path.js";
import {
  type FakeProgram,
  inKey,
  LOOPBACK,
  makePeer,
  ROUTE,
  UPLINK,
  useKernelForwarder,
  WG_PORT,
} from "../support/kernel-forwarder-fakes.js";

const TURN: ChannelRoute = {
  localAddress: "192.0.2.10",
  localPort: 50000,
  remoteAddress: "203.0.113.3",
  remotePort: 3478,
  channel: 0x4001,
};

function relayedPeer(channel: ChannelRoute | null) {
  const made = makePeer(null);
  made.path.kind = "relay";
  made.path.channel = channel;
  return made;
}

describe("KernelForwarder on relayed paths", () => {
  const harness = useKernelForwarder();
  const { makeForwarder } = harness;
  let program: FakeProgram;

  beforeEach(() => {
    program = harness.program;
  });

  it("a bound channel: outbound to the TURN server from the allocation with the channel, inbound keyed by it", async () => {
    const f = makeForwarder();
    const { peer } = relayedPeer(TURN);
    await f.update(peer);
    expect(harness.routeLookups).toEqual(["203.0.113.3"]);
    expect(program.attached).toEqual([["eth0", 7]]);
    expect(program.theOutbound()).toEqual({
      loopbackAddress: LOOPBACK.address,
      loopbackPort: LOOPBACK.port,
      localAddress: "192.0.2.10",
      localPort: 50000,
      remoteAddress: "203.0.113.3",
      remotePort: 3478,
      wireguardPort: WG_PORT,
      ifindex: 7,
      toLoopback: false,
      channel: 0x4001,
      packets: 0n,
      bytes: 0n,
    });
    expect([...program.inbound.keys()]).toEqual([inKey("192.0.2.10", 50000, "203.0.113.3", 3478, 0x4001)]);
    expect(program.theInbound()).toMatchObject({
      channel: 0x4001,
      loopbackIfindex: 1,
      wireguardPort: WG_PORT,
    });
    expect(f.carries(peer)).toBe(true);
  });

  it("a channel not bound yet stays in user space until the path reports it bound", async () => {
    const f = makeForwarder();
    const { peer, path } = relayedPeer(null);
    await f.update(peer);
    expect(program.calls).toEqual([]);
    expect(f.carries(peer)).toBe(false);
    path.channel = TURN;
    await f.update(peer);
    expect(program.theOutbound().channel).toBe(0x4001);
    expect(f.carries(peer)).toBe(true);
  });

  it("a new allocation or channel replaces the entries; losing the channel removes them", async () => {
    const f = makeForwarder();
    const { peer, path } = relayedPeer(TURN);
    await f.update(peer);
    path.channel = { ...TURN, channel: 0x4002 };
    await f.update(peer);
    expect(program.theOutbound().channel).toBe(0x4002);
    expect([...program.inbound.keys()]).toEqual([inKey("192.0.2.10", 50000, "203.0.113.3", 3478, 0x4002)]);
    path.channel = { ...TURN, channel: 0x4002, localPort: 50002 };
    await f.update(peer);
    expect(program.theOutbound()).toMatchObject({ localPort: 50002, channel: 0x4002 });
    path.channel = null;
    await f.update(peer);
    expect(program.outbound.size).toBe(0);
    expect(program.inbound.size).toBe(0);
    expect(f.carries(peer)).toBe(false);
  });

  it("the same channel again changes nothing (no churn)", async () => {
    const f = makeForwarder();
    const { peer } = relayedPeer(TURN);
    await f.update(peer);
    const calls = program.calls.length;
    await f.update(peer);
    expect(program.calls.length).toBe(calls);
  });

  it("an upgrade from relay to a direct UDP route swaps ChannelData entries for plain ones", async () => {
    const f = makeForwarder();
    const { peer, path } = relayedPeer(TURN);
    await f.update(peer);
    path.route = ROUTE;
    await f.update(peer);
    const out = program.theOutbound();
    expect(out.channel).toBeUndefined();
    expect(out.remoteAddress).toBe("198.51.100.7");
    expect([...program.inbound.keys()]).toEqual([inKey(UPLINK.source, 40000, "198.51.100.7", 51820)]);
  });

  it("an IPv6 TURN server gets entries too (the program translates WireGuard's IPv4)", async () => {
    const f = makeForwarder(async () => ({ dev: "eth0", ifindex: 7, source: "2001:db8::10" }));
    const { peer } = relayedPeer({ ...TURN, localAddress: "::", remoteAddress: "2001:db8::3" });
    await f.update(peer);
    expect(program.theOutbound()).toMatchObject({
      localAddress: "2001:db8::10",
      remoteAddress: "2001:db8::3",
      channel: 0x4001,
    });
    expect([...program.inbound.keys()]).toEqual([inKey("2001:db8::10", 50000, "2001:db8::3", 3478, 0x4001)]);
  });

  it("relayed traffic the kernel carried is counted for the peer, read under the channel's key", async () => {
    const f = makeForwarder();
    const { peer, path } = relayedPeer(TURN);
    await f.update(peer);
    const inbound = program.theInbound();
    inbound.packets = 5n;
    inbound.bytes = 500n;
    program.theOutbound().packets = 3n;
    program.theOutbound().bytes = 300n;
    vi.advanceTimersByTime(1000); // the counter poll
    expect(peer.kernelTraffic).toMatchObject({ rxDatagrams: 5, rxBytes: 500, txDatagrams: 3, txBytes: 300 });
    expect(path.told).toEqual([
      [3, 0],
      [0, 5],
    ]);
    f.remove(peer);
    expect(program.inbound.size).toBe(0);
  });
});

describe("KernelForwarder on IPv6 and dual-stack paths", () => {
  const harness = useKernelForwarder();
  const { makeForwarder } = harness;

  it("an IPv6 direct path bound to :: takes the route's IPv6 source", async () => {
    const f = makeForwarder(async () => ({ dev: "eth0", ifindex: 7, source: "2001:db8::10" }));
    const { peer } = makePeer({ ...ROUTE, localAddress: "::", remoteAddress: "2001:db8::7" });
    await f.update(peer);
    expect(harness.program.theOutbound()).toMatchObject({
      localAddress: "2001:db8::10",
      remoteAddress: "2001:db8::7",
      ifindex: 7,
    });
    expect(harness.program.theOutbound().channel).toBeUndefined();
    expect([...harness.program.inbound.keys()]).toEqual([inKey("2001:db8::10", 40000, "2001:db8::7", 51820)]);
  });

  it("a dual-stack socket's IPv4-mapped remote is carried as IPv4", async () => {
    const f = makeForwarder();
    const { peer } = makePeer({ ...ROUTE, localAddress: "::", remoteAddress: "::ffff:198.51.100.7" });
    await f.update(peer);
    expect(harness.routeLookups).toEqual(["198.51.100.7"]);
    expect(harness.program.theOutbound()).toMatchObject({
      localAddress: UPLINK.source,
      remoteAddress: "198.51.100.7",
    });
  });
});
