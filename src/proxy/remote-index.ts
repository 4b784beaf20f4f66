// The remote address of each item (a peer's path), found by prefix: "which of 10,000 entries does a
// route change for 10.244.3.7/32 touch" costs two binary searches, not a walk over every entry. Kept as
// one sorted array per family, built at the first query (a hub's start sets 10,000 addresses and sorts
// them once: 14 ms) and then changed in place, an insert or removal per path that moved since the last
// query (a memmove each); more changes than INCREMENTAL_MAX since then: built again.
import { addressKey, type RoutePrefix } from "../wg/route-prefix.js";

/** Past this many changes since the last query, a sort is cheaper than inserting each. */
const INCREMENTAL_MAX = 256;

interface Sorted<T> {
  keys: string[];
  items: T[];
}

interface Change<T> {
  item: T;
  before: string | undefined;
  after: string | undefined;
}

export class RemoteIndex<T> {
  /** Each item's address key (8 hex digits for IPv4, 32 for IPv6). */
  private readonly keys = new Map<T, string>();
  /** IPv4, IPv6; null: built at the next query. */
  private sorted: [Sorted<T>, Sorted<T>] | null = null;
  /** What changed since `sorted` was brought up to date. */
  private changes: Change<T>[] = [];

  get size(): number {
    return this.keys.size;
  }

  /** Records the item's remote address (an address that is not an IP is forgotten). */
  set(item: T, address: string): void {
    const key = addressKey(address) ?? undefined;
    const before = this.keys.get(item);
    if (before === key) return;
    if (key === undefined) this.keys.delete(item);
    else this.keys.set(item, key);
    this.changed({ item, before, after: key });
  }

  delete(item: T): void {
    const before = this.keys.get(item);
    if (before === undefined) return;
    this.keys.delete(item);
    this.changed({ item, before, after: undefined });
  }

  clear(): void {
    this.keys.clear();
    this.sorted = null;
    this.changes = [];
  }

  /** The items whose address is inside one of `prefixes`, each once. */
  within(prefixes: Iterable<RoutePrefix>): Set<T> {
    const found = new Set<T>();
    const sorted = this.upToDate();
    for (const prefix of prefixes) {
      const family = sorted[prefix.family === 4 ? 0 : 1];
      for (let i = lowerBound(family.keys, prefix.first); i < family.keys.length; i++) {
        if (family.keys[i]! > prefix.last) break;
        found.add(family.items[i]!);
      }
    }
    return found;
  }

  private changed(change: Change<T>): void {
    if (this.sorted === null) return;
    this.changes.push(change);
    if (this.changes.length > INCREMENTAL_MAX) {
      this.sorted = null;
      this.changes = [];
    }
  }

  private upToDate(): [Sorted<T>, Sorted<T>] {
    if (this.sorted === null) {
      this.sorted = this.build();
      return this.sorted;
    }
    for (const { item, before, after } of this.changes) {
      if (before !== undefined) {
        const family = this.sorted[before.length === 8 ? 0 : 1];
        for (let i = lowerBound(family.keys, before); family.keys[i] === before; i++) {
          if (family.items[i] !== item) continue;
          family.keys.splice(i, 1);
          family.items.splice(i, 1);
          break;
        }
      }
      if (after !== undefined) {
        const family = this.sorted[after.length === 8 ? 0 : 1];
        const i = lowerBound(family.keys, after);
        family.keys.splice(i, 0, after);
        family.items.splice(i, 0, item);
      }
    }
    this.changes = [];
    return this.sorted;
  }

  private build(): [Sorted<T>, Sorted<T>] {
    const pairs: [[string, T][], [string, T][]] = [[], []];
    for (const [item, key] of this.keys) pairs[key.length === 8 ? 0 : 1].push([key, item]);
    const sorted = (list: [string, T][]): Sorted<T> => {
      list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      return { keys: list.map((p) => p[0]), items: list.map((p) => p[1]) };
    };
    return [sorted(pairs[0]), sorted(pairs[1])];
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
