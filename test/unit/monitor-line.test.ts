// `ip -o monitor link address route rule` lines as captured from iproute2 6.1 in a namespace (tbt-rr-cap:
// veths tbt-rra/tbt-rrc, routes of every type, a rule, a multipath route, a link down, an address
// deleted), and what each tells about routing: the prefix of a route (default's family from its gateway),
// or a rule, a link's state, an address.
import { describe, expect, it } from "vitest";
import { type MonitorLine, parseMonitorLine } from "../../src/wg/monitor-line.js";
import { parsePrefix } from "../../src/wg/route-prefix.js";

/** The route's prefix as "family:first/length" (see RoutePrefix), or null. */
function routeOf(line: string): string | null {
  const parsed = parseMonitorLine(line);
  if (parsed.kind !== "route") throw new Error(`${line}: a ${parsed.kind} line`);
  return parsed.prefix ? `${parsed.prefix.family}:${parsed.prefix.first}/${parsed.prefix.length}` : null;
}

const id = (text: string, family?: 4 | 6): string => {
  const p = parsePrefix(text, family);
  return p ? `${p.family}:${p.first}/${p.length}` : "?";
};

describe("parseMonitorLine: route lines", () => {
  it.each([
    ["198.18.0.0/16 via 10.50.0.2 dev tbt-rra ", id("198.18.0.0/16")],
    ["default via 10.50.0.2 dev tbt-rra ", id("default", 4)],
    ["198.18.5.0/24 via 10.60.0.3 dev tbt-rrc ", id("198.18.5.0/24")],
    ["198.18.7.7 dev tbt-rrc scope link ", id("198.18.7.7/32")],
    [
      "198.18.8.0/24 \\\tnexthop via 10.50.0.2 dev tbt-rra weight 1 \\\tnexthop via 10.60.0.2 dev tbt-rrc weight 1 ",
      id("198.18.8.0/24"),
    ],
    ["unreachable 198.18.9.0/24 ", id("198.18.9.0/24")],
    ["blackhole 198.18.10.0/24 ", id("198.18.10.0/24")],
    ["prohibit 198.18.11.0/24 ", id("198.18.11.0/24")],
    ["throw 198.18.12.0/24 ", id("198.18.12.0/24")],
    ["198.18.13.0/24 via 10.50.0.2 dev tbt-rra table 100 ", id("198.18.13.0/24")],
    ["198.18.14.0/24 via 10.50.0.2 dev tbt-rra proto static metric 50 ", id("198.18.14.0/24")],
    ["198.18.15.0/24 tos 0x10 via 10.50.0.2 dev tbt-rra ", id("198.18.15.0/24")],
    ["2001:db8::/32 via fd50::2 dev tbt-rra metric 1024 pref medium", id("2001:db8::/32")],
    ["2001:db8:1::5 via fd50::3 dev tbt-rra metric 1024 pref medium", id("2001:db8:1::5/128")],
    ["default via fd50::2 dev tbt-rra metric 1024 pref medium", id("default", 6)],
    [
      "2001:db8:2::/48 metric 1024 pref medium\\\tnexthop via fd50::2 dev tbt-rra weight 1 \\\tnexthop via fd50::3 dev tbt-rra weight 1 ",
      id("2001:db8:2::/48"),
    ],
    ["unreachable 2001:db8:3::/48 dev lo metric 1024 pref medium", id("2001:db8:3::/48")],
    ["unreachable default dev lo metric 1024 pref medium", id("default", 6)],
    ["multicast 239.1.0.0/16 dev tbt-rra table local scope link ", id("239.1.0.0/16")],
    ["local 10.50.0.1 dev tbt-rra table local proto kernel scope host src 10.50.0.1 ", id("10.50.0.1/32")],
    ["local fd50::1 dev tbt-rra table local proto kernel metric 0 pref medium", id("fd50::1/128")],
    [
      "broadcast 10.50.0.255 dev tbt-rra table local proto kernel scope link src 10.50.0.1 linkdown ",
      id("10.50.0.255/32"),
    ],
    ["10.50.0.0/24 dev tbt-rra proto kernel scope link src 10.50.0.1 linkdown ", id("10.50.0.0/24")],
    ["multicast ff00::/8 dev tbt-rrb table local proto kernel metric 256 pref medium", id("ff00::/8")],
    ["fe80::/64 dev tbt-rrb proto kernel metric 256 pref medium", id("fe80::/64")],
    ["Deleted 198.18.5.0/24 via 10.60.0.3 dev tbt-rrc ", id("198.18.5.0/24")],
    ["Deleted 2001:db8::/32 via fd50::2 dev tbt-rra metric 1024 pref medium", id("2001:db8::/32")],
    [
      "Deleted broadcast 10.50.0.255 dev tbt-rra table local proto kernel scope link src 10.50.0.1 ",
      id("10.50.0.255/32"),
    ],
    // A default route whose family is not sure: IPv4 through an IPv6 gateway (RFC 5549), no gateway.
    ["default via inet6 fe80::1 dev eth0 proto bird ", null],
    ["default dev wg0 table 51820 scope link ", null],
    ["something ip never prints", null],
  ])("%s -> %s", (line, prefix) => {
    expect(routeOf(line)).toBe(prefix);
  });

  it("names the nexthop object a route goes through (`nhid`), or none", () => {
    // Captured from iproute2 6.1: a route through a nexthop, through a group, a default in another table.
    expect(parseMonitorLine("192.0.2.0/24 nhid 10 via 10.9.0.1 dev d0 ")).toEqual({
      kind: "route",
      prefix: parsePrefix("192.0.2.0/24"),
      devices: ["d0"],
      nexthop: 10,
    });
    expect(
      parseMonitorLine(
        "198.51.100.0/24 nhid 30 \\\tnexthop via 10.9.0.1 dev d0 weight 1 \\\tnexthop via 10.9.0.7 dev d1 weight 1 ",
      ),
    ).toMatchObject({ prefix: parsePrefix("198.51.100.0/24"), devices: ["d0", "d1"], nexthop: 30 });
    expect(parseMonitorLine("default nhid 10 via 10.9.0.1 dev d0 table 100 ")).toMatchObject({
      prefix: parsePrefix("default", 4),
      nexthop: 10,
    });
    expect(
      parseMonitorLine("Deleted 2001:db8:77::/48 nhid 20 via 2001:db8:9::1 dev d0 metric 1024 pref medium"),
    ).toMatchObject({ prefix: parsePrefix("2001:db8:77::/48"), nexthop: 20 });
    expect(parseMonitorLine("198.18.0.0/16 via 10.50.0.2 dev tbt-rra ")).toMatchObject({ nexthop: null });
  });

  it("names every device of a multipath route", () => {
    const line =
      "198.18.8.0/24 \\\tnexthop via 10.50.0.2 dev tbt-rra weight 1 \\\tnexthop via 10.60.0.2 dev tbt-rrc weight 1 ";
    expect(parseMonitorLine(line)).toMatchObject({ kind: "route", devices: ["tbt-rra", "tbt-rrc"] });
  });
});

