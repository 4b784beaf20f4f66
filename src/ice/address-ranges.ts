// Addresses and CIDR ranges as sorted, merged intervals, checked by binary search. Node's BlockList
// checks its rules one by one, and the tunnel's ranges are one or two per peer: a host with 10,000
// peers scanned 10,000 rules for every candidate and STUN message it judged (issue 15). The same
// interface as BlockList's addAddress/addSubnet/check; literal addresses are assumed valid (isIP).

type Family = "ipv4" | "ipv6";

/** Intervals of one family: added as they come, sorted and merged at the first check after. */
class Intervals<T extends number | bigint> {
  private added: [T, T][] = [];
  private starts: T[] = [];
  private ends: T[] = [];
  private dirty = false;

  /** `after`: the value right after another (adjacent intervals merge). */
  constructor(private readonly after: (value: T) => T) {}

  add(start: T, end: T): void {
    this.added.push([start, end]);
    this.dirty = true;
  }

  has(value: T): boolean {
    if (this.dirty) this.compile();
    let lo = 0;
    let hi = this.starts.length - 1;
    // The last interval starting at or before `value`.
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if ((this.starts[mid] as T) <= value) lo = mid + 1;
      else hi = mid - 1;
    }
    return hi >= 0 && value <= (this.ends[hi] as T);
  }

  private compile(): void {
    const sorted = [...this.added].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const starts: T[] = [];
    const ends: T[] = [];
    for (const [start, end] of sorted) {
      const last = ends.length - 1;
      // Overlapping or adjacent to the one before: one interval.
      if (last >= 0 && start <= this.after(ends[last] as T)) {
        if (end > (ends[last] as T)) ends[last] = end;
      } else {
        starts.push(start);
        ends.push(end);
      }
    }
    this.starts = starts;
    this.ends = ends;
    this.dirty = false;
  }
}

export class AddressRanges {
  private readonly v4 = new Intervals<number>((v) => v + 1);
  private readonly v6 = new Intervals<bigint>((v) => v + 1n);

  addAddress(address: string, type: Family): void {
    this.addSubnet(address, type === "ipv4" ? 32 : 128, type);
  }

  addSubnet(address: string, prefix: number, type: Family): void {
    if (type === "ipv4") {
      const size = 2 ** (32 - prefix);
      const start = Math.floor(ipv4Number(address) / size) * size;
      this.v4.add(start, start + size - 1);
    } else {
      const shift = BigInt(128 - prefix);
      const start = (ipv6Number(address) >> shift) << shift;
      this.v6.add(start, start + (1n << shift) - 1n);
    }
  }

  check(address: string, type: Family): boolean {
    return type === "ipv4" ? this.v4.has(ipv4Number(address)) : this.v6.has(ipv6Number(address));
  }
}

function ipv4Number(address: string): number {
  const [a = 0, b = 0, c = 0, d = 0] = address.split(".").map(Number);
  return ((a * 256 + b) * 256 + c) * 256 + d;
}

/** An IPv6 address as a 128-bit number ("::" and a trailing dotted IPv4 part expanded). */
function ipv6Number(address: string): bigint {
  let text = address;
  const tail = text.slice(text.lastIndexOf(":") + 1);
  if (tail.includes(".")) {
    const v4 = ipv4Number(tail);
    text = `${text.slice(0, text.length - tail.length)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [left = "", right] = text.split("::");
  const head = left ? left.split(":") : [];
  const rest = right === undefined ? [] : right ? right.split(":") : [];
  const zeros = right === undefined ? [] : Array<string>(8 - head.length - rest.length).fill("0");
  let value = 0n;
  for (const group of [...head, ...zeros, ...rest])
    value = (value << 16n) | BigInt(Number.parseInt(group, 16) || 0);
  return value;
}
