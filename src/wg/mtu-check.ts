// WireGuard's MTU against the links its datagrams leave by. wg-quick sets an interface's MTU from its
// peers' endpoints (the route's MTU less 80); with an endpoint at 127.x, as Tunnelbore has users write,
// that is loopback's 65536 less 80. Every datagram above the uplink's MTU then leaves in IP fragments,
// and in user space, since the kernel fast path cannot fragment (ebpf/fast-path.bpf.c, fits_uplink).
// Tunnelbore's endpoints caused it, so Tunnelbore says so and what to set. wg-quick's rule leaves room
// for IPv6; a path relayed by our TURN server over IPv6 adds ChannelData's 4 bytes besides, so the
// peers' paths are looked at too.
import type { PathLeg } from "../proxy/path.js";
import { type DefaultRoute, parseDefaultRoutes, readDefaultRoutesByFamily, readIpState } from "./ip-state.js";
import type { MonitorLine } from "./monitor-line.js";

export interface LinkMtu {
  name: string;
  mtu: number;
  up: boolean;
  loopback: boolean;
}

/** What WireGuard adds to a packet: its header (16) and authentication tag (16). */
const WIREGUARD_OVERHEAD = 32;
/** The least any path adds to WireGuard's MTU: IPv4 (20) and UDP (8) headers, WireGuard's 32. */
const LEAST_OVERHEAD = 60;
/** wg-quick's allowance: IPv6 (40) and UDP (8) headers, WireGuard's 32. */
const WG_QUICK_OVERHEAD = 80;
/** A TURN ChannelData message's header (RFC 8656 §12.4). */
const CHANNEL_DATA_HEADER = 4;

/** A path as the MTU check sees it: what to call it in the warning ("peer KEY's path"), and its leg. */
export interface PathMtuLeg {
  path: string;
  leg: PathLeg;
}

/**
 * What a path's own leg adds to WireGuard's datagram: IP and UDP headers, and ChannelData's header on
 * our TURN allocation over UDP. Null over TURN on TCP or TLS: a stream, which IP never fragments.
 */
export function legOverhead(leg: PathLeg): number | null {
  if (leg.turn === "tcp" || leg.turn === "tls") return null;
  return (leg.family === 6 ? 40 : 20) + 8 + (leg.turn === "udp" ? CHANNEL_DATA_HEADER : 0);
}

/** e.g. "relayed by our TURN server over UDP over IPv6", "direct over IPv6". */
function describeLeg(leg: PathLeg): string {
  const family = `IPv${leg.family}`;
  return leg.turn
    ? `relayed by our TURN server over ${leg.turn.toUpperCase()} over ${family}`
    : `over ${family}`;
}

/** The links among `ip -o link show`'s lines. */
export function linkMtus(lines: MonitorLine[]): LinkMtu[] {
  return lines.flatMap((l) =>
    l.kind === "link" && l.mtu !== null ? [{ name: l.name, mtu: l.mtu, up: l.up, loopback: l.loopback }] : [],
  );
}

/**
 * The largest datagram (IP header included) the uplinks carry: wg-quick's choice without endpoints
 * (the default routes' MTU), or, with no default route, the largest up link's. Null: nothing to go by.
 */
export function uplinkMtu(
  links: LinkMtu[],
  defaults: DefaultRoute[],
  wireguardInterface: string,
): number | null {
  const byName = new Map(links.map((l) => [l.name, l]));
  const viaDefault = defaults
    .filter((r) => r.device !== wireguardInterface)
    .map((r) => r.mtu ?? byName.get(r.device)?.mtu)
    .filter((mtu): mtu is number => mtu !== undefined);
  const candidates =
    viaDefault.length > 0
      ? viaDefault
      : links.filter((l) => l.up && !l.loopback && l.name !== wireguardInterface).map((l) => l.mtu);
  return candidates.length > 0 ? Math.max(...candidates) : null;
}

/**
 * A warning when WireGuard's full-size datagrams cannot leave in one piece (null: they can, or nothing
 * tells): not even over IPv4, or not on some peer's path (`legs`: IPv6, a relay's ChannelData). The
 * MTU named is wg-quick's own rule applied to the uplink, or less where a path needs it.
 */
