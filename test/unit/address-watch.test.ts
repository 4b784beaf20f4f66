// Parsing of `ip -o monitor` lines and default routes for the address watch.
import { describe, expect, it } from "vitest";
import {
  defaultRouteSummary,
  isRouteOrRuleLine,
  matchesInterface,
  monitorLineInterface,
  routeListenerJoined,
  summaryKey,
} from "../../src/wg/address-watch.js";

describe("monitorLineInterface", () => {
  it.each([
    ["2: eth0    inet 192.168.5.10/24 scope global eth0\\       valid_lft forever", "eth0"],
    ["Deleted 2: eth0    inet 192.168.5.10/24 scope global eth0", "eth0"],
    ["2: eth0@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP", "eth0"],
    ["Deleted 7: wg0: <POINTOPOINT,NOARP> mtu 1420 qdisc noop state DOWN", "wg0"],
    ["default via 192.168.5.1 dev eth0 linkdown ", "eth0"],
    ["Deleted local 192.168.5.10 dev eth0 table local proto kernel scope host src 192.168.5.10 ", "eth0"],
    ["something else entirely", null],
  ])("%s -> %s", (line, name) => {
    expect(monitorLineInterface(line)).toBe(name);
  });
});

describe("isRouteOrRuleLine", () => {
  it.each([
    ["32765:\tnot from all fwmark 0xca6c lookup 51820", true],
    ["Deleted 32764:\tfrom all lookup main suppress_prefixlength 0", true],
    ["default dev wg0 table 51820 scope link ", true],
    ["Deleted 203.0.113.5 dev wg0 scope link ", true],
    ["2: eth0    inet 192.168.5.10/24 scope global eth0", false],
    ["Deleted 7: wg0: <POINTOPOINT,NOARP> mtu 1420 qdisc noop state DOWN", false],
  ])("%s -> %s", (line, routing) => {
    expect(isRouteOrRuleLine(line)).toBe(routing);
  });
});

describe("matchesInterface", () => {
  it("matches exact names and prefixes with *", () => {
    expect(matchesInterface("wg0", ["wg0"])).toBe(true);
    expect(matchesInterface("wg01", ["wg0"])).toBe(false);
    expect(matchesInterface("docker0", ["docker*"])).toBe(true);
    expect(matchesInterface("eth0", ["docker*", "wg0"])).toBe(false);
  });
});

describe("defaultRouteSummary", () => {
  it("keeps gateway and device, skips ignored interfaces, sorts", () => {
    const text = [
      "default via 192.168.1.1 dev eth0 proto dhcp metric 100",
      "default dev wg0 scope link",
      "default via fe80::1 dev wlan0 proto ra metric 600 pref medium",
      "",
    ].join("\n");
    expect(defaultRouteSummary(text, ["wg0"])).toEqual(["192.168.1.1 dev eth0", "fe80::1 dev wlan0"]);
  });

  it("a change of gateway changes the summary", () => {
    const a = summaryKey({ addresses: ["eth0/10.0.0.2"], defaultRoutes: ["10.0.0.1 dev eth0"] });
    const b = summaryKey({ addresses: ["eth0/10.0.0.2"], defaultRoutes: ["10.0.0.254 dev eth0"] });
    expect(a).not.toBe(b);
  });
});

describe("routeListenerJoined", () => {
  // /proc/net/netlink on Linux 6.18 with `ip -o monitor link address route rule nexthop` as 11292.
  const table = [
    "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode",
    "000000003840f047 0   11292      840405d1 0        0        0     2        0        5326647 ",
    "00000000a1b2c3d4 0   11300      00000000 0        0        0     2        0        5326650 ",
    "00000000a1b2c3d5 9   11301      00000001 0        0        0     2        0        5326651 ",
  ].join("\n");

  it("is the process's route socket with groups joined", () => {
    expect(routeListenerJoined(table, 11292)).toBe(true);
  });

  it("not a socket without groups (not joined yet), of another protocol, or of another process", () => {
    expect(routeListenerJoined(table, 11300)).toBe(false);
    expect(routeListenerJoined(table, 11301)).toBe(false);
    expect(routeListenerJoined(table, 4242)).toBe(false);
    expect(routeListenerJoined("", 11292)).toBe(false);
  });
});
