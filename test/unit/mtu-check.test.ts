import { describe, expect, it } from "vitest";
import { parseMonitorLine } from "../../src/wg/monitor-line.js";
import { legOverhead, linkMtus, mtuWarning, routesIpv6Only, uplinkMtu } from "../../src/wg/mtu-check.js";

// `ip -o link show` as iproute2 6.1 prints it (each link's second line joined with a backslash).
const LINKS = [
  "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00",
  "2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 4e:43:9b:24:11:d1 brd ff:ff:ff:ff:ff:ff link-netnsid 0",
  "3: ppp0: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1492 qdisc fq_codel state UNKNOWN mode DEFAULT group default qlen 3\\    link/ppp",
  "4: docker0: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 9000 qdisc noqueue state DOWN mode DEFAULT group default",
  "5: ifb0: <BROADCAST,NOARP> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 32\\    link/ether 2e:77:33:a0:f1:ff brd ff:ff:ff:ff:ff:ff",
  "9: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 65456 qdisc fq_codel state UNKNOWN mode DEFAULT group default qlen 500\\    link/none ",
].join("\n");

const links = linkMtus(LINKS.split("\n").map(parseMonitorLine));

describe("linkMtus", () => {
  it("reads every link's name, MTU, and whether it is up or loopback", () => {
    expect(links).toEqual([
      { name: "lo", mtu: 65536, up: true, loopback: true },
      { name: "eth0", mtu: 1500, up: true, loopback: false },
      { name: "ppp0", mtu: 1492, up: true, loopback: false },
      { name: "docker0", mtu: 9000, up: true, loopback: false },
      { name: "ifb0", mtu: 1500, up: false, loopback: false },
      { name: "wg0", mtu: 65456, up: true, loopback: false },
    ]);
  });
});

describe("uplinkMtu", () => {
  it("is the default routes' largest MTU: the device's, or the route's own", () => {
    expect(uplinkMtu(links, [{ device: "ppp0", via: null, mtu: null }], "wg0")).toBe(1492);
    expect(uplinkMtu(links, [{ device: "eth0", via: null, mtu: 1400 }], "wg0")).toBe(1400);
    expect(
      uplinkMtu(
        links,
        [
          { device: "ppp0", via: null, mtu: null },
          { device: "eth0", via: null, mtu: null },
        ],
        "wg0",
      ),
    ).toBe(1500);
  });

  it("without a default route, the largest up link's but loopback's and WireGuard's", () => {
    expect(uplinkMtu(links, [], "wg0")).toBe(9000);
    expect(
      uplinkMtu(
        links.filter((l) => l.name !== "docker0"),
        [],
        "wg0",
      ),
    ).toBe(1500);
  });

  it("a default route into WireGuard itself (a full tunnel in the main table) is not the uplink", () => {
    expect(uplinkMtu(links, [{ device: "wg0", via: null, mtu: null }], "wg0")).toBe(9000);
  });

  it("null with nothing but loopback and WireGuard", () => {
    expect(
      uplinkMtu(
        links.filter((l) => l.name === "lo" || l.name === "wg0"),
        [],
        "wg0",
      ),
    ).toBeNull();
  });
});

