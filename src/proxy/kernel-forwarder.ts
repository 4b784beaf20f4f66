import { execFile } from "node:child_process";
import { isIP } from "node:net";
import { release as osRelease } from "node:os";
import { promisify } from "node:util";
import { monotonicNs as monotonicNow } from "../../ebpf/instances.js";
import type { EntryCounters } from "../../ebpf/loader.js";
import type { Logger } from "../log.js";
import type { FastPathControl } from "../privsep/privileged-ops.js";
import type { RoutePrefix } from "../wg/route-prefix.js";
import { KernelRouteBatcher, kernelRouteOf, type RouteAnswer, readLink } from "./kernel-route-batch.js";
import type { LoopbackAddress } from "./loopback-address.js";
import { type FiveTuple, type PeerPath, sameFiveTuple, unmappedIpv4 } from "./path.js";
import type { ProxyPeer } from "./proxy-peer.js";
import { RemoteIndex } from "./remote-index.js";

const execFileAsync = promisify(execFile);

/**
 * How often the kernel's counters are folded into the peers': as often as liveness looks (its tick), so
 * that it sees a steady flow as steady (the times themselves are the kernel's, not the poll's).
 */
const POLL_MS = 250;
/**
 * An entry whose counts moved within this long is read at every poll; the quiet ones (a hub's idle
 * peers) are looked at every QUIET_POLL_MS, together: the program answers which entries moved, from
 * one batched pass over each map (`countersMoved`), and only those are read. Reading thousands of
 * entries four times a second cost a core's tenth per 2,000 peers (issue 16). A quiet path that wakes
 * up is seen within QUIET_POLL_MS; its handshakes, which go through user space, are seen at once.
 */
const ACTIVE_WINDOW_MS = 5000;
/** First installs deferred by a bulk, started per turn of the event loop. */
const DRAIN_SLICE = 200;
const QUIET_POLL_MS = 5000;

/**
 * Whether an IPv6 path's redirect may be given its next hop on a kernel of this `release`. With a next
 * hop the kernel skips its route lookup, and a datagram held while the neighbour resolves is later sent
 * by the route the datagram carries: the 4 -> 6 translation drops lo's route on the kernels this was
 * verified on (6.18; the change is from 2025, 6.16), while an older kernel would send it by lo's and
 * lose it. Older kernels keep the lookup (no next hop: always right, 1 % more of a CPU-bound machine).
 */
export function nextHopsSafe(release: string): boolean {
  const match = /^(\d+)\.(\d+)/.exec(release);
  if (!match) return false;
  const major = Number(match[1]);
  const minor = Number(match[2]);
  return major > 6 || (major === 6 && minor >= 16);
}

const NEXT_HOPS_SAFE = nextHopsSafe(osRelease());

/** The wall-clock time (ms) of a CLOCK_MONOTONIC instant in ns (bpf_ktime_get_ns), as `now` sees it. */
function wallClockOf(monotonicNs: bigint, now: number): number {
  const ageMs = Number(monotonicNow() - monotonicNs) / 1e6;
  return monotonicNs === 0n || ageMs < 0 ? now : now - ageMs;
}

/** Where the kernel sends a peer's datagrams, as `ip route get` answers for the remote. */
export interface KernelRoute {
  dev: string;
  ifindex: number;
  source: string;
  /**
   * The next hop on `dev`: the route's gateway, or the remote itself on the link (`nextHopOf`). Absent
   * when the answer does not tell one for sure, or `dev` is not an Ethernet-type link (`kernelRouteOf`):
   * the kernel then looks the route up per datagram.
   */
  nextHop?: string;
}

/** Asks the kernel which interface, source address and next hop it would use to reach `remote`. */
export async function resolveKernelRoute(remote: string): Promise<KernelRoute | null> {
  const { stdout } = await execFileAsync("ip", ["-j", "route", "get", remote], { timeout: 5000 });
  const [route] = JSON.parse(stdout) as Array<RouteAnswer & { dev?: string; prefsrc?: string }>;
  if (!route?.dev || !route.prefsrc) return null;
  return kernelRouteOf({ ...route, dev: route.dev, prefsrc: route.prefsrc }, await readLink(route.dev));
}

