// Which addresses may appear in ICE candidates (ours and the peer's). werift-ice gathers a host candidate
// for every non-internal interface address except those of interfaces named tun*, tap*, veth*, vmnet*,
// ipsec*, utun*, and has no option to exclude more, so candidates are filtered after gathering (see
// IceSession). A WireGuard interface's own addresses must never become candidates: ICE would then run
// through the very tunnel it is meant to carry.
import { BlockList, isIP } from "node:net";
import { type NetworkInterfaceInfo, networkInterfaces } from "node:os";
import { ConfigError } from "../errors.js";
import { AddressRanges } from "./address-ranges.js";

/** Verdicts a filter keeps: far more than the addresses a host's peers use at a time. */
const VERDICTS_MAX = 4096;

/** Returns true when `address` (a literal IP) must not be used as an ICE candidate. */
export type AddressExclusion = (address: string) => boolean;

export interface CandidateFilterOptions {
  /** Interface names whose addresses are excluded; a trailing `*` matches a prefix (`docker*`). */
  excludeInterfaces: string[];
  /** Addresses or CIDR ranges (IPv4 or IPv6) excluded, e.g. the WireGuard tunnel's subnets. */
  excludeAddresses: string[];
  /** Loopback is excluded unless this is set (tests on one machine). */
  allowLoopback?: boolean;
  /** Link-local (169.254/16, fe80::/10) is excluded unless this is set. */
  allowLinkLocal?: boolean;
  /** Source of interface addresses; `os.networkInterfaces` by default (injectable for tests). */
  interfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
  /** Interface addresses are re-read at most this often (addresses change; reading costs a syscall). */
  refreshMs?: number;
}

// Ranges that are never usable as a peer-to-peer address, whatever the configuration.
const ALWAYS_EXCLUDED = new BlockList();
ALWAYS_EXCLUDED.addSubnet("0.0.0.0", 8, "ipv4"); // "this network", incl. unspecified
ALWAYS_EXCLUDED.addSubnet("224.0.0.0", 4, "ipv4"); // multicast
ALWAYS_EXCLUDED.addSubnet("240.0.0.0", 4, "ipv4"); // reserved, incl. broadcast
ALWAYS_EXCLUDED.addAddress("::", "ipv6");
ALWAYS_EXCLUDED.addSubnet("ff00::", 8, "ipv6"); // multicast

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

const LINK_LOCAL = new BlockList();
LINK_LOCAL.addSubnet("169.254.0.0", 16, "ipv4");
LINK_LOCAL.addSubnet("fe80::", 10, "ipv6");

// Addresses that reach only a private network: RFC 1918, CGNAT (RFC 6598), link-local, IPv6 ULA.
const PRIVATE = new BlockList();
PRIVATE.addSubnet("10.0.0.0", 8, "ipv4");
PRIVATE.addSubnet("172.16.0.0", 12, "ipv4");
PRIVATE.addSubnet("192.168.0.0", 16, "ipv4");
PRIVATE.addSubnet("100.64.0.0", 10, "ipv4");
PRIVATE.addSubnet("169.254.0.0", 16, "ipv4");
PRIVATE.addSubnet("fc00::", 7, "ipv6");
PRIVATE.addSubnet("fe80::", 10, "ipv6");

/**
 * True for an address of a private network (RFC 1918, CGNAT, link-local, ULA, and loopback), which a
 * server on the internet cannot (or, hardened, will not) send to. Not an IP literal: true as well.
 */
export function isPrivateAddress(address: string): boolean {
  const ip = normalize(address);
  if (!ip) return true;
  return PRIVATE.check(ip.address, ip.type) || LOOPBACK.check(ip.address, ip.type);
}

/** The type and address of an ICE candidate, as far as pairing is concerned. */
export interface CandidateAddress {
  readonly type: string;
  readonly host: string;
}

/**
 * Whether a check (and then data) from our relay candidate `relay` to the peer's `remote` may be sent
 * through the TURN server. Only to addresses the server can reach: the peer's server-reflexive, relay
 * and peer-reflexive candidates (seen from the internet, or by the server itself), and its public host
 * candidates. A private host candidate (10.x behind the peer's NAT) names some other network as seen
 * from the server: coturn on a host without a route there fails to send and closes the whole
 * allocation (ENETUNREACH, EINVAL on a blackhole route), or refuses it (denied-peer-ip). The one
 * exception is a relay address that is private itself: that TURN server lives in a private network and
 * private peers are what it serves.
 *
 * Nothing is lost where the server and the peer share a private network: the same peer is also
 * reached through its relay candidate (when it allocates on that server) or our relay from its srflx,
 * and a peer on our own private network is reached directly over host candidates.
 */
