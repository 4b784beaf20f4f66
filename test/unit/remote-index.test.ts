// RemoteIndex against a walk over every item: random sets, moves and deletions of IPv4 and IPv6
// remotes (many sharing an address, as peers behind one NAT do), queried by random prefixes, through
// both the in-place changes and the rebuild past INCREMENTAL_MAX.
import { describe, expect, it } from "vitest";
import { RemoteIndex } from "../../src/proxy/remote-index.js";
import { parsePrefix, prefixContains, type RoutePrefix } from "../../src/wg/route-prefix.js";
import { seededRandom } from "../support/seeded-random.js";

describe("RemoteIndex", () => {
  it.each([1, 2, 3])("finds exactly the items inside the prefixes (seed %i)", (seed) => {
    const next = seededRandom(seed);
    const int = (n: number) => Math.floor(next() * n);
    const address = () =>
      next() < 0.7
        ? `10.${int(4)}.${int(4)}.${int(8)}`
        : `2001:db8:${int(4).toString(16)}::${int(8).toString(16)}`;
    const prefix = (): RoutePrefix => {
      const text =
        next() < 0.7
          ? `10.${int(4)}.${int(4)}.${int(8)}/${[8, 16, 24, 30, 32][int(5)]}`
          : `2001:db8:${int(4)}::/${[32, 48, 126, 128][int(4)]}`;
      const p = parsePrefix(text);
      if (!p) throw new Error(text);
      return p;
    };
    const index = new RemoteIndex<number>();
    const truth = new Map<number, string>();
    for (let round = 0; round < 200; round++) {
      // Few changes between queries (in place), now and then many (rebuilt).
      const changes = round % 20 === 0 ? 400 : int(10);
      for (let c = 0; c < changes; c++) {
        const item = int(300);
        if (next() < 0.2) {
          index.delete(item);
          truth.delete(item);
        } else {
          const a = address();
          index.set(item, a);
          truth.set(item, a);
        }
      }
      const query = [prefix(), prefix()];
      const expected = [...truth].filter(([, a]) => query.some((p) => prefixContains(p, a))).map(([i]) => i);
      expect([...index.within(query)].sort((x, y) => x - y)).toEqual(expected.sort((x, y) => x - y));
      expect(index.size).toBe(truth.size);
    }
  });

  it("an address that is not an IP forgets the item", () => {
    const index = new RemoteIndex<string>();
    index.set("a", "198.51.100.7");
    index.within([]);
    index.set("a", "unresolved");
    expect(index.within([parsePrefix("default", 4)!]).size).toBe(0);
    expect(index.size).toBe(0);
  });
});
