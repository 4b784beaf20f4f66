/** What the introduction server takes and offers: its options, statistics and handle. */
import type { Logger } from "../src/log.js";
import type { ClusterTiming } from "./cluster/redis-cluster-bus.js";
import type { IntroServerLimits } from "./limits.js";
import type { IntroServerMetrics } from "./server-metrics.js";

export interface IntroServerOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /**
   * STUN responder on UDP; default port 3478 on `host`. false turns it off. `altPort`: the second port
   * it answers on, advertised next to the first (default 0: a free port; see stun.ts).
   */
  stun?: { port: number; host?: string; altPort?: number } | false;
  turn?: { urls: string[]; secret: string; ttlSeconds?: number };
  /** PEM certificate and key: the server speaks wss. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Host name put in the STUN URLs; default: the Host header the client connected with. */
  publicHost?: string;
  limits?: Partial<IntroServerLimits>;
  /**
   * The keys served (`--allowed-keys`); any other is closed with 4013 right after it authenticates.
   * Undefined: a public server that serves every key.
   */
  allowedKeys?: ReadonlySet<string>;
  logger?: Logger;
  /** Told of authentications, relays, refusals (`--metrics`); none by default. */
  metrics?: IntroServerMetrics;
  /**
   * `--cluster URL`: share presence and envelope routing with the other nodes on this Redis;
   * `timing` shortens heartbeats and holds (tests).
   */
  cluster?: { url: string; timing?: Partial<ClusterTiming> };
  /** Sees every relayed message as received, before it is forwarded (tests, metrics). */
  onRelay?: (relay: RelayObservation) => void;
}

export interface RelayObservation {
  from: string;
  to: string;
  /** The text frame exactly as the sender sent it. */
  frame: string;
}

export interface IntroServerStats {
  connections: number;
  /** Connections (TCP accepted, WebSocket or not yet) that have not authenticated. */
  unauthenticated: number;
  authenticated: number;
  relayed: number;
  undeliverable: number;
  closes: Record<number, number>;
}

export interface IntroServer {
  port: number;
  host: string;
  url: string;
  stunPort?: number;
  /** The STUN responder's alternate port, when bound. */
  stunAltPort?: number;
  stats(): IntroServerStats;
  /** Replaces the allowed keys: connections of keys no longer listed are closed (4013). */
  setAllowedKeys(keys: ReadonlySet<string>): void;
  close(): Promise<void>;
}