export function relayMayReach(relay: CandidateAddress, remote: CandidateAddress): boolean {
  if (relay.type !== "relay" || remote.type !== "host") return true;
  return !isPrivateAddress(remote.host) || isPrivateAddress(relay.host);
}

/** An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is judged as the IPv4 address it carries. */
function normalize(address: string): { address: string; type: "ipv4" | "ipv6" } | null {
  const bare = address.split("%")[0] ?? address; // scope id of a link-local IPv6 address
  const family = isIP(bare);
  if (family === 4) return { address: bare, type: "ipv4" };
  if (family !== 6) return null;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  if (mapped?.[1]) return { address: mapped[1], type: "ipv4" };
  return { address: bare, type: "ipv6" };
}

function parseRange(entry: string, list: AddressRanges): void {
  const [addr, prefixText, ...rest] = entry.trim().split("/");
  const ip = addr ? normalize(addr) : null;
  if (!ip || rest.length > 0) {
    throw new ConfigError(
      "bad-exclude-address",
      `--exclude-address ${entry}: not an IP address or CIDR range`,
    );
  }
  if (prefixText === undefined) {
    list.addAddress(ip.address, ip.type);
    return;
  }
  const max = ip.type === "ipv4" ? 32 : 128;
  const prefix = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefix > max) {
    throw new ConfigError("bad-exclude-address", `--exclude-address ${entry}: prefix must be 0..${max}`);
  }
  list.addSubnet(ip.address, prefix, ip.type);
}

function nameMatcher(patterns: string[]): (name: string) => boolean {
  const exact = new Set(patterns.filter((p) => !p.endsWith("*")));
  const prefixes = patterns.filter((p) => p.endsWith("*")).map((p) => p.slice(0, -1));
  return (name) => exact.has(name) || prefixes.some((p) => name.startsWith(p));
}

/**
 * Builds the exclusion used for local and remote candidates: loopback, link-local, unspecified and
 * multicast addresses, the addresses of the named interfaces (re-read as they change), and the given
 * addresses and ranges. Throws ConfigError for a malformed address or range.
 */
export function createCandidateFilter(options: CandidateFilterOptions): AddressExclusion {
  // The tunnel's ranges: one or more per peer, thousands at a hub (address-ranges.ts).
  const configured = new AddressRanges();
  for (const entry of options.excludeAddresses) parseRange(entry, configured);
  const excludedName = nameMatcher(options.excludeInterfaces);
  const readInterfaces = options.interfaces ?? networkInterfaces;
  const refreshMs = options.refreshMs ?? 1000;

  // A BlockList compares parsed addresses, so "fd00::2" and "fd00:0::2" are the same.
  let interfaceAddresses = new BlockList();
  let interfaceKey = "";
  let readAt = Number.NEGATIVE_INFINITY;
  // Verdicts by address as given: every STUN check asks about the same few addresses (the peers'
  // candidates), and one answer costs about 9 us of BlockList checks. Dropped when the interfaces'
  // addresses change; cleared when full, since the addresses come from the network.
  const verdicts = new Map<string, boolean>();
  const refreshInterfaces = (): void => {
    const now = Date.now();
    if (now - readAt < refreshMs) return;
    readAt = now;
    const addresses: Array<{ address: string; type: "ipv4" | "ipv6" }> = [];
    for (const [name, infos] of Object.entries(readInterfaces())) {
      if (!excludedName(name)) continue;
      for (const info of infos ?? []) {
        const ip = normalize(info.address);
        if (ip) addresses.push(ip);
      }
    }
    const key = addresses.map((ip) => ip.address).join(" ");
    if (key === interfaceKey) return;
    interfaceKey = key;
    const next = new BlockList();
    for (const ip of addresses) next.addAddress(ip.address, ip.type);
    interfaceAddresses = next;
    verdicts.clear();
  };

  const judge = (address: string): boolean => {
    const ip = normalize(address);
    if (!ip) return true;
    if (ALWAYS_EXCLUDED.check(ip.address, ip.type)) return true;
    if (!options.allowLoopback && LOOPBACK.check(ip.address, ip.type)) return true;
    if (!options.allowLinkLocal && LINK_LOCAL.check(ip.address, ip.type)) return true;
    if (configured.check(ip.address, ip.type)) return true;
    return options.excludeInterfaces.length > 0 && interfaceAddresses.check(ip.address, ip.type);
  };

  return (address) => {
    if (options.excludeInterfaces.length > 0) refreshInterfaces();
    const known = verdicts.get(address);
    if (known !== undefined) return known;
    const verdict = judge(address);
    if (verdicts.size >= VERDICTS_MAX) verdicts.clear();
    verdicts.set(address, verdict);
    return verdict;
  };
}
