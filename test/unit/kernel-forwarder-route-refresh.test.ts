// KernelForwarder.refreshWithin: a route change for a prefix re-resolves only the entries whose remote
// is inside it (IPv4, IPv6, default), peers left to user space by their route included, and a removed
// peer or one whose path lost its remote never.
import { beforeEach, describe, expect, it } from "vitest";
import type { KernelForwarder } from "../../src/proxy/kernel-forwarder.js";
import type { ProxyPeer } from "../../src/proxy/proxy-peer.js";
import { parsePrefix, type RoutePrefix } from "../../src/wg/route-prefix.js";
import { makePeer, ROUTE, settle, UPLINK, useKernelForwarder } from "../support/kernel-forwarder-fakes.js";

const prefix = (text: string, family?: 4 | 6): RoutePrefix => {
  const p = parsePrefix(text, family);
  if (!p) throw new Error(text);
  return p;
};

const REMOTES = ["198.51.100.7", "198.51.100.8", "203.0.113.9", "2001:db8:1::5", "2001:db8:2::5"];

describe("KernelForwarder.refreshWithin", () => {
  const harness = useKernelForwarder();
  let lookups: string[];
  let forwarder: KernelForwarder;
  let peers: ProxyPeer[];
  /** Where the test's route lookup sends each remote now (default: the uplink). */
  let routes: Map<string, typeof UPLINK | null>;

  beforeEach(async () => {
    lookups = [];
    routes = new Map();
    forwarder = harness.makeForwarder(async (remote) => {
      lookups.push(remote);
      return routes.has(remote) ? (routes.get(remote) ?? null) : UPLINK;
    });
    peers = REMOTES.map(
      (remoteAddress, i) =>
        makePeer({ ...ROUTE, remoteAddress }, { address: `127.12.34.${10 + i}`, port: 51822 }).peer,
    );
    await Promise.all(peers.map((p) => forwarder.update(p)));
    lookups.length = 0;
  });

  it("re-resolves the entries inside the prefix, and no other", async () => {
    routes.set("198.51.100.8", { dev: "eth1", ifindex: 9, source: "192.0.2.99" });
    expect(forwarder.refreshWithin([prefix("198.51.100.0/24")])).toBe(2);
    await settle();
    expect(lookups.sort()).toEqual(["198.51.100.7", "198.51.100.8"]);
    // The moved entry follows its route; the other one stays as it was (no churn).
    const outbound = [...harness.program.outbound.values()];
    expect(outbound.find((e) => e.remoteAddress === "198.51.100.8")?.ifindex).toBe(9);
    expect(outbound.find((e) => e.remoteAddress === "198.51.100.7")?.ifindex).toBe(UPLINK.ifindex);
  });

  it("a prefix that covers no remote re-resolves nothing", async () => {
    expect(forwarder.refreshWithin([prefix("10.244.3.7"), prefix("2001:db8:3::/48")])).toBe(0);
    await settle();
    expect(lookups).toEqual([]);
  });

  it("IPv6 and default: the family's every entry", async () => {
    expect(forwarder.refreshWithin([prefix("2001:db8:2::/48")])).toBe(1);
    expect(forwarder.refreshWithin([prefix("default", 6)])).toBe(2);
    expect(forwarder.refreshWithin([prefix("default", 4)])).toBe(3);
    await settle();
    expect(lookups.sort()).toEqual([...REMOTES, "2001:db8:2::5"].sort());
  });

  it("a peer left to user space (no route) is re-resolved too, and installed once it has one", async () => {
    routes.set("203.0.113.9", null);
    forwarder.refreshWithin([prefix("203.0.113.0/24")]);
    await settle();
    expect(forwarder.carries(peers[2]!)).toBe(false);
    routes.delete("203.0.113.9");
    expect(forwarder.refreshWithin([prefix("203.0.113.9")])).toBe(1);
    await settle();
    expect(forwarder.carries(peers[2]!)).toBe(true);
  });

  it("a removed peer, or one whose path lost its UDP route, is not re-resolved", async () => {
    forwarder.remove(peers[0]!);
    const path = peers[1]!.path as unknown as { route: unknown };
    path.route = null;
    await forwarder.update(peers[1]!);
    lookups.length = 0;
    expect(forwarder.refreshWithin([prefix("198.51.100.0/24")])).toBe(0);
  });

  it("a peer whose path moved is found at its new remote only", async () => {
    const path = peers[0]!.path as unknown as { route: typeof ROUTE };
    path.route = { ...ROUTE, remoteAddress: "192.0.2.200" };
    await forwarder.update(peers[0]!);
    lookups.length = 0;
    expect(forwarder.refreshWithin([prefix("198.51.100.7")])).toBe(0);
    expect(forwarder.refreshWithin([prefix("192.0.2.0/24")])).toBe(1);
  });
});
