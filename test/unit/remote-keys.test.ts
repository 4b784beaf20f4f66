// RemoteKeys: which peers' path remotes ("address:port", "[address]:port") are inside the prefixes of a
// routing report, asked again with the remotes parsed before, and after they changed.
import { describe, expect, it } from "vitest";
import { RemoteKeys } from "../../src/wg/remote-keys.js";
import { parsePrefix, type RoutePrefix } from "../../src/wg/route-prefix.js";

const prefix = (text: string, family?: 4 | 6): RoutePrefix => {
  const p = parsePrefix(text, family);
  if (!p) throw new Error(text);
  return p;
};

describe("RemoteKeys.peersInside", () => {
  const remotes: Array<[string, string | null | undefined]> = [
    ["a", "198.51.100.7:51820"],
    ["b", undefined],
    ["c", null],
    ["d", "[2001:db8:1::5]:3478"],
    ["e", "relay via TURN"],
    ["f", "198.51.100.9:51820"],
  ];

  it("names the peers whose remote is inside one of the prefixes", () => {
    const keys = new RemoteKeys();
    expect(keys.peersInside(remotes, [prefix("10.0.0.0/8"), prefix("198.51.100.0/24")])).toEqual(["a", "f"]);
    expect(keys.peersInside(remotes, [prefix("198.51.100.9")])).toEqual(["f"]);
    expect(keys.peersInside(remotes, [prefix("2001:db8:1::/48")])).toEqual(["d"]);
    expect(keys.peersInside(remotes, [prefix("default", 6)])).toEqual(["d"]);
  });

  it("names none when no remote is inside, or there is no prefix", () => {
    const keys = new RemoteKeys();
    expect(keys.peersInside(remotes, [prefix("10.244.0.7"), prefix("2001:db8:2::/48")])).toEqual([]);
    expect(keys.peersInside(remotes, [])).toEqual([]);
    expect(keys.peersInside([], [prefix("default", 4)])).toEqual([]);
  });

  it("answers for the remotes as they are now, whatever it parsed before", () => {
    const keys = new RemoteKeys();
    const first = Array.from({ length: 3000 }, (_, i): [string, string] => [
      `p${i}`,
      `10.1.${i >> 8}.${i & 255}:51820`,
    ]);
    expect(keys.peersInside(first, [prefix("192.0.2.0/24")])).toEqual([]);
    const moved = Array.from({ length: 10 }, (_, i): [string, string] => [`p${i}`, `192.0.2.${i}:51820`]);
    expect(keys.peersInside(moved, [prefix("10.1.0.0/16")])).toEqual([]);
    expect(keys.peersInside(moved, [prefix("192.0.2.5")])).toEqual(["p5"]);
  });
});
