// One line of `ip -o monitor link address route rule nexthop`, as what it tells about routing: a route of
// one prefix (whose change can move only the `ip route get` answers inside it), a rule, a link's state,
// an address, a nexthop object. Lines captured from iproute2 6.1 are in test/unit/monitor-line.test.ts.
import { isIP } from "node:net";
import { type Family, parsePrefix, type RoutePrefix } from "./route-prefix.js";

export type MonitorLine =
  /**
   * prefix null: a route line whose destination cannot be told for sure. nexthop: the nexthop object it
   * names (`nhid N`), or null.
   */
  | { kind: "route"; prefix: RoutePrefix | null; devices: string[]; nexthop: number | null }
  /** A nexthop object (`id N ...`); group: it is a group (its members changed, or it is new). */
  | { kind: "nexthop"; id: number; deleted: boolean; group: boolean }
  | { kind: "rule" }
  | {
      kind: "link";
      index: number;
      name: string;
      deleted: boolean;
      up: boolean;
      carrier: boolean;
      loopback: boolean;
      /** As the line gives it (null: none). */
      mtu: number | null;
    }
  | {
      kind: "address";
      index: number;
      name: string;
      linkLocal: boolean;
      deleted: boolean;
      /** As `ip` prints it, with its prefix length ("2001:db8::5/64"). */
      address: string;
      /**
       * What else the line says of it but its lifetimes (scope, flags such as tentative or deprecated,
       * label): a line that differs from the last one only in lifetimes (a router advertisement
       * renewing them) changes no route answer.
       */
      state: string;
    };

/** Route types `ip` prints before the destination (unicast is not printed, but accepted). */
const ROUTE_TYPES = new Set([
  "unicast",
  "local",
  "broadcast",
  "anycast",
  "multicast",
  "blackhole",
  "unreachable",
  "prohibit",
  "throw",
  "nat",
  "xresolve",
]);

const LINK = /^(\d+): ([^\s:@]+)(?:@[^\s:]+)?: <([^>]*)>/;
const ADDRESS = /^(\d+): (\S+)\s+(inet6?) (\S+)/;
const RULE = /^\d+:\t/;
const NEXTHOP = /^id (\d+)\b/;

export function parseMonitorLine(line: string): MonitorLine {
  const deleted = line.startsWith("Deleted ");
  const text = deleted ? line.slice(8) : line.startsWith("Replaced ") ? line.slice(9) : line;
  if (RULE.test(text)) return { kind: "rule" };
  const nexthop = NEXTHOP.exec(text);
  if (nexthop) {
    return { kind: "nexthop", id: Number(nexthop[1]), deleted, group: /\sgroup\s/.test(text) };
  }
  const link = LINK.exec(text);
  if (link) {
    const flags = link[3]!.split(",");
    return {
      kind: "link",
      index: Number(link[1]),
      name: link[2]!,
      deleted,
      up: flags.includes("UP"),
      carrier: flags.includes("LOWER_UP"),
      loopback: flags.includes("LOOPBACK"),
      mtu: mtuOf(text.slice(link[0].length)),
    };
  }
  const address = ADDRESS.exec(text);
  if (address) {
    const linkLocal = address[3] === "inet6" && /^fe[89ab]/i.test(address[4]!);
    return {
      kind: "address",
      index: Number(address[1]),
      name: address[2]!,
      linkLocal,
      deleted,
      address: address[4]!,
      state: addressState(text.slice(address[0].length)),
    };
  }
  const nhid = /\bnhid (\d+)/.exec(text);
  return {
    kind: "route",
    prefix: routePrefix(text),
    devices: devicesOf(text),
    nexthop: nhid ? Number(nhid[1]) : null,
  };
}

/** A link line's MTU (`mtu N` right after its flags), or null. */
function mtuOf(rest: string): number | null {
  const mtu = /^ mtu (\d+)\b/.exec(rest)?.[1];
  return mtu === undefined ? null : Number(mtu);
}

/** An address line's words after the address, without the lifetimes and `-o`'s line-joining backslashes. */
function addressState(rest: string): string {
  const words = rest.replaceAll("\\", " ").split(/\s+/).filter(Boolean);
  const kept: string[] = [];
  for (let i = 0; i < words.length; i++) {
    if (words[i] === "valid_lft" || words[i] === "preferred_lft") i++;
    else kept.push(words[i]!);
  }
  return kept.join(" ");
}

/** The destination of a route line (without "Deleted "), or null when it cannot be told for sure. */
function routePrefix(text: string): RoutePrefix | null {
  const tokens = text.split(/\s+/);
  let i = 0;
  if (ROUTE_TYPES.has(tokens[i] ?? "")) i++;
  const destination = tokens[i] ?? "";
  if (destination !== "default") return parsePrefix(destination);
  const family = defaultFamily(tokens);
  return family ? parsePrefix("default", family) : null;
}

/**
 * The family of a default route: its gateway's (an IPv4 route through an IPv6 gateway says "via inet6",
 * so a "via" naming a family is not trusted), else IPv6 when it has a preference (`pref`, printed for
 * IPv6 routes only); null: not sure.
 */
function defaultFamily(tokens: string[]): Family | null {
  const via = tokens.indexOf("via");
  if (via !== -1) {
    const family = isIP(tokens[via + 1] ?? "");
    return family === 4 || family === 6 ? family : null;
  }
  return tokens.includes("pref") ? 6 : null;
}

/** The devices a route line names (a multipath route names one per next hop). */
function devicesOf(text: string): string[] {
  const devices: string[] = [];
  for (const m of text.matchAll(/\bdev (\S+)/g)) devices.push(m[1]!);
  return devices;
}
