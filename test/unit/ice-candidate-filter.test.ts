import type { NetworkInterfaceInfo } from "node:os";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.js";
import { createCandidateFilter, isPrivateAddress, relayMayReach } from "../../src/ice/candidate-filter.js";

function info(address: string, internal = false): NetworkInterfaceInfo {
  const v6 = address.includes(":");
  return {
    address,
    netmask: v6 ? "ffff:ffff:ffff:ffff::" : "255.255.255.0",
    family: v6 ? "IPv6" : "IPv4",
    mac: "00:00:00:00:00:00",
    internal,
    cidr: null,
    ...(v6 ? { scopeid: 0 } : {}),
  } as NetworkInterfaceInfo;
}

function fakeInterfaces(table: Record<string, string[]>) {
  let reads = 0;
  const read = () => {
    reads++;
    return Object.fromEntries(
      Object.entries(table).map(([name, addrs]) => [name, addrs.map((a) => info(a))]),
    );
  };
  return { read, reads: () => reads };
}

describe("createCandidateFilter", () => {
  const ifaces = fakeInterfaces({
    eth0: ["192.0.2.2", "2001:db8::2"],
    wg0: ["10.7.0.1", "fd07::1"],
    docker0: ["172.17.0.1"],
    dockerx: ["172.18.0.1"],
  });

  it("excludes loopback, link-local, unspecified and multicast by default", () => {
    const exclude = createCandidateFilter({
      excludeInterfaces: [],
      excludeAddresses: [],
      interfaces: ifaces.read,
    });
    for (const addr of [
      "127.0.0.1",
      "127.9.9.9",
      "::1",
      "169.254.1.1",
      "fe80::1",
      "fe80::1%eth0",
      "0.0.0.0",
      "::",
    ]) {
      expect(exclude(addr), addr).toBe(true);
    }
    for (const addr of ["224.0.0.1", "239.1.1.1", "255.255.255.255", "ff02::1", "::ffff:127.0.0.1"]) {
      expect(exclude(addr), addr).toBe(true);
    }
    for (const addr of ["192.0.2.2", "203.0.113.5", "2001:db8::2", "::ffff:192.0.2.9"]) {
      expect(exclude(addr), addr).toBe(false);
    }
  });

  it("excludes everything that is not a literal IP", () => {
    const exclude = createCandidateFilter({ excludeInterfaces: [], excludeAddresses: [] });
    for (const addr of ["", "localhost", "example.com", "1.2.3", "abcd.local", "1.2.3.4:80"]) {
      expect(exclude(addr), addr).toBe(true);
    }
  });

  it("allows loopback and link-local when asked (tests on one machine)", () => {
    const exclude = createCandidateFilter({
      excludeInterfaces: [],
      excludeAddresses: [],
      allowLoopback: true,
      allowLinkLocal: true,
    });
    expect(exclude("127.0.0.1")).toBe(false);
    expect(exclude("::1")).toBe(false);
    expect(exclude("169.254.3.3")).toBe(false);
    expect(exclude("0.0.0.0")).toBe(true);
  });

  it("excludes the addresses of named interfaces, with prefix patterns, in any notation", () => {
    const exclude = createCandidateFilter({
      excludeInterfaces: ["wg0", "docker*"],
      excludeAddresses: [],
      interfaces: ifaces.read,
    });
    expect(exclude("10.7.0.1")).toBe(true);
    expect(exclude("fd07::1")).toBe(true);
    expect(exclude("fd07:0:0::1")).toBe(true);
    expect(exclude("::ffff:10.7.0.1")).toBe(true);
    expect(exclude("172.17.0.1")).toBe(true);
    expect(exclude("172.18.0.1")).toBe(true);
    expect(exclude("10.7.0.2")).toBe(false); // the interface's address, not its subnet
    expect(exclude("192.0.2.2")).toBe(false);
  });

  it("excludes configured addresses and CIDR ranges (e.g. the tunnel's subnets)", () => {
    const exclude = createCandidateFilter({
      excludeInterfaces: [],
      excludeAddresses: ["10.7.0.0/24", "fd07::/64", "198.51.100.7"],
    });
    expect(exclude("10.7.0.200")).toBe(true);
    expect(exclude("10.7.1.1")).toBe(false);
    expect(exclude("fd07::abcd")).toBe(true);
    expect(exclude("fd08::1")).toBe(false);
    expect(exclude("198.51.100.7")).toBe(true);
    expect(exclude("198.51.100.8")).toBe(false);
  });

  it.each(["10.0.0.0/33", "fd00::/129", "wg0", "10.0.0.1/8/1", "10.0.0.0/x", ""])(
    "rejects the bad exclusion %j with a ConfigError coded bad-exclude-address",
    (entry) => {
      let thrown: unknown;
      try {
        createCandidateFilter({ excludeInterfaces: [], excludeAddresses: [entry] });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(ConfigError);
      expect(thrown).toMatchObject({ code: "bad-exclude-address" });
    },
  );

  it("re-reads interface addresses, at most once per refresh period", async () => {
    const table: Record<string, string[]> = { wg0: ["10.7.0.1"] };
    let reads = 0;
    const exclude = createCandidateFilter({
      excludeInterfaces: ["wg0"],
      excludeAddresses: [],
      refreshMs: 30,
      interfaces: () => {
        reads++;
        return Object.fromEntries(Object.entries(table).map(([n, a]) => [n, a.map((x) => info(x))]));
      },
    });
    expect(exclude("10.7.0.1")).toBe(true);
    table.wg0 = ["10.7.0.9"];
    expect(exclude("10.7.0.9")).toBe(false); // cached
    expect(exclude("10.7.0.9")).toBe(false);
    expect(reads).toBe(1);
    await new Promise((r) => setTimeout(r, 40));
    expect(exclude("10.7.0.9")).toBe(true);
    expect(exclude("10.7.0.1")).toBe(false);
    expect(reads).toBe(2);
  });

  it("answers alike after more distinct addresses than it keeps verdicts for (they come from the network)", () => {
    const exclude = createCandidateFilter({ excludeInterfaces: [], excludeAddresses: ["10.9.0.0/16"] });
    for (let i = 0; i < 10_000; i++) {
      const address = `10.${8 + (i & 1)}.${(i >> 8) & 255}.${i & 255}`;
      expect(exclude(address)).toBe((i & 1) === 1);
    }
    expect(exclude("10.9.0.1")).toBe(true);
    expect(exclude("10.8.0.1")).toBe(false);
  });

  it("reads os.networkInterfaces() by default: this machine's loopback interface can be excluded by name", () => {
    const exclude = createCandidateFilter({
      excludeInterfaces: ["lo"],
      excludeAddresses: [],
      allowLoopback: true,
    });
    expect(exclude("127.0.0.1")).toBe(true);
  });
});

describe("isPrivateAddress", () => {
  it.each([
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.10",
    "100.64.0.1",
    "169.254.1.1",
    "127.0.0.1",
    "fd00::1",
    "fe80::1%eth0",
    "::1",
    "::ffff:192.168.1.10",
    "not-an-ip",
  ])("%s is private", (address) => {
    expect(isPrivateAddress(address)).toBe(true);
  });

  it.each(["203.0.113.10", "172.32.0.1", "100.128.0.1", "8.8.8.8", "2001:db8::1", "::ffff:198.51.100.7"])(
    "%s is public",
    (address) => {
      expect(isPrivateAddress(address)).toBe(false);
    },
  );
});

describe("relayMayReach: which peer candidates our TURN relay may send to", () => {
  const relay = { type: "relay", host: "203.0.113.3" };

  it("the peer's srflx, relay and prflx candidates, whatever their address", () => {
    for (const type of ["srflx", "relay", "prflx"]) {
      expect(relayMayReach(relay, { type, host: "203.0.113.10" })).toBe(true);
      expect(relayMayReach(relay, { type, host: "10.0.0.5" })).toBe(true);
    }
  });

  it("the peer's public host candidates, never its private ones", () => {
    expect(relayMayReach(relay, { type: "host", host: "198.51.100.7" })).toBe(true);
    expect(relayMayReach(relay, { type: "host", host: "192.168.2.10" })).toBe(false);
    expect(relayMayReach(relay, { type: "host", host: "10.1.2.3" })).toBe(false);
    expect(relayMayReach(relay, { type: "host", host: "fd12::7" })).toBe(false);
  });

  it("a relay in a private network itself reaches private hosts (that network is what it serves)", () => {
    expect(relayMayReach({ type: "relay", host: "10.9.0.1" }, { type: "host", host: "10.1.2.3" })).toBe(true);
  });

  it("concerns relay candidates only: host and srflx sockets pair with anything", () => {
    expect(
      relayMayReach({ type: "host", host: "192.168.1.10" }, { type: "host", host: "192.168.1.11" }),
    ).toBe(true);
    expect(relayMayReach({ type: "srflx", host: "203.0.113.10" }, { type: "host", host: "10.1.2.3" })).toBe(
      true,
    );
  });
});
