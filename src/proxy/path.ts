import { isIP } from "node:net";

/** How a peer's datagrams travel: ICE host/srflx pair, ICE via TURN, or the peer's configured endpoint. */
export type PathKind = "direct" | "relay" | "static";

/**
 * One way to reach a peer. The proxy sends WireGuard's datagrams with `send`, and sets `onDatagram`
 * to receive the peer's datagrams; a path delivers only datagrams from its selected remote address.
 */
export interface PeerPath {
  readonly kind: PathKind;
  /** The remote address as "ip:port" (for status and logs). */
  readonly remote: string;
  send(datagram: Buffer): void;
  onDatagram: ((datagram: Buffer) => void) | null;
  close(): void;
  /**
   * The UDP socket and remote the path sends on, unwrapped (direct ICE, static), for the kernel fast
   * path; null when datagrams are wrapped (relay) or the path is not ready. A null localAddress means
   * the socket is bound to the wildcard address (the kernel picks the source by route).
   */
  udpRoute?(): UdpRoute | null;
  /**
   * A relayed path on our own TURN allocation over UDP with a channel bound to the peer's address: the
   * allocation's five-tuple (our TURN client socket, the TURN server) and the channel number, for the
   * kernel fast path to add and strip ChannelData headers. Null otherwise (no allocation of ours, TCP/TLS
   * TURN, channel not bound yet: those datagrams stay in user space).
   */
  channelRoute?(): ChannelRoute | null;
  /** Set by the proxy: the path calls it whenever `udpRoute()` or `channelRoute()` would answer differently. */
  onRouteChange?: (() => void) | null;
  /** Told what the kernel fast path forwarded on this path since the last call (datagrams each way). */
  kernelTraffic?(sent: number, received: number): void;
  /** How its datagrams leave this host, for the MTU check (src/wg/mtu-check.ts); null: not known yet. */
  leg?(): PathLeg | null;
}

/**
 * How a path's datagrams leave this host: the IP family of the hop they are sent to (the peer, the
 * peer's TURN server, or our own), and our TURN allocation's transport when they go through it (null:
 * plain UDP to that hop).
 */
export interface PathLeg {
  readonly family: 4 | 6;
  readonly turn: "udp" | "tcp" | "tls" | null;
}

/** "::ffff:a.b.c.d", as a dual-stack socket names an IPv4 peer, as the IPv4 address it is on the wire. */
export function unmappedIpv4(address: string): string {
  return address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, "$1");
}

/** The leg of datagrams sent to `address`; null when it is not an address (a name not resolved yet). */
export function legTo(address: string, turn: PathLeg["turn"] = null): PathLeg | null {
  const family = isIP(unmappedIpv4(address));
  return family === 4 || family === 6 ? { family, turn } : null;
}

/**
 * A UDP flow as this host sees it: our address and port, the peer's address and port (the protocol is
 * always UDP). The kernel fast path's inbound key, and what its entries rewrite datagrams to.
 */
export interface FiveTuple {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
}

/** A path's five-tuple, with a null localAddress while the socket is bound to the wildcard address. */
export interface UdpRoute extends Omit<FiveTuple, "localAddress"> {
  localAddress: string | null;
}

/**
 * A TURN allocation's flow (local: our TURN client socket; remote: the TURN server) and the channel
 * (0x4000-0x7FFF, RFC 8656 §12) bound to the peer's address on it.
 */
export interface ChannelRoute extends FiveTuple {
  channel: number;
}

/** True when both name the same flow (other fields, e.g. of an entry that extends FiveTuple, are ignored). */
export function sameFiveTuple(a: FiveTuple, b: FiveTuple): boolean {
  return (
    a.localAddress === b.localAddress &&
    a.localPort === b.localPort &&
    a.remoteAddress === b.remoteAddress &&
    a.remotePort === b.remotePort
  );
}