/** The lookups of every forwarder in the process, batched (thousands of paths come up at once on a hub). */
const routes = new KernelRouteBatcher();
const batchedRoute = (remote: string): Promise<KernelRoute | null> => routes.route(remote);

/** The flow the kernel carries for a path: plain UDP, or ChannelData on a TURN allocation's channel. */
interface KernelFlow {
  localAddress: string | null;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** Relayed: the bound channel; 0 for plain UDP. */
  channel: number;
}

/** A bound address that leaves the source to the kernel's route. */
const isWildcard = (address: string | null): boolean => !address || address === "0.0.0.0" || address === "::";

/** What the kernel can carry of a path: its plain UDP route, else its TURN channel (IPv4 or IPv6). */
function kernelFlowOf(path: PeerPath | null): KernelFlow | null {
  const udp = path?.udpRoute?.() ?? null;
  const flow = udp ? { ...udp, channel: 0 } : (path?.channelRoute?.() ?? null);
  if (!flow) return null;
  const remoteAddress = unmappedIpv4(flow.remoteAddress);
  const localAddress = isWildcard(flow.localAddress) ? null : unmappedIpv4(flow.localAddress ?? "");
  if (!isIP(remoteAddress) || (localAddress && isIP(localAddress) !== isIP(remoteAddress))) return null;
  return { ...flow, localAddress, remoteAddress };
}

/** A peer's entries as installed: the flow, where it leaves, and the counts already folded in. */
interface Installed extends FiveTuple {
  channel: number;
  ifindex: number;
  /** The next hop given to the redirect (from the same route answer as ifindex); undefined: none. */
  nextHop: string | undefined;
  wireguardPort: number;
  /** Where WireGuard hears the peer from: L(P), or L6(P) on a plain UDP path over IPv6. */
  loopbackAddress: string;
  loopbackPort: number;
  /**
   * With L6(P): L(P), whose outbound entry (translating) stays too, as WireGuard sends there until it
   * hears from L6(P). Null otherwise.
   */
  alsoFrom: LoopbackAddress | null;
  /** The outbound entries' counts together (both, with `alsoFrom`). */
  sentPackets: bigint;
  sentBytes: bigint;
  receivedPackets: bigint;
  receivedBytes: bigint;
  /** When its counts last moved (installed counts as moved, except in a bulk: see `bulk`). */
  activeAt: number;
  /** Wall-clock ms up to which its counts are folded in (`countsKnownUntil`). */
  knownAt: number;
}

/**
 * Keeps the kernel fast path's entries in step with the peers' paths: a path that sends plain UDP
 * (direct ICE, static) or ChannelData on its own TURN allocation over UDP (relayed, channel bound)
 * gets an outbound and an inbound entry, over IPv4 or IPv6; anything else (TCP/TLS TURN, an IPv6 peer
 * on this host, no path) has none and stays in user space. Polls the kernel's counters into the peers' traffic counters and
 * contact times, which liveness and status read.
 */
export class KernelForwarder {
  private readonly installed = new Map<ProxyPeer, Installed>();
  /** Bumped at every update of a peer: a slower, older update never overwrites a newer one. */
  private readonly generations = new Map<ProxyPeer, number>();
  /**
   * The last generation given out, forwarder-wide: a peer removed and updated again never gets a number
   * an update still under way from before its removal holds.
   */
  private generation = 0;
  private readonly timer: NodeJS.Timeout;
  private wireguardPort = 0;
  /**
   * The peers whose entries moved within ACTIVE_WINDOW_MS (or were just installed): the only ones a
   * poll reads. A hub's 10,000 quiet entries are not even visited four times a second.
   */
  private readonly active = new Set<ProxyPeer>();
  /** The peers with entries, by L(P) ("address:port"): what a moved entry names. */
  private readonly byLoopback = new Map<string, ProxyPeer>();
  private movedReading = false;
  /** The next look at moved entries asks for all of them (the last one failed). */
  private movedInFull = false;
  /** When the last successful look at moved entries was asked for: no other entry moved before it. */
  private movedKnownAt = 0;
  /**
   * Many peers are being set up at once (WireGuardProxy.setBulk): each entry's "on"/"off" line at
   * debug, and new entries start quiet (a hub's start read 10,000 unused entries four times a second
   * for 5 s, in the middle of its start; they are looked at with the quiet ones, every QUIET_POLL_MS).
   */
  private bulk = false;
  /**
   * The remote of every peer whose path the kernel could carry (installed, or left to user space by its
   * route): what a route change for a prefix may move (`refreshWithin`).
   */
  private readonly remotes = new RemoteIndex<ProxyPeer>();
  /** Peers without entries whose install was asked for during a bulk: installed after it. */
  private readonly deferred = new Set<ProxyPeer>();
  private draining = false;
  /** The peer's L6(P), bound on first use (WireGuardProxy.loopback6); unset: every path keeps L(P). */
  private loopback6: ((peer: ProxyPeer) => Promise<LoopbackAddress | null>) | null = null;

