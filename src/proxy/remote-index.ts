// The remote address of each item (a peer's path), found by prefix: "which of 10,000 entries does a
// route change for 10.244.3.7/32 touch" costs two binary searches, not a walk over every entry. The
// sorted arrays are rebuilt at the first query after an item's address changed (a path moved), not on
// every change: a hub's start sets 10,000 addresses and sorts them once.
import { addressKey, type RoutePrefix } from "../wg/route-prefix.js";

export class RemoteIndex<T> {
  /** Each item's address key (8 hex digits for IPv4, 32 for IPv6). */
  private readonly keys = new Map<T, string>();
  /** By family (key length), sorted by key; null: to be rebuilt. */
  private sorted: { keys: string[]; items: T[] }[] | null = null;

  get size(): number {
    return this.keys.size;
  }

  /** Records the item's remote address (an address that is not an IP is forgotten). */
  set(item: T, address: string): void {
    const key = addressKey(address);
    if (key === null) {
      this.delete(item);
      return;
    }
    if (this.keys.get(item) === key) return;
    this.keys.set(item, key);
    this.sorted = null;
  }

  delete(item: T): void {
    if (this.keys.delete(item)) this.sorted = null;
  }

  clear(): void {
    this.keys.clear();
    this.sorted = null;
  }

  /** The items whose address is inside one of `prefixes`, each once. */
  within(prefixes: Iterable<RoutePrefix>): Set<T> {
    const found = new Set<T>();
    const sorted = this.build();
    for (const prefix of prefixes) {
      const family = sorted[prefix.family === 4 ? 0 : 1]!;
      for (let i = lowerBound(family.keys, prefix.first); i < family.keys.length; i++) {
        if (family.keys[i]! > prefix.last) break;
        found.add(family.items[i]!);
      }
    }
    return found;
  }

  private build(): { keys: string[]; items: T[] }[] {
    if (this.sorted) return this.sorted;
    const pairs: [string, T][][] = [[], []];
    for (const [item, key] of this.keys) pairs[key.length === 8 ? 0 : 1]!.push([key, item]);
    this.sorted = pairs.map((list) => {
      list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      return { keys: list.map((p) => p[0]), items: list.map((p) => p[1]) };
    });
    return this.sorted;
  }
}

/** The first index whose key is not below `key`. */
function lowerBound(keys: string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