describe("mtuWarning", () => {
  const withMtu = (mtu: number) => links.map((l) => (l.name === "wg0" ? { ...l, mtu } : l));
  const viaEth0 = [{ device: "eth0", via: null, mtu: null }];

  it("wg-quick's MTU for an endpoint at 127.x: says so, and names wg-quick's own rule for the uplink", () => {
    expect(mtuWarning(links, viaEth0, "wg0")).toBe(
      "wg0's MTU 65456 (wg-quick's choice for an endpoint at 127.x: loopback's MTU less 80) is more than " +
        'the uplink carries (1500): larger packets leave in IP fragments, in user space; set "MTU = 1420" ' +
        "in its wg-quick [Interface] (now: ip link set dev wg0 mtu 1420)",
    );
  });

  it("any MTU whose full-size datagram exceeds the uplink even over IPv4: no word of wg-quick", () => {
    const warning = mtuWarning(withMtu(1441), viaEth0, "wg0");
    expect(warning).toMatch(/^wg0's MTU 1441 is more than the uplink carries \(1500\)/);
    expect(warning).toContain('"MTU = 1420"');
    expect(mtuWarning(withMtu(1433), [{ device: "ppp0", via: null, mtu: null }], "wg0")).toContain(
      '"MTU = 1412"',
    );
    expect(mtuWarning(withMtu(1432), [{ device: "ppp0", via: null, mtu: null }], "wg0")).toBeNull();
  });

  it("none where a full-size datagram fits in IPv4 (1440 on 1500: a choice, not a mistake)", () => {
    expect(mtuWarning(withMtu(1440), viaEth0, "wg0")).toBeNull();
    expect(mtuWarning(withMtu(1420), viaEth0, "wg0")).toBeNull();
    expect(mtuWarning(withMtu(1280), [{ device: "eth0", via: null, mtu: 1340 }], "wg0")).toBeNull();
  });

  it("none when the interface or any uplink is unknown", () => {
    expect(mtuWarning(links, viaEth0, "wg1")).toBeNull();
    expect(
      mtuWarning(
        links.filter((l) => l.name === "lo" || l.name === "wg0"),
        [],
        "wg0",
      ),
    ).toBeNull();
  });
});

describe("legOverhead", () => {
  it("counts the IP and UDP headers, and ChannelData's 4 bytes on our TURN allocation over UDP", () => {
    expect(legOverhead({ family: 4, turn: null })).toBe(28);
    expect(legOverhead({ family: 6, turn: null })).toBe(48);
    expect(legOverhead({ family: 4, turn: "udp" })).toBe(32);
    expect(legOverhead({ family: 6, turn: "udp" })).toBe(52);
  });

  it("nothing over TURN on TCP or TLS: a stream is never fragmented", () => {
    expect(legOverhead({ family: 6, turn: "tcp" })).toBeNull();
    expect(legOverhead({ family: 4, turn: "tls" })).toBeNull();
  });
});

describe("mtuWarning with the peers' paths", () => {
  const withMtu = (mtu: number) => links.map((l) => (l.name === "wg0" ? { ...l, mtu } : l));
  const viaEth0 = [{ device: "eth0", via: null, mtu: null }];
  const relayed6 = { path: "peer K6's path", leg: { family: 6, turn: "udp" } } as const;

  it("1420 on 1500 with a path relayed by our TURN server over IPv6: names the peer, the path and 1416", () => {
    expect(mtuWarning(withMtu(1420), viaEth0, "wg0", [relayed6])).toBe(
      "wg0's MTU 1420 is more than peer K6's path carries in one piece (relayed by our TURN server over " +
        "UDP over IPv6: 1416 on the uplink's 1500): larger packets leave in IP fragments, in user space; " +
        'set "MTU = 1416" in its wg-quick [Interface] (now: ip link set dev wg0 mtu 1416)',
    );
    expect(mtuWarning(withMtu(1416), viaEth0, "wg0", [relayed6])).toBeNull();
  });

  it("none at 1420 for paths wg-quick's rule covers: IPv6, relayed over IPv4, TURN over TCP", () => {
    const legs = [
      { path: "A", leg: { family: 6, turn: null } },
      { path: "B", leg: { family: 4, turn: "udp" } },
      { path: "C", leg: { family: 6, turn: "tcp" } },
      { path: "D", leg: { family: 4, turn: null } },
    ] as const;
    expect(mtuWarning(withMtu(1420), viaEth0, "wg0", legs)).toBeNull();
  });

  it("1440 (an IPv4 choice) warns once a path is over IPv6, and names the worst of several", () => {
    const direct4 = { path: "peer D4's path", leg: { family: 4, turn: null } } as const;
    const direct6 = { path: "peer D6's path", leg: { family: 6, turn: null } } as const;
    expect(mtuWarning(withMtu(1440), viaEth0, "wg0", [direct4])).toBeNull();
    const one = mtuWarning(withMtu(1440), viaEth0, "wg0", [direct4, direct6]);
    expect(one).toContain("peer D6's path carries in one piece (over IPv6: 1420 on the uplink's 1500):");
    expect(one).toContain('set "MTU = 1420"');
    const three = mtuWarning(withMtu(1440), viaEth0, "wg0", [
      direct6,
      relayed6,
      { ...direct6, path: "peer E6's path" },
    ]);
    expect(three).toContain("peer K6's path");
    expect(three).toContain("(and other paths)");
    expect(three).toContain('set "MTU = 1416"');
    // The same words for any number of others: logged once while a hub's paths come up.
    expect(mtuWarning(withMtu(1440), viaEth0, "wg0", [direct6, relayed6])).toBe(three);
  });

  it("over the uplink even in IPv4: the uplink's warning, with the MTU the worst path needs", () => {
    const warning = mtuWarning(links, viaEth0, "wg0", [relayed6]);
    expect(warning).toMatch(
      /^wg0's MTU 65456 \(wg-quick's choice .*\) is more than the uplink carries \(1500\)/,
    );
    expect(warning).toContain('set "MTU = 1416"');
  });
});

describe("routesIpv6Only (netcheck, before any path exists)", () => {
  const v4 = { device: "eth0", via: "192.0.2.1", mtu: null, family: 4 } as const;
  const v6 = { device: "eth0", via: "fe80::1", mtu: null, family: 6 } as const;

  it("true where every default route but WireGuard's own is IPv6: every path then leaves over IPv6", () => {
    expect(routesIpv6Only([v6], "wg0")).toBe(true);
    expect(routesIpv6Only([v6, { ...v4, device: "wg0" }], "wg0")).toBe(true); // a full tunnel's IPv4 default
  });

  it("false with an IPv4 default route, without any, or where the family is not known", () => {
    expect(routesIpv6Only([v4, v6], "wg0")).toBe(false);
    expect(routesIpv6Only([], "wg0")).toBe(false);
    expect(routesIpv6Only([{ device: "eth0", via: null, mtu: null }, v6], "wg0")).toBe(false);
  });

  it("with its direct leg, 1440 (fits IPv4) warns on such a host and names 1420", () => {
    const withMtu = links.map((l) => (l.name === "wg0" ? { ...l, mtu: 1440 } : l));
    const warning = mtuWarning(withMtu, [v6], "wg0", [
      { path: "a direct path (this host routes IPv6 only)", leg: { family: 6, turn: null } },
    ]);
    expect(warning).toContain(
      "wg0's MTU 1440 is more than a direct path (this host routes IPv6 only) carries in one piece (over IPv6: 1420",
    );
    expect(warning).toContain('set "MTU = 1420"');
  });
});