  constructor(
    private readonly program: FastPathControl,
    private readonly options: {
      /** The WireGuard interface: a remote routed into the tunnel itself is never fast-pathed. */
      wireguardInterface: string;
      logger: Logger;
      resolveRoute?: (remote: string) => Promise<KernelRoute | null>;
      /** Give IPv6 paths' redirects their next hop (default: where the kernel allows it, `nextHopsSafe`). */
      nextHops?: boolean;
    },
  ) {
    this.timer = setInterval(() => this.poll(), POLL_MS);
    this.timer.unref();
  }

  /**
   * Where a peer's L6(P) comes from. A plain UDP path over IPv6 then has WireGuard's side on [::1] as
   * well: WireGuard sends IPv6, and the program rewrites addresses instead of translating (ebpf/ipv6.h).
   */
  useLoopback6(source: (peer: ProxyPeer) => Promise<LoopbackAddress | null>): void {
    this.loopback6 = source;
  }

  /** True while the peer's transport data goes through the kernel. */
  carries(peer: ProxyPeer): boolean {
    return this.installed.has(peer);
  }

  /**
   * Up to when (wall-clock ms) the kernel's part of the peer's traffic is in its stamps: a quiet entry
   * is looked at every QUIET_POLL_MS, and across privsep every count is a copy read a poll before.
   * The idle sweep rests a peer only on quiet it knows of (src/peer/idle-sweep.ts). Infinity: no
   * entries, the stamps are user space's, always current.
   */
  countsKnownUntil(peer: ProxyPeer): number {
    const entry = this.installed.get(peer);
    return entry ? Math.max(entry.knownAt, this.movedKnownAt) : Number.POSITIVE_INFINITY;
  }

  /** Re-resolves every peer's route (after addresses, links or rules changed). */
  refresh(peers: Iterable<ProxyPeer>): void {
    for (const peer of peers) void this.update(peer);
  }

  /**
   * Re-resolves the route of the peers whose remote is inside one of `prefixes` (routes of those
   * prefixes were added, deleted or replaced: longest-prefix match moves no other answer); returns how
   * many. A hub's 10,000 entries are not walked for a pod's /32 that covers none of them.
   */
  refreshWithin(prefixes: Iterable<RoutePrefix>): number {
    const peers = this.remotes.within(prefixes);
    for (const peer of peers) void this.update(peer);
    return peers.size;
  }

  setWireGuardPort(port: number, peers: Iterable<ProxyPeer>): void {
    if (port === this.wireguardPort) return;
    this.wireguardPort = port;
    for (const peer of peers) void this.update(peer);
  }

  /**
   * Installs the entries for the peer's current path (or removes them when it has no UDP route). A
   * peer's first entries asked for during a bulk are installed after it (`drainDeferred`): user space
   * forwards meanwhile, and a hub's start is not held up by 20,000 map updates (1.7 s of 5 at 10,000
   * peers). Entries already installed are changed or removed at once.
   */
  update(peer: ProxyPeer): Promise<void> {
    if (this.bulk && !this.installed.has(peer)) {
      // Also makes an install still under way for an older path give up.
      this.generations.set(peer, ++this.generation);
      this.deferred.add(peer);
      return Promise.resolve();
    }
    this.deferred.delete(peer);
    return this.apply(peer, this.bulk);
  }

