/**
 * Counting what clients hold (connections, declared keys) per source address and in total, so that
 * one address, or everyone together, cannot take more than its cap of the server's memory.
 */
import { isIPv4, isIPv6 } from "node:net";

/**
 * The bucket an address is counted in: IPv4 as is, IPv6 by its /64 (one customer's usual
 * allocation, so that an attacker with a /64 cannot use each address as a fresh budget).
 */
export function addressBucket(remoteAddress: string | undefined): string {
  if (!remoteAddress) return "unknown";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remoteAddress);
  if (mapped && isIPv4(mapped[1]!)) return mapped[1]!;
  if (!isIPv6(remoteAddress)) return remoteAddress;
  return `${expandIPv6(remoteAddress).slice(0, 4).join(":")}::/64`;
}

/** The eight 16-bit groups of an IPv6 address, as lower-case hex without leading zeros. */
function expandIPv6(address: string): string[] {
  const withoutZone = address.split("%")[0]!;
  const [head, tail] = withoutZone.includes("::") ? withoutZone.split("::") : [withoutZone, undefined];
  const parse = (part: string | undefined) => (part ? part.split(":") : []);
  let headGroups = parse(head);
  let tailGroups = parse(tail);
  // An embedded IPv4 tail (::ffff:1.2.3.4 style) is two groups.
  const convert = (groups: string[]) =>
    groups.flatMap((group) => {
      if (!group.includes(".")) return [group];
      const [a, b, c, d] = group.split(".").map(Number) as [number, number, number, number];
      return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
    });
  headGroups = convert(headGroups);
  tailGroups = convert(tailGroups);
  const missing = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(Math.max(missing, 0)).fill("0"), ...tailGroups];
  return groups.map((group) => Number.parseInt(group || "0", 16).toString(16));
}

export type CapVerdict = "ok" | "address" | "total";

/** Counts per address bucket and in total; `tryAdd` refuses what would go over either cap. */
export class AddressCounter {
  private readonly counts = new Map<string, number>();
  private sum = 0;

  constructor(
    private readonly perAddress: number,
    private readonly total: number,
  ) {}

  tryAdd(bucket: string, amount = 1): CapVerdict {
    const current = this.counts.get(bucket) ?? 0;
    if (current + amount > this.perAddress) return "address";
    if (this.sum + amount > this.total) return "total";
    this.counts.set(bucket, current + amount);
    this.sum += amount;
    return "ok";
  }

  remove(bucket: string, amount = 1): void {
    const current = this.counts.get(bucket) ?? 0;
    const taken = Math.min(current, amount);
    if (current - taken === 0) this.counts.delete(bucket);
    else this.counts.set(bucket, current - taken);
    this.sum -= taken;
  }

  count(bucket: string): number {
    return this.counts.get(bucket) ?? 0;
  }

  get size(): number {
    return this.sum;
  }
}
