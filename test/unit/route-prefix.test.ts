// Route prefixes as key ranges: containment for IPv4, IPv6 (compressed, with an IPv4 tail) and default.
import { describe, expect, it } from "vitest";
import { addressKey, parsePrefix, prefixContains, type RoutePrefix } from "../../src/wg/route-prefix.js";

const prefix = (text: string, family?: 4 | 6): RoutePrefix => {
  const p = parsePrefix(text, family);
  if (!p) throw new Error(`${text} did not parse`);
  return p;
};

describe("addressKey", () => {
  it.each([
    ["192.0.2.1", "c0000201"],
    ["0.0.0.0", "00000000"],
    ["2001:db8::1", "20010db8000000000000000000000001"],
    ["::", "00000000000000000000000000000000"],
    ["fe80::1:2", "fe800000000000000000000000010002"],
    ["::ffff:192.0.2.1", "00000000000000000000ffffc0000201"],
    ["1:2:3:4:5:6:7:8", "00010002000300040005000600070008"],
    ["fe80::1%eth0", "fe800000000000000000000000000001"],
  ])("%s -> %s", (address, key) => {
    expect(addressKey(address)).toBe(key);
  });

  it("is null for what is not an address", () => {
    expect(addressKey("example.com")).toBeNull();
    expect(addressKey("1.2.3")).toBeNull();
  });
});

describe("prefixContains", () => {
  it.each([
    ["198.18.0.0/16", "198.18.255.255", true],
    ["198.18.0.0/16", "198.18.0.0", true],
    ["198.18.0.0/16", "198.19.0.0", false],
    ["198.18.0.0/16", "198.17.255.255", false],
    ["198.18.5.7", "198.18.5.7", true],
    ["198.18.5.7", "198.18.5.8", false],
    ["198.18.5.7/32", "198.18.5.7", true],
    ["10.0.0.0/8", "10.200.1.1", true],
    ["0.0.0.0/0", "203.0.113.9", true],
    ["0.0.0.0/0", "2001:db8::1", false],
    ["2001:db8::/32", "2001:db8:ffff::1", true],
    ["2001:db8::/32", "2001:db9::1", false],
    ["2001:db8:1::5", "2001:db8:1::5", true],
    ["2001:db8:1::5", "2001:db8:1::6", false],
    ["2001:db8:2::/48", "2001:db8:2:ffff:ffff:ffff:ffff:ffff", true],
    ["2001:db8::/32", "198.18.0.1", false],
    ["::/0", "::1", true],
  ])("%s contains %s: %s", (p, address, inside) => {
    expect(prefixContains(prefix(p), address)).toBe(inside);
  });

  it("normalises a prefix written with host bits", () => {
    expect(prefixContains(prefix("198.18.5.9/24"), "198.18.5.200")).toBe(true);
  });

  it("default is 0/0 of the family given, and nothing without one", () => {
    expect(prefixContains(prefix("default", 4), "198.51.100.7")).toBe(true);
    expect(prefixContains(prefix("default", 4), "2001:db8::7")).toBe(false);
    expect(prefixContains(prefix("default", 6), "2001:db8::7")).toBe(true);
    expect(prefixContains(prefix("default", 6), "198.51.100.7")).toBe(false);
    expect(parsePrefix("default")).toBeNull();
  });

  it.each(["198.18.0.0/33", "2001:db8::/129", "198.18.0.0/x", "nexthop", "dev", ""])(
    "%s is not a prefix",
    (text) => {
      expect(parsePrefix(text)).toBeNull();
    },
  );
});