export function mtuWarning(
  links: LinkMtu[],
  defaults: DefaultRoute[],
  wireguardInterface: string,
  legs: readonly PathMtuLeg[] = [],
): string | null {
  const wireguard = links.find((l) => l.name === wireguardInterface);
  const uplink = uplinkMtu(links, defaults, wireguardInterface);
  if (!wireguard || uplink === null) return null;
  const datagram = wireguard.mtu + WIREGUARD_OVERHEAD;
  let worst: { path: string; leg: PathLeg; overhead: number } | null = null;
  let overPaths = 0;
  for (const { path, leg } of legs) {
    const overhead = legOverhead(leg);
    if (overhead === null || datagram + overhead <= uplink) continue;
    overPaths++;
    if (!worst || overhead > worst.overhead) worst = { path, leg, overhead };
  }
  const overIpv4 = wireguard.mtu + LEAST_OVERHEAD > uplink;
  if (!overIpv4 && !worst) return null;
  const fit = Math.min(uplink - WG_QUICK_OVERHEAD, uplink - WIREGUARD_OVERHEAD - (worst?.overhead ?? 0));
  const fix =
    `larger packets leave in IP fragments, in user space; set "MTU = ${fit}" in its wg-quick [Interface] ` +
    `(now: ip link set dev ${wireguardInterface} mtu ${fit})`;
  if (!overIpv4 && worst) {
    // No count: the text stays the same as a hub's paths come up, so it is logged once.
    const others = overPaths > 1 ? " (and other paths)" : "";
    return (
      `${wireguardInterface}'s MTU ${wireguard.mtu} is more than ${worst.path} carries in one ` +
      `piece (${describeLeg(worst.leg)}: ${uplink - WIREGUARD_OVERHEAD - worst.overhead} on the uplink's ` +
      `${uplink})${others}: ${fix}`
    );
  }
  const loopback = links.find((l) => l.loopback);
  const cause =
    loopback && wireguard.mtu + WG_QUICK_OVERHEAD === loopback.mtu
      ? " (wg-quick's choice for an endpoint at 127.x: loopback's MTU less 80)"
      : "";
  return `${wireguardInterface}'s MTU ${wireguard.mtu}${cause} is more than the uplink carries (${uplink}): ${fix}`;
}

/** The links and default routes, as read from `ip`: what the checks above go by. */
export interface MtuScene {
  links: LinkMtu[];
  defaults: DefaultRoute[];
}

/** Reads the links and default routes (`ip`, no privileges needed); null when `ip` cannot be read. */
export async function readMtuScene(): Promise<MtuScene | null> {
  const [lines, routes] = await Promise.all([
    readIpState(["link", "show"]),
    readDefaultRoutesByFamily().catch(() => ({ v4: "", v6: "" })),
  ]);
  if (lines === null) return null;
  return {
    links: linkMtus(lines),
    defaults: [...parseDefaultRoutes(routes.v4, 4), ...parseDefaultRoutes(routes.v6, 6)],
  };
}

/**
 * Every path of a host whose only default routes (besides WireGuard's own) are IPv6 ones leaves over
 * IPv6: netcheck counts that before any path exists. False where IPv4 is routed or nothing tells.
 */
export function routesIpv6Only(defaults: readonly DefaultRoute[], wireguardInterface = ""): boolean {
  const uplinks = defaults.filter((r) => r.device !== wireguardInterface);
  return uplinks.length > 0 && uplinks.every((r) => r.family === 6);
}

/** What the links and routes tell of MTUs: the uplink's, WireGuard's (null: unknown), the warning. */
export interface MtuFacts {
  uplink: number | null;
  wireguard: number | null;
  warning: string | null;
}

/** Checks WireGuard's MTU against the links and default routes and `legs`; without an interface, the uplink's MTU alone. */
export function mtuFacts(
  scene: MtuScene,
  wireguardInterface = "",
  legs: readonly PathMtuLeg[] = [],
): MtuFacts {
  const { links, defaults } = scene;
  return {
    uplink: uplinkMtu(links, defaults, wireguardInterface),
    wireguard: links.find((l) => l.name === wireguardInterface)?.mtu ?? null,
    warning: mtuWarning(links, defaults, wireguardInterface, legs),
  };
}