  /** `bulk`: part of a bulk (asked during one, or deferred from one): installed quiet, logged at debug. */
  private async apply(peer: ProxyPeer, bulk: boolean): Promise<void> {
    const generation = ++this.generation;
    this.generations.set(peer, generation);
    const route = kernelFlowOf(peer.path);
    if (!route || this.wireguardPort === 0) {
      this.remotes.delete(peer);
      this.uninstall(peer);
      return;
    }
    this.remotes.set(peer, route.remoteAddress);
    let kernelRoute: KernelRoute | null = null;
    try {
      kernelRoute = await (this.options.resolveRoute ?? batchedRoute)(route.remoteAddress);
      if (kernelRoute && kernelRoute.dev !== this.options.wireguardInterface) {
        await this.program.attach(kernelRoute.dev, kernelRoute.ifindex);
      }
    } catch (err) {
      this.options.logger.warn(
        { err, peer: peer.publicKey },
        "kernel fast path: no route; user space forwards",
      );
      kernelRoute = null;
    }
    if (this.generations.get(peer) !== generation) return;
    const toLoopback = kernelRoute?.dev === "lo";
    const ipv6 = isIP(route.remoteAddress) === 6;
    // An IPv6 peer on this host would need the translated datagram routed again: user space does it.
    if (!kernelRoute || kernelRoute.dev === this.options.wireguardInterface || (ipv6 && toLoopback)) {
      this.uninstall(peer);
      return;
    }
    const localAddress = route.localAddress ?? kernelRoute.source;
    // A plain UDP path over IPv6: WireGuard's side on [::1] too, where it can be (no translation).
    let loopback: LoopbackAddress = peer.loopback;
    if (ipv6 && route.channel === 0 && this.loopback6) {
      const native = await this.loopback6(peer).catch((err: unknown) => {
        this.options.logger.debug({ err, peer: peer.publicKey }, "no IPv6 loopback: L(P) translates");
        return null;
      });
      if (this.generations.get(peer) !== generation) return;
      if (native) loopback = native;
    }
    const native6 = loopback !== peer.loopback;
    // IPv6 paths only (ebpf/ipv6.h: their redirect then skips its route lookup; an IPv4 path's cannot
    // yet, ebpf/fast-path.bpf.c), and only an IPv6 one, for L(P)'s translating entry: a datagram from
    // [::1] to L6(P) carries lo's route, which a next hop would keep. (An IPv6 path into lo was left above.)
    const nextHop =
      (this.options.nextHops ?? NEXT_HOPS_SAFE) &&
      ipv6 &&
      kernelRoute.nextHop &&
      isIP(kernelRoute.nextHop) === 6
        ? kernelRoute.nextHop
        : undefined;
    const next: Installed = {
      ifindex: kernelRoute.ifindex,
      nextHop,
      wireguardPort: this.wireguardPort,
      loopbackAddress: loopback.address,
      loopbackPort: loopback.port,
      alsoFrom: native6 ? peer.loopback : null,
      localAddress,
      localPort: route.localPort,
      remoteAddress: route.remoteAddress,
      remotePort: route.remotePort,
      channel: route.channel,
      sentPackets: 0n,
      sentBytes: 0n,
      receivedPackets: 0n,
      receivedBytes: 0n,
      activeAt: Date.now(),
      knownAt: Date.now(),
    };
    const current = this.installed.get(peer);
    if (
      current &&
      current.ifindex === next.ifindex &&
      current.nextHop === next.nextHop &&
      current.wireguardPort === next.wireguardPort &&
      current.channel === next.channel &&
      current.loopbackAddress === next.loopbackAddress &&
      current.loopbackPort === next.loopbackPort &&
      sameFiveTuple(current, next)
    ) {
      return;
    }
    this.uninstall(peer);
    // What the entry it replaces carried after its last read is never read: not known either.
    if (current) next.knownAt = current.knownAt;
    const channel = next.channel || undefined;
    // Native, WireGuard's datagrams to L6(P) are only rewritten: no next hop (ebpf/ipv6.h says why).
    this.program.setOutbound({ ...next, toLoopback, channel, nextHop: native6 ? undefined : nextHop });
    if (next.alsoFrom) {
      const { address, port } = next.alsoFrom;
      this.program.setOutbound({
        ...next,
        loopbackAddress: address,
        loopbackPort: port,
        toLoopback,
        channel,
        nextHop,
      });
      this.byLoopback.set(`${address}:${port}`, peer);
    }
    this.program.setInbound({ ...next, loopbackIfindex: toLoopback ? kernelRoute.ifindex : 1, channel });
    this.installed.set(peer, next);
    // User space delivers handshakes from where the kernel delivers data: WireGuard's endpoint stays put.
    peer.deliversFrom6 = native6;
    if (bulk) next.activeAt = 0;
    else this.active.add(peer);
    this.byLoopback.set(`${next.loopbackAddress}:${next.loopbackPort}`, peer);
    this.options.logger[bulk ? "debug" : "info"](
      {
        peer: peer.publicKey,
        dev: kernelRoute.dev,
        local: `${localAddress}:${route.localPort}`,
        remote: `${route.remoteAddress}:${route.remotePort}`,
        ...(nextHop ? { nextHop } : {}),
        ...(next.channel ? { channel: next.channel } : {}),
        ...(native6 ? { loopback6: `[${loopback.address}]:${loopback.port}` } : {}),
      },
      "kernel fast path on",
    );
  }