describe("parseMonitorLine: rules, links, addresses, nexthops", () => {
  it.each<[string, MonitorLine]>([
    // Nexthop objects, captured from iproute2 6.1 (`ip -o monitor ... nexthop`).
    ["id 10 via 10.9.0.1 dev d0 scope link ", { kind: "nexthop", id: 10, deleted: false, group: false }],
    ["id 20 via 2001:db8:9::5 dev d0 scope link ", { kind: "nexthop", id: 20, deleted: false, group: false }],
    ["id 5 blackhole ", { kind: "nexthop", id: 5, deleted: false, group: false }],
    ["id 30 group 10/11 ", { kind: "nexthop", id: 30, deleted: false, group: true }],
    [
      "id 31 group 10,3/11 type resilient buckets 8 idle_timer 120 unbalanced_timer 0 unbalanced_time 0 ",
      { kind: "nexthop", id: 31, deleted: false, group: true },
    ],
    [
      "Deleted id 10 via 10.9.0.4 dev d0 scope link ",
      { kind: "nexthop", id: 10, deleted: true, group: false },
    ],
    ["32765:\tfrom 10.0.0.0/8 lookup 100", { kind: "rule" }],
    ["Deleted 32764:\tfrom all lookup main suppress_prefixlength 0", { kind: "rule" }],
    [
      "3: tbt-rra@tbt-rrb: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 1500 qdisc noqueue state LOWERLAYERDOWN group default \\    link/ether 96:eb:9d:7e:69:28 brd ff:ff:ff:ff:ff:ff",
      {
        kind: "link",
        index: 3,
        name: "tbt-rra",
        deleted: false,
        up: true,
        carrier: false,
        loopback: false,
        mtu: 1500,
      },
    ],
    [
      "5: tbt-rrc@tbt-rrd: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default \\    link/ether a6:c9:ae:f4:fb:da brd ff:ff:ff:ff:ff:ff",
      {
        kind: "link",
        index: 5,
        name: "tbt-rrc",
        deleted: false,
        up: true,
        carrier: true,
        loopback: false,
        mtu: 1500,
      },
    ],
    [
      "5: tbt-rrc@tbt-rrd: <BROADCAST,MULTICAST> mtu 1500 qdisc noqueue state DOWN group default \\    link/ether a6:c9:ae:f4:fb:da brd ff:ff:ff:ff:ff:ff",
      {
        kind: "link",
        index: 5,
        name: "tbt-rrc",
        deleted: false,
        up: false,
        carrier: false,
        loopback: false,
        mtu: 1500,
      },
    ],
    [
      "Deleted 7: wg0: <POINTOPOINT,NOARP> mtu 1420 qdisc noop state DOWN",
      {
        kind: "link",
        index: 7,
        name: "wg0",
        deleted: true,
        up: false,
        carrier: false,
        loopback: false,
        mtu: 1420,
      },
    ],
    [
      "3: tbt-rra    inet 10.50.0.1/24 scope global tbt-rra\\       valid_lft forever preferred_lft forever",
      {
        kind: "address",
        index: 3,
        name: "tbt-rra",
        linkLocal: false,
        deleted: false,
        address: "10.50.0.1/24",
        state: "scope global tbt-rra",
      },
    ],
    [
      "Deleted 5: tbt-rrc    inet6 fe80::a4c9:aeff:fef4:fbda/64 scope link tentative \\       valid_lft forever preferred_lft forever",
      {
        kind: "address",
        index: 5,
        name: "tbt-rrc",
        linkLocal: true,
        deleted: true,
        address: "fe80::a4c9:aeff:fef4:fbda/64",
        state: "scope link tentative",
      },
    ],
    // Captured from iproute2 6.1: `ip addr change` renewing lifetimes, then deprecating (preferred 0).
    [
      "3: d0    inet6 2001:db8::5/64 scope global nodad dynamic \\       valid_lft 200sec preferred_lft 150sec",
      {
        kind: "address",
        index: 3,
        name: "d0",
        linkLocal: false,
        deleted: false,
        address: "2001:db8::5/64",
        state: "scope global nodad dynamic",
      },
    ],
    [
      "3: d0    inet6 2001:db8::5/64 scope global nodad deprecated dynamic \\       valid_lft 200sec preferred_lft 0sec",
      {
        kind: "address",
        index: 3,
        name: "d0",
        linkLocal: false,
        deleted: false,
        address: "2001:db8::5/64",
        state: "scope global nodad deprecated dynamic",
      },
    ],
  ])("%s", (line, parsed) => {
    expect(parseMonitorLine(line)).toEqual(parsed);
  });
});
