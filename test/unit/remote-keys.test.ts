// RemoteKeys: whether a peer's path remote ("address:port", "[address]:port") is inside the prefixes of
// a routing report, asked again with the remotes parsed before, and after they changed.
import { describe, expect, it } from "vitest";
import { RemoteKeys } from "../../src/wg/remote-keys.js";
import { parsePrefix, type RoutePrefix } from "../../src/wg/route-prefix.js";

const prefix = (text: string, family?: 4 | 6): RoutePrefix => {
  const p = parsePrefix(text, family);
  if (!p) throw new Error(text);
  return p;
};

describe("RemoteKeys.anyInside", () => {
  const remotes = ["198.51.100.7:51820", undefined, null, "[2001:db8:1::5]:3478", "relay via TURN"];

  it("is true when a remote is inside one of the prefixes", () => {
    const keys = new RemoteKeys();
    expect(keys.anyInside(remotes, [prefix("10.0.0.0/8"), prefix("198.51.100.0/24")])).toBe(true);
    expect(keys.anyInside(remotes, [prefix("2001:db8:1::/48")])).toBe(true);
    expect(keys.anyInside(remotes, [prefix("default", 6)])).toBe(true);
  });

  it("is false when none is, or there is no prefix", () => {
    const keys = new RemoteKeys();
    expect(keys.anyInside(remotes, [prefix("10.244.0.7"), prefix("2001:db8:2::/48")])).toBe(false);
    expect(keys.anyInside(remotes, [])).toBe(false);
    expect(keys.anyInside([], [prefix("default", 4)])).toBe(false);
  });

  it("answers for the remotes as they are now, whatever it parsed before", () => {
    const keys = new RemoteKeys();
    const first = Array.from({ length: 3000 }, (_, i) => `10.1.${i >> 8}.${i & 255}:51820`);
    expect(keys.anyInside(first, [prefix("192.0.2.0/24")])).toBe(false);
    const moved = Array.from({ length: 10 }, (_, i) => `192.0.2.${i}:51820`);
    expect(keys.anyInside(moved, [prefix("10.1.0.0/16")])).toBe(false);
    expect(keys.anyInside(moved, [prefix("192.0.2.5")])).toBe(true);
  });
});
