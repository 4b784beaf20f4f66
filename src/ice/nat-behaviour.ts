// The NAT's mapping behaviour (RFC 4787 §4.1) as two STUN queries from one local socket show it: the same
// mapped address and port towards two server addresses is endpoint-independent mapping (hole punching
// works against it); a different one is address-and-port-dependent ("symmetric") mapping, which only a
// TURN relay gets through when the other side's NAT filters too. The introduction server answers STUN
// on two ports (intro-server/stun.ts), so one server is enough; its two URLs come in `stunUrls`.
//
// One probe per process and network, not per ICE socket: the behaviour belongs to the NAT, and a
// socket of our own keeps werift's sockets and the STUN gate out of it. A network change forgets it.
import { createSocket } from "node:dgram";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { z } from "zod";
import type { Logger } from "../log.js";
import { parseIceServerUrl } from "./ice-server-url.js";
import { stunBinding, type TransportAddress } from "./stun-binding.js";

export const NAT_BEHAVIOURS = [
  "no-nat",
  "endpoint-independent",
  "address-and-port-dependent",
  "unknown",
] as const;
export type NatBehaviour = (typeof NAT_BEHAVIOURS)[number];

/** The field a peer sends in its ICE signals: untrusted, so anything else reads as "unknown". */
export const natBehaviourField = z.enum(NAT_BEHAVIOURS).optional().catch(undefined);

/** How status and netcheck say it. */
export function describeNatBehaviour(behaviour: NatBehaviour): string {
  switch (behaviour) {
    case "no-nat":
      return "no NAT";
    case "endpoint-independent":
      return "endpoint-independent";
    case "address-and-port-dependent":
      return "address-and-port-dependent (symmetric NAT)";
    case "unknown":
      return "unknown";
  }
}

export interface MappingObservation {
  /** The addresses of this host's interfaces. */
  localAddresses: readonly string[];
  /** The port the querying socket is bound to. */
  localPort: number;
  /** What each of the two servers saw (null: no answer). */
  mapped: readonly [TransportAddress | null, TransportAddress | null];
}

/** Classifies two answers to one local socket; "unknown" unless both servers answered (or no NAT shows). */
export function classifyMapping(observation: MappingObservation): NatBehaviour {
  const [first, second] = observation.mapped;
  const unmapped = (m: TransportAddress | null) =>
    m !== null && m.port === observation.localPort && observation.localAddresses.includes(m.address);
  if (first && second && unmapped(first) && unmapped(second)) return "no-nat";
  if (!first || !second) return first && unmapped(first) ? "no-nat" : "unknown";
  return first.address === second.address && first.port === second.port
    ? "endpoint-independent"
    : "address-and-port-dependent";
}

/** The first two STUN servers of `urls` with different addresses (host or port), as "host:port" pairs. */
export function stunServerPair(urls: readonly string[]): [TransportAddress, TransportAddress] | null {
  const servers: TransportAddress[] = [];
  for (const url of urls) {
    let parsed: ReturnType<typeof parseIceServerUrl>;
    try {
      parsed = parseIceServerUrl(url);
    } catch {
      continue;
    }
    if (parsed.scheme !== "stun") continue;
    if (servers.some((s) => s.address === parsed.host && s.port === parsed.port)) continue;
    servers.push({ address: parsed.host, port: parsed.port });
    if (servers.length === 2) return [servers[0]!, servers[1]!];
  }
  return null;
}

/** Every address of this host's interfaces. */
export function localInterfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address));
}

async function resolve(server: TransportAddress): Promise<TransportAddress> {
  if (isIP(server.address)) return server;
  const { address } = await lookup(server.address);
  return { address, port: server.port };
}

export interface MappingProbe extends MappingObservation {
  /** The servers queried, resolved. */
  servers: readonly [TransportAddress, TransportAddress];
  behaviour: NatBehaviour;
}

/** Queries both servers from one new UDP socket and classifies the answers. */
export async function probeMapping(
  servers: readonly [TransportAddress, TransportAddress],
  timeoutMs: number,
): Promise<MappingProbe> {
  const resolved = [await resolve(servers[0]), await resolve(servers[1])] as const;
  const socket = createSocket({ type: isIP(resolved[0].address) === 6 ? "udp6" : "udp4" });
  try {
    await new Promise<void>((done, fail) => {
      socket.once("error", fail);
      socket.bind(0, () => {
        socket.off("error", fail);
        done();
      });
    });
    socket.on("error", () => undefined);
    // At once: each query matches its own server and transaction, and a blocked network costs one timeout.
    const mapped = await Promise.all([
      stunBinding(socket, resolved[0], timeoutMs),
      stunBinding(socket, resolved[1], timeoutMs),
    ]);
    const observation = {
      localAddresses: localInterfaceAddresses(),
      localPort: socket.address().port,
      mapped,
    };
    return { ...observation, servers: resolved, behaviour: classifyMapping(observation) };
  } finally {
    socket.close();
  }
}

/** A probe that answered nothing is tried again after this long (the servers may come back). */
const UNKNOWN_RETRY_MS = 60_000;
const PROBE_TIMEOUT_MS = 3000;

/**
 * This host's mapping behaviour as the ICE sessions share it: probed when first asked for, kept until
 * the network changes. `current` never waits: it is "unknown" until a probe has answered.
 */
export class NatBehaviourProbe {
  private behaviour: NatBehaviour = "unknown";
  private probedAt = Number.NEGATIVE_INFINITY;
  private underWay = false;
  /** Bumped by `reset`, so a probe of the previous network does not set the result. */
  private network = 0;

  constructor(
    private readonly stunUrls: () => string[],
    private readonly log: Logger,
  ) {}

  get current(): NatBehaviour {
    return this.behaviour;
  }

  /** Starts a probe unless one is under way, the behaviour is known, or an unanswered probe was recent. */
  ensure(): void {
    if (this.underWay || this.behaviour !== "unknown") return;
    if (performance.now() - this.probedAt < UNKNOWN_RETRY_MS) return;
    const servers = stunServerPair(this.stunUrls());
    if (!servers) return;
    this.underWay = true;
    this.probedAt = performance.now();
    const network = this.network;
    probeMapping(servers, PROBE_TIMEOUT_MS)
      .then((probe) => {
        if (network !== this.network) return;
        this.behaviour = probe.behaviour;
        this.log.info(
          { behaviour: probe.behaviour, mapped: probe.mapped, servers: probe.servers },
          "NAT mapping behaviour",
        );
      })
      .catch((err: unknown) => this.log.debug({ err }, "NAT mapping probe failed"))
      .finally(() => {
        if (network === this.network) this.underWay = false;
      });
  }

  /** The network changed: the behaviour may have too. */
  reset(): void {
    this.network++;
    this.behaviour = "unknown";
    this.probedAt = Number.NEGATIVE_INFINITY;
    this.underWay = false;
  }
}
