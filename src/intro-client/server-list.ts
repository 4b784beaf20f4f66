/**
 * The introduction servers a client may use, one at a time: every `--intro` URL in the order given, a
 * host name that resolves to several addresses counting as one server per address (connected to by
 * address, the name kept as TLS servername and Host header).
 *
 * Order: the client starts at the first server and, when it goes away, moves to the next, wrapping
 * around. Not a random start point: servers that are not clustered only introduce peers connected to
 * the same one, so every client must prefer the same server; a cluster is indifferent, and clients
 * spread over it by being given different lists (or by DNS, which rotates a name's addresses).
 * Names are resolved again each time the list wraps around (and at start), so DNS changes are seen.
 */
import { lookup as dnsLookup } from "node:dns/promises";
import { isIP, type LookupFunction } from "node:net";
import { ConfigError } from "../errors.js";
import { CloseCode } from "../signalling/protocol.js";

/** One server to connect to: a URL, and the address its host name resolved to (null: an IP literal, or unresolved). */
export interface IntroServerTarget {
  url: string;
  /** The URL's host name (without brackets). */
  host: string;
  address: string | null;
  family: 4 | 6 | null;
}

/** Resolves a host name to its addresses, in the order they should be tried. */
export type IntroHostResolver = (host: string) => Promise<Array<{ address: string; family: 4 | 6 }>>;

/** What to do after a connection or attempt ended with `code`. */
export type CloseVerdict =
  /** The server went away (shut down, lost, silent, unreachable): try another at once. */
  | "move"
  /**
   * The server refused us for configuration reasons (not a member, authentication failed, another
   * protocol version): another server may be configured differently, so it is tried, but a round in
   * which every server failed waits the slow retry (as with one server).
   */
  | "refused"
  /** Another process uses our key (4010): a move would only fight it elsewhere; retry slowly here. */
  | "stay";

export function closeVerdict(code: number): CloseVerdict {
  switch (code) {
    case CloseCode.replaced:
      return "stay";
    case CloseCode.notMember:
    case CloseCode.authFailed:
    case CloseCode.unsupportedVersion:
      return "refused";
    default:
      return "move";
  }
}

/** How a server shows in logs and status: its URL, and the address when its name was resolved. */
export function describeTarget(target: IntroServerTarget): string {
  if (target.address === null || target.address === target.host) return target.url;
  return `${target.url} (${target.address})`;
}

/** The host name of a ws:// or wss:// URL, without the brackets of an IPv6 literal. */
export function hostOf(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError("intro-url", `not a URL: ${url}`, { url });
  }
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new ConfigError(
      "intro-url",
      `the introduction server URL must start with ws:// or wss://: ${url}`,
      {
        url,
      },
    );
  }
  return parsed.hostname.replace(/^\[(.*)\]$/, "$1");
}

/**
 * The servers of `urls`, names expanded by `resolved` (host name → addresses, in order; a name missing
 * there, or resolved to nothing, stays one unresolved server, so its own connection error shows).
 */
export function expandServers(
  urls: readonly string[],
  resolved: ReadonlyMap<string, ReadonlyArray<{ address: string; family: 4 | 6 }>>,
): IntroServerTarget[] {
  const servers: IntroServerTarget[] = [];
  const seen = new Set<string>();
  for (const url of urls) {
    const host = hostOf(url);
    const family = isIP(host);
    const addresses =
      family !== 0 ? [{ address: host, family: family as 4 | 6 }] : (resolved.get(host) ?? []).slice();
    if (addresses.length === 0) addresses.push({ address: "", family: 4 });
    for (const { address, family: addressFamily } of addresses) {
      const key = `${url}|${address}`;
      if (seen.has(key)) continue;
      seen.add(key);
      servers.push(
        address === ""
          ? { url, host, address: null, family: null }
          : { url, host, address, family: addressFamily },
      );
    }
  }
  return servers;
}

const systemResolver: IntroHostResolver = async (host) => {
  const found = await dnsLookup(host, { all: true });
  return found.map(({ address, family }) => ({ address, family: family === 6 ? 6 : 4 }));
};

export class IntroServerList {
  private servers: IntroServerTarget[];
  private index = 0;
  /** The list wrapped around (or never resolved): resolve names before the next attempt. */
  private stale = true;
  private readonly resolve: IntroHostResolver;

  constructor(
    readonly urls: readonly string[],
    resolve?: IntroHostResolver,
  ) {
    if (urls.length === 0) throw new ConfigError("intro-url", "no introduction server given");
    this.resolve = resolve ?? systemResolver;
    this.servers = expandServers(urls, new Map());
  }

  /** The server to connect to now. */
  get current(): IntroServerTarget {
    return this.servers[this.index]!;
  }

  get size(): number {
    return this.servers.length;
  }

  /** Every server, as status shows them. */
  describe(): string[] {
    return this.servers.map(describeTarget);
  }

  /** Whether names must be resolved before the next attempt (see `refresh`). */
  get needsRefresh(): boolean {
    return this.stale && this.urls.some((url) => isIP(hostOf(url)) === 0);
  }

  /**
   * Resolves every name again (failures keep the name as one unresolved server). Keeps the current
   * server if it is still in the list, else starts at the first.
   */
  async refresh(): Promise<void> {
    this.stale = false;
    const resolved = new Map<string, Array<{ address: string; family: 4 | 6 }>>();
    const names = [...new Set(this.urls.map(hostOf))].filter((host) => isIP(host) === 0);
    await Promise.all(
      names.map(async (host) => {
        try {
          resolved.set(host, await this.resolve(host));
        } catch {
          resolved.set(host, []);
        }
      }),
    );
    const current = this.current;
    this.servers = expandServers(this.urls, resolved);
    const kept = this.servers.findIndex((s) => s.url === current.url && s.address === current.address);
    this.index = Math.max(0, kept);
  }

  /** Moves to the next server; past the last, back to the first (whose names are then resolved again). */
  advance(): void {
    this.index++;
    if (this.index >= this.servers.length) {
      this.index = 0;
      this.stale = true;
    }
  }
}

/** A lookup that answers `address` whatever the name: the connection goes to that one of its addresses. */
export function connectionLookup(address: string, family: 4 | 6): LookupFunction {
  return (_hostname, options, callback) => {
    if (options.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };
}
