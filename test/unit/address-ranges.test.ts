// AddressRanges against Node's BlockList, the reference it replaces for the tunnel's ranges: the same
// answer for every address, over random ranges of both families (seeded, reproducible).
import { BlockList } from "node:net";
import { describe, expect, it } from "vitest";
import { AddressRanges } from "../../src/ice/address-ranges.js";
import { seededRandom } from "../support/seeded-random.js";

const v4 = (r: () => number) =>
  // Clustered in 10.0.0.0/14 so that ranges overlap and addresses fall near their edges.
  `10.${Math.floor(r() * 4)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}`;
const v6 = (r: () => number) => {
  const g = () => Math.floor(r() * 65536).toString(16);
  // Written with "::" in different places, as users and WireGuard do.
  return r() < 0.5 ? `fd00:${g()}::${g()}:${g()}` : `fd00:${g()}:0:0:0:0:${g()}:${g()}`;
};

describe("AddressRanges", () => {
  it("answers as BlockList does, for IPv4 and IPv6 ranges of every size", () => {
    const r = seededRandom(16);
    const ours = new AddressRanges();
    const reference = new BlockList();
    for (let i = 0; i < 600; i++) {
      const ipv6 = r() < 0.4;
      const address = ipv6 ? v6(r) : v4(r);
      const type = ipv6 ? "ipv6" : "ipv4";
      const prefix = ipv6 ? 96 + Math.floor(r() * 33) : 14 + Math.floor(r() * 19);
      if (r() < 0.3) {
        ours.addAddress(address, type);
        reference.addAddress(address, type);
      } else {
        ours.addSubnet(address, prefix, type);
        reference.addSubnet(address, prefix, type);
      }
    }
    let hits = 0;
    for (let i = 0; i < 20_000; i++) {
      const ipv6 = r() < 0.4;
      const address = ipv6 ? v6(r) : v4(r);
      const type = ipv6 ? "ipv6" : "ipv4";
      const expected = reference.check(address, type);
      if (expected) hits++;
      expect(ours.check(address, type), `${address}`).toBe(expected);
    }
    // Both answers occur, so the comparison says something.
    expect(hits).toBeGreaterThan(1000);
    expect(hits).toBeLessThan(19_000);
  });

  it("takes a range at its edges, merges adjacent ones, and reads every IPv6 notation", () => {
    const ranges = new AddressRanges();
    ranges.addSubnet("10.1.2.0", 24, "ipv4");
    ranges.addSubnet("10.1.3.0", 24, "ipv4");
    expect(ranges.check("10.1.1.255", "ipv4")).toBe(false);
    expect(ranges.check("10.1.2.0", "ipv4")).toBe(true);
    expect(ranges.check("10.1.3.255", "ipv4")).toBe(true);
    expect(ranges.check("10.1.4.0", "ipv4")).toBe(false);
    ranges.addAddress("fd00::2", "ipv6");
    expect(ranges.check("fd00:0::2", "ipv6")).toBe(true);
    expect(ranges.check("fd00:0:0:0:0:0:0:2", "ipv6")).toBe(true);
    expect(ranges.check("fd00::3", "ipv6")).toBe(false);
    ranges.addSubnet("64:ff9b::", 96, "ipv6");
    expect(ranges.check("64:ff9b::192.0.2.1", "ipv6")).toBe(true);
    expect(ranges.check("64:ff9b::1:0:0", "ipv6")).toBe(false);
    const everything = new AddressRanges();
    everything.addSubnet("0.0.0.0", 0, "ipv4");
    everything.addSubnet("::", 0, "ipv6");
    expect(everything.check("255.255.255.255", "ipv4")).toBe(true);
    expect(everything.check("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6")).toBe(true);
    expect(new AddressRanges().check("10.0.0.1", "ipv4")).toBe(false);
  });
});
