// WireGuard's MTU against the links its datagrams leave by. wg-quick sets an interface's MTU from its
// peers' endpoints (the route's MTU less 80); with an endpoint at 127.x, as Tunnelbore has users write,
// that is loopback's 65536 less 80. Every datagram above the uplink's MTU then leaves in IP fragments,
// and in user space, since the kernel fast path cannot fragment (ebpf/fast-path.bpf.c, fits_uplink).
// Tunnelbore's endpoints caused it, so Tunnelbore says so and what to set.
import { type DefaultRoute, parseDefaultRoutes, readDefaultRoutes, readIpState } from "./ip-state.js";
import type { MonitorLine } from "./monitor-line.js";

export interface LinkMtu {
  name: string;
  mtu: number;
  up: boolean;
  loopback: boolean;
}

/** The least any path adds to WireGuard's MTU: IPv4 (20) and UDP (8) headers, WireGuard's 32. */
const LEAST_OVERHEAD = 60;
/** wg-quick's allowance: IPv6 (40) and UDP (8) headers, WireGuard's 32. */
const WG_QUICK_OVERHEAD = 80;

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
 * A warning when WireGuard's full-size datagrams cannot leave in one piece on any path (null: they
 * can, or nothing tells). The fix named is wg-quick's own rule applied to the uplink.
 */
export function mtuWarning(
  links: LinkMtu[],
  defaults: DefaultRoute[],
  wireguardInterface: string,
): string | null {
  const wireguard = links.find((l) => l.name === wireguardInterface);
  const uplink = uplinkMtu(links, defaults, wireguardInterface);
  if (!wireguard || uplink === null || wireguard.mtu + LEAST_OVERHEAD <= uplink) return null;
  const fit = uplink - WG_QUICK_OVERHEAD;
  const loopback = links.find((l) => l.loopback);
  const cause =
    loopback && wireguard.mtu + WG_QUICK_OVERHEAD === loopback.mtu
      ? " (wg-quick's choice for an endpoint at 127.x: loopback's MTU less 80)"
      : "";
  return (
    `${wireguardInterface}'s MTU ${wireguard.mtu}${cause} is more than the uplink carries (${uplink}): ` +
    `larger packets leave in IP fragments, in user space; set "MTU = ${fit}" in its wg-quick [Interface] ` +
    `(now: ip link set dev ${wireguardInterface} mtu ${fit})`
  );
}

/** What the links and routes tell of MTUs: the uplink's, WireGuard's (null: unknown), the warning. */
export interface MtuFacts {
  uplink: number | null;
  wireguard: number | null;
  warning: string | null;
}

/**
 * Reads the links and default routes (`ip`, no privileges needed) and checks WireGuard's MTU against
 * them; null when `ip` cannot be read. Without an interface, the uplink's MTU alone.
 */
export async function readMtuFacts(wireguardInterface = ""): Promise<MtuFacts | null> {
  const [lines, routes] = await Promise.all([
    readIpState(["link", "show"]),
    readDefaultRoutes().catch(() => ""),
  ]);
  if (lines === null) return null;
  const links = linkMtus(lines);
  const defaults = parseDefaultRoutes(routes);
  return {
    uplink: uplinkMtu(links, defaults, wireguardInterface),
    wireguard: links.find((l) => l.name === wireguardInterface)?.mtu ?? null,
    warning: mtuWarning(links, defaults, wireguardInterface),
  };
}

/** The warning for `wireguardInterface`'s MTU; null when fine or unreadable. */
export async function checkWireGuardMtu(wireguardInterface: string): Promise<string | null> {
  return (await readMtuFacts(wireguardInterface))?.warning ?? null;
}
