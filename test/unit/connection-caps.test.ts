// Per-address accounting of the introduction server's caps.
import { describe, expect, it } from "vitest";
import { AddressCounter, addressBucket } from "../../intro-server/connection-caps.js";

describe("addressBucket", () => {
  it("counts IPv4 (also IPv4-mapped) by address and IPv6 by /64", () => {
    expect(addressBucket("192.0.2.7")).toBe("192.0.2.7");
    expect(addressBucket("::ffff:192.0.2.7")).toBe("192.0.2.7");
    expect(addressBucket("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(addressBucket("2001:db8:1:2:ffff:ffff:ffff:ffff")).toBe("2001:db8:1:2::/64");
    expect(addressBucket("2001:0db8:0001:0002::9")).toBe("2001:db8:1:2::/64");
    expect(addressBucket("2001:db8:1:3::1")).toBe("2001:db8:1:3::/64");
    expect(addressBucket("::1")).toBe("0:0:0:0::/64");
    expect(addressBucket("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(addressBucket(undefined)).toBe("unknown");
  });
});

describe("AddressCounter", () => {
  it("refuses over the per-address cap, then over the total, and frees on remove", () => {
    const counter = new AddressCounter(2, 3);
    expect(counter.tryAdd("a")).toBe("ok");
    expect(counter.tryAdd("a")).toBe("ok");
    expect(counter.tryAdd("a")).toBe("address");
    expect(counter.tryAdd("b")).toBe("ok");
    expect(counter.tryAdd("c")).toBe("total");
    counter.remove("a");
    expect(counter.tryAdd("c")).toBe("ok");
    expect(counter.size).toBe(3);
  });

  it("adds amounts all or nothing and never goes below zero", () => {
    const counter = new AddressCounter(10, 100);
    expect(counter.tryAdd("a", 11)).toBe("address");
    expect(counter.count("a")).toBe(0);
    expect(counter.tryAdd("a", 7)).toBe("ok");
    counter.remove("a", 50);
    expect(counter.count("a")).toBe(0);
    expect(counter.size).toBe(0);
  });
});
