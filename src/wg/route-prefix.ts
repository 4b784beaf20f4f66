// Route prefixes and addresses as fixed-width hex keys (8 digits for IPv4, 32 for IPv6), so that an
// address is inside a prefix exactly when its key lies between the prefix's first and last keys, and a
// sorted array of keys answers "which addresses are inside" with two binary searches.
import { isIP } from "node:net";

export type Family = 4 | 6;

/** A route's destination: every address from `first` to `last` (keys, see `addressKey`). */
export interface RoutePrefix {
  family: Family;
  length: number;
  first: string;
  last: string;
}

const HEX_DIGITS: Record<Family, number> = { 4: 8, 6: 32 };
const BITS: Record<Family, number> = { 4: 32, 6: 128 };

/** The 8 groups of an IPv6 address (no zone), or null. */
function ipv6Groups(address: string): number[] | null {
  let text = address;
  const tail: number[] = [];
  // An IPv4 tail (::ffff:192.0.2.1) is two groups.
  const v4 = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const bytes = v4[2]!.split(".").map(Number);
    tail.push((bytes[0]! << 8) | bytes[1]!, (bytes[2]! << 8) | bytes[3]!);
    text = v4[1]!.endsWith("::") ? v4[1]! : v4[1]!.slice(0, -1);
  }
  const parse = (part: string): number[] =>
    part === "" ? [] : part.split(":").map((g) => Number.parseInt(g, 16));
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  const given = head.length + rest.length + tail.length;
  if (halves.length === 1 ? given !== 8 : given > 7) return null;
  return [...head, ...new Array<number>(8 - given).fill(0), ...rest, ...tail];
}

/**
 * The key of an IP address (IPv4, IPv6, or IPv4-mapped IPv6 as IPv6), or null for anything else. A
 * scoped IPv6 address (fe80::1%eth0) is keyed as its address: routes are by address, not by zone.
 */
export function addressKey(scoped: string): string | null {
  const zone = scoped.indexOf("%");
  const address = zone === -1 ? scoped : scoped.slice(0, zone);
  const family = isIP(address);
  if (family === 4) {
    let key = "";
    for (const byte of address.split(".")) key += Number(byte).toString(16).padStart(2, "0");
    return key;
  }
  if (family !== 6) return null;
  const groups = ipv6Groups(address);
  if (!groups) return null;
  let key = "";
  for (const g of groups) key += g.toString(16).padStart(4, "0");
  return key;
}

/** `text` as a prefix: "ADDR/LEN", a host "ADDR", or "default" (0/0 of `family`); null if not one. */
export function parsePrefix(text: string, family?: Family): RoutePrefix | null {
  if (text === "default") return family ? prefixOf(family, 0n, 0) : null;
  const slash = text.indexOf("/");
  const address = slash === -1 ? text : text.slice(0, slash);
  const f = isIP(address);
  if (f !== 4 && f !== 6) return null;
  const lengthText = slash === -1 ? String(BITS[f]) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lengthText)) return null;
  const length = Number(lengthText);
  const key = addressKey(address);
  if (key === null || length > BITS[f]) return null;
  return prefixOf(f, BigInt(`0x${key}`), length);
}

function prefixOf(family: Family, value: bigint, length: number): RoutePrefix {
  const hostBits = BigInt(BITS[family] - length);
  const hostMask = (1n << hostBits) - 1n;
  const first = value & ~hostMask & ((1n << BigInt(BITS[family])) - 1n);
  const hex = (v: bigint) => v.toString(16).padStart(HEX_DIGITS[family], "0");
  return { family, length, first: hex(first), last: hex(first | hostMask) };
}

/** Whether `address` is inside `prefix` (false for another family or not an address). */
export function prefixContains(prefix: RoutePrefix, address: string): boolean {
  const key = addressKey(address);
  return (
    key !== null && key.length === HEX_DIGITS[prefix.family] && key >= prefix.first && key <= prefix.last
  );
}

/** One spelling of a prefix, for sets of them: "4:c0a80000/16". */
export function prefixId(prefix: RoutePrefix): string {
  return `${prefix.family}:${prefix.first}/${prefix.length}`;
}
