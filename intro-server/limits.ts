/** The introduction server's limits: per-connection budgets and the caps that bound its memory. */

export interface IntroServerLimits {
  /** A connection must authenticate within this time (close 4006). */
  authTimeoutMs: number;
  /** A connection that sends nothing, not even a pong, for this long is closed (4007). */
  idleTimeoutMs: number;
  /** The server pings every connection this often; also the granularity of the idle check. */
  pingIntervalMs: number;
  /** Sustained messages per second per connection, and the burst allowed above it (4008). */
  messagesPerSecond: number;
  messageBurst: number;
  /** Sustained bytes per second per connection, and the burst allowed above it (4008). */
  bytesPerSecond: number;
  byteBurst: number;
  /** Keys one connection may declare (4009). */
  maxDeclaredPeers: number;
  /** Keys all connections from one address (IPv6: one /64) may declare together, and all (4009). */
  maxDeclaredPeersPerAddress: number;
  maxDeclaredPeersTotal: number;
  /** An envelope for a connection with more than this queued in its socket is not relayed. */
  maxBufferedBytes: number;
  /**
   * Connections not yet authenticated (from TCP accept to `welcome`) per address and in all; one
   * over is answered HTTP 503 instead of the WebSocket upgrade.
   */
  maxPreAuthPerAddress: number;
  maxPreAuthTotal: number;
  /** Authenticated connections per address and in all (4014). */
  maxAuthenticatedPerAddress: number;
  maxAuthenticatedTotal: number;
  /** HTTP: time to send the request headers (TLS handshake included), and the whole request. */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  /** HTTP: largest request header block (431 above). */
  maxHeaderBytes: number;
}

export const DEFAULT_LIMITS: IntroServerLimits = {
  authTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  pingIntervalMs: 20_000,
  messagesPerSecond: 200,
  messageBurst: 400,
  bytesPerSecond: 512 * 1024,
  byteBurst: 1024 * 1024,
  maxDeclaredPeers: 1_024,
  maxDeclaredPeersPerAddress: 32_768,
  maxDeclaredPeersTotal: 1_000_000,
  maxBufferedBytes: 1024 * 1024,
  maxPreAuthPerAddress: 64,
  maxPreAuthTotal: 2_048,
  maxAuthenticatedPerAddress: 256,
  maxAuthenticatedTotal: 20_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 15_000,
  maxHeaderBytes: 8 * 1024,
};
