// The kernel fast path's route lookups (`ip -j -force -batch -`): interface, source and next hop from
// each answer. The answers below are what iproute2 printed for these routes in a namespace (on the link,
// via a gateway, a link-local IPv6 router, RFC 5549's IPv6 gateway for an IPv4 route, a local address).
import { describe, expect, it } from "vitest";
import { KernelRouteBatcher, type LinkInfo, nextHopOf } from "../../src/proxy/kernel-route-batch.js";

const ON_LINK = { dst: "192.0.2.7", dev: "eth0", prefsrc: "192.0.2.1", flags: [], uid: 0, cache: [] };
const VIA_GATEWAY = { ...ON_LINK, dst: "203.0.113.9", gateway: "192.0.2.254" };
const ON_LINK6 = {
  dst: "2001:db8::7",
  from: "::",
  dev: "eth0",
  protocol: "kernel",
  prefsrc: "2001:db8::1",
  metric: 256,
  flags: [],
  pref: "medium",
};
const VIA_ROUTER6 = { ...ON_LINK6, dst: "2001:db8:1::9", gateway: "fe80::1", metric: 1024 };
const VIA_GATEWAY6 = { ...ON_LINK6, dst: "2001:db8:5::1", gateway: "2001:db8::fe", metric: 1024 };
const VIA_INET6 = { ...ON_LINK, dst: "198.18.1.1", via: { family: "inet6", host: "fe80::2" } };
const LOCAL = {
  type: "local",
  dst: "192.0.2.1",
  dev: "lo",
  prefsrc: "192.0.2.1",
  flags: [],
  cache: ["local"],
};

describe("nextHopOf", () => {
  it("is the gateway of a route via one", () => {
    expect(nextHopOf(VIA_GATEWAY)).toBe("192.0.2.254");
    expect(nextHopOf(VIA_GATEWAY6)).toBe("2001:db8::fe");
    expect(nextHopOf(VIA_ROUTER6)).toBe("fe80::1");
    expect(nextHopOf({ ...VIA_GATEWAY, type: "unicast" })).toBe("192.0.2.254");
  });

  it("is the destination itself on the link (no gateway)", () => {
    expect(nextHopOf(ON_LINK)).toBe("192.0.2.7");
    expect(nextHopOf(ON_LINK6)).toBe("2001:db8::7");
  });

  it("is none where it cannot be told for sure", () => {
    // An IPv4 route through an IPv6 gateway (no `gateway`, a `via`): not on the link.
    expect(nextHopOf(VIA_INET6)).toBeUndefined();
    expect(nextHopOf(LOCAL)).toBeUndefined();
    expect(nextHopOf({ ...VIA_GATEWAY, type: "broadcast" })).toBeUndefined();
    expect(nextHopOf({ ...VIA_GATEWAY, gateway: "fe80::1" })).toBeUndefined();
    expect(nextHopOf({ ...VIA_GATEWAY6, gateway: "192.0.2.254" })).toBeUndefined();
    expect(nextHopOf({ ...VIA_ROUTER6, gateway: "fe80::1%eth0" })).toBeUndefined();
    expect(nextHopOf({ ...VIA_GATEWAY, gateway: "0.0.0.0" })).toBeUndefined();
    expect(nextHopOf({ ...VIA_GATEWAY6, gateway: "::" })).toBeUndefined();
    expect(nextHopOf({ ...VIA_GATEWAY, gateway: 7 })).toBeUndefined();
    expect(nextHopOf({ ...ON_LINK, dst: "not an address" })).toBeUndefined();
    expect(nextHopOf({})).toBeUndefined();
  });
});

describe("KernelRouteBatcher", () => {
  const LINKS: Record<string, LinkInfo> = {
    eth0: { ifindex: 2, ethernet: true },
    lo: { ifindex: 1, ethernet: false },
    sit1: { ifindex: 5, ethernet: false },
  };

  it("answers each remote with its interface, source and next hop (on the link or via a gateway)", async () => {
    let asked = "";
    const linksRead: string[] = [];
    const answers = [ON_LINK, VIA_GATEWAY, VIA_ROUTER6, VIA_INET6, LOCAL];
    const batcher = new KernelRouteBatcher(
      async (commands) => {
        asked = commands;
        return `${answers.map((r) => JSON.stringify([r])).join("\n")}\n`;
      },
      async (dev) => {
        linksRead.push(dev);
        return LINKS[dev] ?? { ifindex: 0, ethernet: false };
      },
    );
    const remotes = ["192.0.2.7", "203.0.113.9", "2001:db8:1::9", "198.18.1.1", "192.0.2.1", "192.0.2.99"];
    const routes = await Promise.all(remotes.map((r) => batcher.route(r)));
    expect(asked.split("\n").filter(Boolean)).toEqual(remotes.map((r) => `route get ${r}`));
    expect(routes).toEqual([
      { dev: "eth0", ifindex: 2, source: "192.0.2.1", nextHop: "192.0.2.7" },
      { dev: "eth0", ifindex: 2, source: "192.0.2.1", nextHop: "192.0.2.254" },
      { dev: "eth0", ifindex: 2, source: "2001:db8::1", nextHop: "fe80::1" },
      { dev: "eth0", ifindex: 2, source: "192.0.2.1" },
      { dev: "lo", ifindex: 1, source: "192.0.2.1" },
      null,
    ]);
    // Once per interface and batch.
    expect(linksRead).toEqual(["eth0", "lo"]);
  });

  it("gives no next hop on a link that is not Ethernet-type (a tunnel: the kernel's lookup sets its route)", async () => {
    const tunnelled = { ...VIA_GATEWAY6, dev: "sit1", gateway: "::192.0.2.254" };
    const batcher = new KernelRouteBatcher(
      async () => `${JSON.stringify([tunnelled])}\n`,
      async (dev) => LINKS[dev] ?? { ifindex: 0, ethernet: false },
    );
    expect(await batcher.route("2001:db8:5::1")).toEqual({ dev: "sit1", ifindex: 5, source: "2001:db8::1" });
  });
});
