import type { TurnConfig } from "../ice/ice-session.js";
import type { IceSessionFactory } from "../ice/ice-session-factory.js";
import type { IceSignal } from "../ice/ice-signal.js";
import type { Logger } from "../log.js";
import type { PeerSignalling } from "../peer/peer.js";
import type { KeyAgreement } from "../signalling/key-agreement.js";
import { decodeKey } from "../wireguard/keys.js";
import { IntroClient, type ServerInfo } from "./intro-client.js";
import { IntroOfflineError } from "./intro-errors.js";
import type { IntroConnectionStatus } from "./intro-status.js";
import type { IntroHostResolver } from "./server-list.js";

export interface IntroLinkOptions {
  /** The introduction server, or several (one at a time; the next when it goes away). */
  url: string | readonly string[];
  /** Resolves the servers' host names (tests; default: the system's resolver). */
  resolveHost?: IntroHostResolver;
  /** X25519 with the interface's private key: authenticates us and keys the envelopes. */
  keys: KeyAgreement;
  /** STUN servers to use instead of the introduction server's. */
  stunUrls?: string[];
  /** A TURN server to use instead of the introduction server's. */
  turn?: TurnConfig;
  /** Cap of the backoff reconnecting to the server (default 10 s: any repair of a path needs it). */
  reconnectMaxMs?: number;
  logger: Logger;
}

/** What the link tells about each peer. */
export interface IntroLinkHandlers {
  peerOnline(publicKey: string): void;
  peerOffline(publicKey: string): void;
  /** An ICE signal from the peer, authenticated and decrypted. */
  signal(publicKey: string, signal: unknown): void;
}

/** How long the server has to answer a ping when a path went suspect or signalling stalled. */
const LINK_CHECK_TIMEOUT_MS = 1000;

/**
 * After a stalled signalling exchange, check the connection at most this often: a peer that ignores
 * our offers (busy, broken or hostile) then costs a ping now and then, never the other peers' signalling.
 */
const STALL_CHECK_INTERVAL_MS = 5_000;

/** What travels in an envelope: one ICE signal. Anything else is dropped. */
interface SignalEnvelope {
  ice: unknown;
}

function isSignalEnvelope(payload: unknown): payload is SignalEnvelope {
  return typeof payload === "object" && payload !== null && "ice" in payload;
}

/**
 * Our connection to the introduction server as the peers use it: presence, ICE signals in envelopes,
 * the STUN and TURN servers it hands out, reconnecting when our network changed, and checking the
 * connection when signalling stalls.
 */
export class IntroLink {
  readonly publicKey: string;
  private readonly ownKey: Uint8Array;
  private readonly client: IntroClient;
  private readonly log: Logger;
  private serverInfo: ServerInfo | null = null;
  /** Disconnects we caused (reconnecting after a network change): not worth a warning. */
  private expectedDisconnects = 0;
  /** The check of our connection after a stall: under way (shared), and when the last one started. */
  private stallCheck: Promise<boolean> | null = null;
  private lastStallCheck = Number.NEGATIVE_INFINITY;
  private stopped = false;

  constructor(
    private readonly options: IntroLinkOptions,
    handlers: IntroLinkHandlers,
  ) {
    this.log = options.logger;
    this.client = new IntroClient({
      url: options.url,
      keys: options.keys,
      resolveHost: options.resolveHost,
      logger: options.logger,
      // A move between servers is invisible to the peers: their signals wait for it (outbox.ts).
      holdWhileMoving: true,
      // Jitter spreads the load of many clients coming back at once.
      reconnect: { maxDelayMs: options.reconnectMaxMs ?? 10_000 },
    });
    this.publicKey = this.client.publicKey;
    this.ownKey = decodeKey(this.publicKey);
    this.client.on("connected", (info) => {
      this.serverInfo = info;
      this.log.info(
        { stun: this.stunUrls().length, turn: Boolean(this.turn()) },
        "connected to the introduction server",
      );
    });
    this.client.on("server-info", (info) => {
      this.serverInfo = info;
    });
    this.client.on("disconnected", ({ code, reason, cause, server }) => {
      if (this.expectedDisconnects > 0) {
        this.expectedDisconnects--;
        return;
      }
      const servers = this.client.servers.size;
      this.log.warn(
        { url: server, cause, code, reason, servers },
        `introduction server connection lost (${cause}); established paths stay, ${servers > 1 ? "moving to another server" : "reconnecting"}`,
      );
    });
    this.client.on("peer-online", (key) => handlers.peerOnline(key));
    this.client.on("peer-offline", (key) => handlers.peerOffline(key));
    this.client.on("envelope", (key, payload) => {
      if (isSignalEnvelope(payload)) handlers.signal(key, payload.ice);
      else this.log.debug({ peer: key }, "envelope dropped: not an ICE signal");
    });
  }

