// What `tunnelbore netcheck` finds out, in one report: this host's addresses, the mapped addresses two
// STUN servers see from one local socket (the NAT's mapping behaviour), whether UDP gets out at all, and
// a TURN allocation over UDP, TCP and TLS with the servers and credentials given or in use by `run`.

import { createSocket } from "node:dgram";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { formatAddress } from "../ice/ice-path.js";
import { type IceServerUrl, parseIceServerUrl } from "../ice/ice-server-url.js";
import { type NatBehaviour, probeMapping, stunServerPair } from "../ice/nat-behaviour.js";
import { stunBinding, type TransportAddress } from "../ice/stun-binding.js";
import { type MtuFacts, mtuFacts, type PathMtuLeg, readMtuScene, routesIpv6Only } from "../wg/mtu-check.js";
import { checkTurn, type TurnCheck, type TurnCredentials, type TurnTransport } from "./turn-check.js";

export interface NetcheckInput {
  /** Where the servers came from, e.g. "flags" or "tunnelbore run on wg0". */
  source: string;
  stunUrls: string[];
  turn: ({ urls: string[] } & TurnCredentials) | null;
  /** How long each STUN query and TURN allocation may take. */
  timeoutMs: number;
  /** The WireGuard interface whose MTU is checked against the uplink's (from a running `run`). */
  interfaceName?: string;
}

export interface StunResult {
  /** "host:port" of each server queried (one or two). */
  servers: string[];
  /** The local port both queries were sent from. */
  localPort: number | null;
  /** What each server saw ("ip:port"), null where it did not answer. */
  mapped: (string | null)[];
}

export interface NetcheckReport {
  source: string;
  /** This host's addresses, loopback left out. */
  localAddresses: string[];
  /** Null when no STUN server is configured. */
  stun: StunResult | null;
  /** The mapping behaviour; "unknown" unless two STUN servers answered. */
  mapping: NatBehaviour;
  /** True when no STUN server answered; null without STUN servers. */
  udpBlocked: boolean | null;
  turn: Record<TurnTransport, TurnCheck>;
  /** The uplink's MTU and WireGuard's (src/wg/mtu-check.ts); null when `ip` could not be read. */
  mtu: ({ interface: string | null } & MtuFacts) | null;
}

export function localAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .filter((a) => !a.internal)
    .map((a) => a.address);
}

function text(address: TransportAddress | null): string | null {
  return address ? formatAddress(address.address, address.port) : null;
}

/** One STUN server only: the mapped address, no behaviour. */
async function singleQuery(server: TransportAddress, timeoutMs: number): Promise<StunResult> {
  const resolved = isIP(server.address)
    ? server
    : { ...server, address: (await lookup(server.address)).address };
  const socket = createSocket({ type: isIP(resolved.address) === 6 ? "udp6" : "udp4" });
  try {
    await new Promise<void>((done) => socket.bind(0, done));
    const mapped = await stunBinding(socket, resolved, timeoutMs);
    return { servers: [text(server)!], localPort: socket.address().port, mapped: [text(mapped)] };
  } finally {
    socket.close();
  }
}

async function checkStun(
  urls: string[],
  timeoutMs: number,
): Promise<{ stun: StunResult | null; mapping: NatBehaviour }> {
  const pair = stunServerPair(urls);
  if (pair) {
    const probe = await probeMapping(pair, timeoutMs);
    return {
      stun: {
        servers: pair.map(text) as string[],
        localPort: probe.localPort,
        mapped: probe.mapped.map(text),
      },
      mapping: probe.behaviour,
    };
  }
  const single = urls.map((u) => parseIceServerUrl(u)).find((u) => u.scheme === "stun");
  if (!single) return { stun: null, mapping: "unknown" };
  return {
    stun: await singleQuery({ address: single.host, port: single.port }, timeoutMs),
    mapping: "unknown",
  };
}

/**
 * The TURN server each transport is checked against, as `run` would use it: a URL of that transport,
 * else for TCP the UDP URL's server (run falls back to TCP there when UDP is blocked); TLS needs turns:.
 */
export function turnTargets(urls: readonly string[]): Record<TurnTransport, IceServerUrl | null> {
  const parsed = urls.map((u) => parseIceServerUrl(u)).filter((u) => u.scheme !== "stun");
  const of = (transport: TurnTransport) => parsed.find((u) => u.transport === transport) ?? null;
  return { udp: of("udp"), tcp: of("tcp") ?? of("udp"), tls: of("tls") };
}

export async function runNetcheck(input: NetcheckInput): Promise<NetcheckReport> {
  const targets = input.turn ? turnTargets(input.turn.urls) : { udp: null, tcp: null, tls: null };
  const credentials = input.turn;
  const turnOf = (transport: TurnTransport): Promise<TurnCheck> => {
    const target = targets[transport];
    return target && credentials
      ? checkTurn(target, transport, credentials, input.timeoutMs)
      : Promise.resolve({ status: "not configured" });
  };
  const [stun, udp, tcp, tls, scene] = await Promise.all([
    checkStun(input.stunUrls, input.timeoutMs),
    turnOf("udp"),
    turnOf("tcp"),
    turnOf("tls"),
    readMtuScene(),
  ]);
  // A path relayed by that TURN server over UDP, as run's would be: over IPv6 it needs 4 bytes more
  // than wg-quick's rule leaves (its mapped address is ours as the server saw it, of the family used).
  const relayed: PathMtuLeg[] =
    udp.status === "ok"
      ? [
          {
            path: `a path relayed by ${udp.server}`,
            leg: { family: udp.mapped?.startsWith("[") ? 6 : 4, turn: "udp" },
          },
        ]
      : [];
  // Without IPv4 routes every path is over IPv6 (40 bytes of IP header, not 20): a WireGuard MTU that
  // fits IPv4 does not fit them.
  const ipv6Only: PathMtuLeg[] =
    scene && routesIpv6Only(scene.defaults, input.interfaceName)
      ? [{ path: "a direct path (this host routes IPv6 only)", leg: { family: 6, turn: null } }]
      : [];
  const mtu = scene && mtuFacts(scene, input.interfaceName, [...relayed, ...ipv6Only]);
  return {
    source: input.source,
    localAddresses: localAddresses(),
    stun: stun.stun,
    mapping: stun.mapping,
    udpBlocked: stun.stun ? stun.stun.mapped.every((m) => m === null) : null,
    turn: { udp, tcp, tls },
    mtu: mtu && { interface: input.interfaceName ?? null, ...mtu },
  };
}

/** 0 when UDP works (a STUN or TURN-over-UDP answer) or any TURN allocation does; 1 when nothing works. */
export function netcheckExitCode(report: NetcheckReport): number {
  const udpWorks = report.udpBlocked === false || report.turn.udp.status === "ok";
  const anyTurn = Object.values(report.turn).some((t) => t.status === "ok");
  return udpWorks || anyTurn ? 0 : 1;
}
