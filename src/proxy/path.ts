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
  /** Set by the proxy: the path calls it whenever `udpRoute()` would answer differently. */
  onRouteChange?: (() => void) | null;
  /** Told what the kernel fast path forwarded on this path since the last call (datagrams each way). */
  kernelTraffic?(sent: number, received: number): void;
}

export interface UdpRoute {
  localAddress: string | null;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
}
