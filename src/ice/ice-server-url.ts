// STUN and TURN server URLs (RFC 7064/7065), and the werift options built from them.
import { isIP } from "node:net";
import type { IceOptions } from "werift-ice";
import { ConfigError } from "../errors.js";
import { type AddressExclusion, relayMayReach } from "./candidate-filter.js";
import type { IceSessionOptions } from "./ice-session.js";

export interface IceServerUrl {
  readonly scheme: "stun" | "turn" | "turns";
  readonly host: string;
  readonly port: number;
  readonly transport: "udp" | "tcp" | "tls";
}

const URL_PATTERN =
  /^(stun|turns?):(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(?:\?transport=(udp|tcp))?$/;

/** Parses an RFC 7064/7065 URL (`stun:host[:port]`, `turn:host[:port][?transport=udp|tcp]`, `turns:...`). */
export function parseIceServerUrl(url: string): IceServerUrl {
  const match = URL_PATTERN.exec(url);
  const scheme = match?.[1];
  const rawHost = match?.[2];
  if (!match || !rawHost || (scheme !== "stun" && scheme !== "turn" && scheme !== "turns")) {
    throw new ConfigError(
      "bad-ice-url",
      `${url}: expected stun:HOST[:PORT] or turn(s):HOST[:PORT][?transport=udp|tcp]`,
    );
  }
  if (scheme === "stun" && match[4]) {
    throw new ConfigError("bad-ice-url", `${url}: a stun: URL takes no transport`);
  }
  const host = rawHost.startsWith("[") ? rawHost.slice(1, -1) : rawHost;
  if (rawHost.startsWith("[") && isIP(host) !== 6)
    throw new ConfigError("bad-ice-url", `${url}: bad IPv6 address`);
  const port = match[3] === undefined ? (scheme === "turns" ? 5349 : 3478) : Number(match[3]);
  if (port < 1 || port > 65535) throw new ConfigError("bad-ice-url", `${url}: port must be 1..65535`);
  const transport = scheme === "turns" ? "tls" : match[4] === "tcp" ? "tcp" : "udp";
  if (scheme === "turns" && match[4] === "udp")
    throw new ConfigError("bad-ice-url", `${url}: turns: runs over TLS`);
  return { scheme, host, port, transport };
}

/** The werift options of a session's agents, one set per kind of attempt. */
export interface WeriftOptionSets {
  /** Host, srflx and relay candidates (TURN over the transport its URL names). */
  readonly full: Partial<IceOptions>;
  /** Upgrade attempts: no TURN server. */
  readonly direct: Partial<IceOptions>;
  /** When TURN over UDP is known not to work: TURN over TCP at once. */
  readonly relayOverTcp: Partial<IceOptions>;
}

export type WeriftServerOptions = Pick<
  IceSessionOptions,
  "stunUrls" | "turn" | "forceRelay" | "ipv6" | "extraHostAddresses"
>;

// werift takes one STUN and one TURN server; prefer TURN over UDP (TCP/TLS only where UDP is blocked).
const TRANSPORT_PREFERENCE = { udp: 0, tcp: 1, tls: 2 } as const;

/** Throws ConfigError for a malformed URL, or for relay-only ICE without a TURN server. */
export function weriftOptionSets(options: WeriftServerOptions, exclude: AddressExclusion): WeriftOptionSets {
  const stun = options.stunUrls.map(parseIceServerUrl).find((u) => u.scheme === "stun");
  const turnUrls = (options.turn?.urls ?? []).map(parseIceServerUrl).filter((u) => u.scheme !== "stun");
  const turn = turnUrls.sort(
    (a, b) => TRANSPORT_PREFERENCE[a.transport] - TRANSPORT_PREFERENCE[b.transport],
  )[0];
  if (options.forceRelay && !turn) {
    throw new ConfigError("no-turn-server", "relay-only ICE needs a TURN server (--turn)");
  }
  const full: Partial<IceOptions> = {
    useIpv4: true,
    useIpv6: options.ipv6 ?? true,
    useTcp: false,
    stunServer: stun ? [stun.host, stun.port] : undefined,
    ...(turn && options.turn
      ? {
          turnServer: [turn.host, turn.port] as const,
          turnUsername: options.turn.username,
          turnPassword: options.turn.credential,
          turnTransport: turn.transport,
          forceTurn: options.forceRelay ?? false,
        }
      : {}),
    additionalHostAddresses: options.extraHostAddresses ?? [],
    // Pairs are formed for every werift socket (including ones for addresses we do not advertise);
    // never check from or to an excluded address, nor ask TURN to send where it cannot (relayMayReach).
    filterCandidatePair: (pair) =>
      !exclude(pair.localCandidate.host) &&
      !exclude(pair.remoteCandidate.host) &&
      relayMayReach(pair.localCandidate, pair.remoteCandidate),
  };
  return {
    full,
    direct: {
      ...full,
      turnServer: undefined,
      turnUsername: undefined,
      turnPassword: undefined,
      turnTransport: undefined,
      forceTurn: false,
    },
    relayOverTcp: { ...full, turnTransport: full.turnTransport === "udp" ? "tcp" : full.turnTransport },
  };
}
