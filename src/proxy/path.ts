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
}