  setBulk(bulk: boolean): void {
    this.bulk = bulk;
    if (!bulk) this.drainDeferred();
  }

  /** The first installs deferred by a bulk, DRAIN_SLICE per turn of the event loop. */
  private drainDeferred(): void {
    if (this.draining || this.deferred.size === 0) return;
    this.draining = true;
    const slice = () => {
      // A new bulk: its end drains what is left.
      if (this.bulk || this.deferred.size === 0) {
        this.draining = false;
        return;
      }
      let n = 0;
      for (const peer of this.deferred) {
        this.deferred.delete(peer);
        void this.apply(peer, true);
        if (++n === DRAIN_SLICE) break;
      }
      setImmediate(slice);
    };
    setImmediate(slice);
  }

  /** Removes the peer's entries (folding in their last counts). */
  remove(peer: ProxyPeer): void {
    this.deferred.delete(peer);
    this.generations.set(peer, ++this.generation);
    this.uninstall(peer);
    this.generations.delete(peer);
    this.remotes.delete(peer);
  }

  close(): void {
    clearInterval(this.timer);
    this.deferred.clear();
    this.remotes.clear();
    for (const peer of [...this.installed.keys()]) this.uninstall(peer);
  }

  private uninstall(peer: ProxyPeer): void {
    const entry = this.installed.get(peer);
    if (!entry) return;
    this.collect(peer, entry);
    this.installed.delete(peer);
    this.active.delete(peer);
    peer.deliversFrom6 = false;
    const loopback = `${entry.loopbackAddress}:${entry.loopbackPort}`;
    if (this.byLoopback.get(loopback) === peer) this.byLoopback.delete(loopback);
    this.program.deleteOutbound(entry.loopbackAddress, entry.loopbackPort);
    if (entry.alsoFrom) {
      const { address, port } = entry.alsoFrom;
      if (this.byLoopback.get(`${address}:${port}`) === peer) this.byLoopback.delete(`${address}:${port}`);
      this.program.deleteOutbound(address, port);
    }
    this.program.deleteInbound({ ...entry, channel: entry.channel || undefined });
    this.options.logger[this.bulk ? "debug" : "info"]({ peer: peer.publicKey }, "kernel fast path off");
  }