  start(): void {
    this.client.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.client.stop();
  }

  /** The peers we declare (the interface's peers); others' envelopes and presence are not ours. */
  setPeers(keys: string[]): void {
    this.client.setPeers(keys);
  }

  /** Where the connection to the server stands (status). */
  status(): IntroConnectionStatus {
    return this.client.connectionStatus;
  }

  isOnline(key: string): boolean {
    return this.client.isOnline(key);
  }

  /** The peer with the smaller public key is controlling. */
  controlling(key: string): boolean {
    return Buffer.compare(Buffer.from(this.ownKey), Buffer.from(decodeKey(key))) < 0;
  }

  send(key: string, signal: IceSignal): void {
    try {
      this.client.send(key, { ice: signal });
    } catch (err) {
      if (err instanceof IntroOfflineError)
        this.log.debug({ peer: key, reason: err.reason }, "signal not sent");
      else this.log.warn({ peer: key, err }, "signal not sent");
    }
  }

  stunUrls(): string[] {
    return this.options.stunUrls ?? this.serverInfo?.stunUrls ?? [];
  }

  turn(): TurnConfig | undefined {
    if (this.options.turn) return this.options.turn;
    const t = this.serverInfo?.turn;
    return t ? { urls: t.urls, username: t.username, credential: t.credential } : undefined;
  }

  /**
   * Replaces the connection (our addresses changed: its TCP connection may be bound to an address that
   * is gone, and would notice only by its keepalive). stop() tears it down at once (peers go offline)
   * and finishes closing in the background; start() opens the new connection meanwhile.
   */
  reconnect(): void {
    if (this.stopped) return;
    if (this.client.connected) this.expectedDisconnects++;
    const closing = this.client.stop();
    this.client.start();
    void closing;
  }

  /** The connection's next attempt now, if it is waiting for one (IntroClient.retryNow). */
  retryNow(): boolean {
    return !this.stopped && this.client.retryNow();
  }

  /** A path went suspect: the network may have taken our server connection too; check it now. */
  checkServer(): void {
    void this.client.checkAlive(LINK_CHECK_TIMEOUT_MS, "a path went suspect");
  }

  /**
   * A peer did not react to our offer or restart request although the server says it is online: our
   * connection may be dead without knowing it (a NAT that forgot it), or the peer is not answering.
   * Reconnecting blindly would disrupt every other peer's signalling, so the server is pinged (at most
   * every 5 s; a check under way is shared) and the client replaces the connection only when the ping
   * goes unanswered. True then: the peer comes online again after the reconnect and restarts ICE.
   */
  async checkStalled(key: string, what: string): Promise<boolean> {
    if (this.stopped || !this.client.connected || !this.client.isOnline(key)) return false;
    let check = this.stallCheck;
    if (!check) {
      const now = performance.now();
      if (now - this.lastStallCheck < STALL_CHECK_INTERVAL_MS) return false;
      this.lastStallCheck = now;
      const started = this.client.checkAlive(LINK_CHECK_TIMEOUT_MS, "signalling went unanswered");
      this.stallCheck = check = started;
      void started.then((alive) => {
        this.stallCheck = null;
        if (alive)
          this.log.debug(
            { peer: key, what },
            "signalling unanswered but the introduction server answers: the peer is not answering",
          );
      });
    }
    return !(await check);
  }
}

/** What a Peer needs of the introduction server and ICE: this link, and sessions made by `sessions`. */
export function linkSignalling(link: IntroLink, sessions: IceSessionFactory): PeerSignalling {
  return {
    isOnline: (key) => link.isOnline(key),
    controlling: (key) => link.controlling(key),
    send: (key, signal) => link.send(key, signal),
    stalled: (key, what) => link.checkStalled(key, what),
    pathSuspect: () => link.checkServer(),
    createSession: (key, controlling, handlers, logger) =>
      sessions.create(controlling, (signal) => link.send(key, signal), handlers, logger),
  };
}
