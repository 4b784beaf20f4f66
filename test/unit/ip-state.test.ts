// The reads of links and routes the address watch and the MTU check share: default routes parsed.
import { describe, expect, it } from "vitest";
import { parseDefaultRoutes } from "../../src/wg/ip-state.js";

describe("parseDefaultRoutes", () => {
  it("reads the device, the gateway and a route's own MTU (locked or not); a default without a device is skipped", () => {
    const out = [
      "default via 192.0.2.1 dev eth0 proto dhcp src 192.0.2.10 metric 100 ",
      "default dev ppp0 scope link mtu lock 1400 ",
      "default via fd00::1 dev eth0 metric 1024 mtu 1280 pref medium",
      "default nhid 5 proto static metric 20 ",
      "10.0.0.0/8 via 192.0.2.1 dev eth0 ",
    ].join("\n");
    expect(parseDefaultRoutes(out)).toEqual([
      { device: "eth0", via: "192.0.2.1", mtu: null },
      { device: "ppp0", via: null, mtu: 1400 },
      { device: "eth0", via: "fd00::1", mtu: 1280 },
    ]);
  });

  it("tags each route with the family it was read for, when given", () => {
    expect(parseDefaultRoutes("default via fe80::1 dev eth0 proto ra metric 1024 pref medium", 6)).toEqual([
      { device: "eth0", via: "fe80::1", mtu: null, family: 6 },
    ]);
  });

  it("takes each nexthop of a multipath default route", () => {
    const out = ["default proto static metric 100 ", "\tnexthop via 10.0.0.1 dev eth1 weight 1 ", ""].join(
      "\n",
    );
    expect(parseDefaultRoutes(out)).toEqual([{ device: "eth1", via: "10.0.0.1", mtu: null }]);
  });
});