  /** Folds the kernel's counts since the last look into the peer's. */
  private collect(peer: ProxyPeer, entry: Installed): void {
    const now = Date.now();
    const out = this.outboundCounts(entry);
    if (out && out.packets > entry.sentPackets) {
      const packets = Number(out.packets - entry.sentPackets);
      const bytes = Number(out.bytes - entry.sentBytes);
      peer.traffic.txDatagrams += packets;
      peer.traffic.txBytes += bytes;
      peer.kernelTraffic.txDatagrams += packets;
      peer.kernelTraffic.txBytes += bytes;
      peer.lastSentAt = Math.max(peer.lastSentAt, wallClockOf(out.lastNs, now));
      entry.sentPackets = out.packets;
      entry.sentBytes = out.bytes;
      entry.activeAt = now;
      this.active.add(peer);
      peer.path?.kernelTraffic?.(packets, 0);
    }
    const inb = this.program.inboundCounters({ ...entry, channel: entry.channel || undefined });
    if (inb && inb.packets > entry.receivedPackets) {
      const packets = Number(inb.packets - entry.receivedPackets);
      const bytes = Number(inb.bytes - entry.receivedBytes);
      peer.traffic.rxDatagrams += packets;
      peer.traffic.rxBytes += bytes;
      peer.kernelTraffic.rxDatagrams += packets;
      peer.kernelTraffic.rxBytes += bytes;
      peer.lastReceivedAt = Math.max(peer.lastReceivedAt, wallClockOf(inb.lastNs, now));
      entry.receivedPackets = inb.packets;
      entry.receivedBytes = inb.bytes;
      entry.activeAt = now;
      this.active.add(peer);
      peer.path?.kernelTraffic?.(0, packets);
    }
    entry.knownAt = Math.max(entry.knownAt, Math.min(out?.readAt ?? now, inb?.readAt ?? now));
  }

  /** The entry's outbound counts: one entry's, or with `alsoFrom` both together (null: neither read). */
  private outboundCounts(entry: Installed): EntryCounters | null {
    const out = this.program.outboundCounters(entry.loopbackAddress, entry.loopbackPort);
    if (!entry.alsoFrom) return out;
    const also = this.program.outboundCounters(entry.alsoFrom.address, entry.alsoFrom.port);
    if (!out || !also) return out ?? also;
    return {
      packets: out.packets + also.packets,
      bytes: out.bytes + also.bytes,
      lastNs: out.lastNs > also.lastNs ? out.lastNs : also.lastNs,
      ...(out.readAt !== undefined || also.readAt !== undefined
        ? {
            readAt: Math.min(out.readAt ?? Number.POSITIVE_INFINITY, also.readAt ?? Number.POSITIVE_INFINITY),
          }
        : {}),
    };
  }

  /** Polls until the next that reads the quiet entries too (0: this one). */
  private quietIn = 0;

  /** Reads the active entries, and every QUIET_POLL_MS the quiet ones that moved (or all, lacking that). */
  private poll(): void {
    const now = Date.now();
    const quietRound = this.quietIn === 0;
    this.quietIn = quietRound ? Math.max(1, Math.round(QUIET_POLL_MS / POLL_MS)) - 1 : this.quietIn - 1;
    const moved = quietRound && this.program.countersMoved !== undefined;
    if (quietRound && !moved) {
      // No way to tell which quiet entries moved: every entry is read.
      for (const [peer, entry] of this.installed) this.tryCollect(peer, entry);
      return;
    }
    for (const peer of this.active) {
      const entry = this.installed.get(peer);
      if (entry && now - entry.activeAt < ACTIVE_WINDOW_MS) this.tryCollect(peer, entry);
      else this.active.delete(peer);
    }
    if (moved) void this.collectMoved();
  }

  /** Reads the entries the program says moved since the last look. */
  private async collectMoved(): Promise<void> {
    if (this.movedReading || !this.program.countersMoved) return;
    this.movedReading = true;
    const askedAt = Date.now();
    try {
      const moved = await this.program.countersMoved(this.movedInFull);
      this.movedInFull = false;
      for (const { loopback } of moved) {
        const peer = this.byLoopback.get(loopback);
        const entry = peer && this.installed.get(peer);
        if (peer && entry) this.tryCollect(peer, entry);
      }
      this.movedKnownAt = askedAt;
    } catch (err) {
      this.movedInFull = true;
      this.options.logger.debug({ err }, "kernel fast path: moved entries unreadable");
    } finally {
      this.movedReading = false;
    }
  }

  private tryCollect(peer: ProxyPeer, entry: Installed): void {
    try {
      this.collect(peer, entry);
    } catch (err) {
      this.options.logger.debug({ err, peer: peer.publicKey }, "kernel fast path: counters unreadable");
    }
  }
}
