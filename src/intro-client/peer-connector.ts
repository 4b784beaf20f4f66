import { EventEmitter } from "node:events";
import { createCandidateFilter } from "../ice/candidate-filter.js";
import type { IcePath } from "../ice/ice-path.js";
import {
  IceSession,
  type IceSessionState,
  type TurnConfig,
  type TurnTransportHint,
} from "../ice/ice-session.js";
import type { IceSignal } from "../ice/ice-signal.js";
import type { Logger } from "../log.js";
import type { PeerPath } from "../proxy/path.js";
import { decodeKey } from "../wireguard/keys.js";
import { IntroClient, IntroOfflineError, type ServerInfo } from "./intro-client.js";

export interface PeerConnectorOptions {
  introUrl: string;
  /** The WireGuard interface's private key: authenticates us and keys the envelopes. Never logged. */
  privateKey: Uint8Array;
  /** STUN servers to use instead of the introduction server's. */
  stunUrls?: string[];
  /** A TURN server to use instead of the introduction server's. */
  turn?: TurnConfig;
  /** Interfaces whose addresses never become candidates (the WireGuard interface is always one). */
  excludeInterfaces: string[];
  /** Addresses and ranges never used as candidates (the tunnel's allowed IPs). */
  excludeAddresses: string[];
  logger: Logger;
  /** Retry backoff after a failed attempt: from the first to the cap (DESIGN: about 30 s). */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Backoff of the attempts to replace a relay path by a direct one (default 5 s, doubling to retryMaxMs). */
  upgradeInitialMs?: number;
  /** Cap of the backoff reconnecting to the introduction server (default 10 s). */
  introReconnectMaxMs?: number;
}

export interface PeerConnectorEvents {
  /** The ICE path of a peer changed: a newly nominated pair, or null when it was lost (with why). */
  path: [publicKey: string, path: PeerPath | null, reason: string];
}

/** What travels in an envelope: one ICE signal. Anything else is dropped. */
interface SignalEnvelope {
  ice: unknown;
}

function isSignalEnvelope(payload: unknown): payload is SignalEnvelope {
  return typeof payload === "object" && payload !== null && "ice" in payload;
}

interface PeerEntry {
  session: IceSession | null;
  retries: number;
  retryTimer: NodeJS.Timeout | null;
  upgrades: number;
  upgradeTimer: NodeJS.Timeout | null;
  /** A local network change is waiting for the peer to be online (again) to restart ICE. */
  networkRestart: string | null;
}

/** After a stalled signalling exchange, reconnect to the introduction server at most this often. */
const STALL_RECONNECT_INTERVAL_MS = 10_000;

/** Probes sent to check the path of a peer that came back online at the introduction server. */
const VERIFY_PROBES = 2;
const VERIFY_PROBE_TIMEOUT_MS = 500;

/**
 * Connects our WireGuard peers through ICE: one IceSession per peer, signalled through end-to-end
 * encrypted envelopes of the introduction server. The peer with the smaller public key is controlling.
 * Peers are connected as soon as both are online (proactively), and again on demand.
 */
export class PeerConnector extends EventEmitter<PeerConnectorEvents> {
  readonly client: IntroClient;
  private readonly ownKey: Uint8Array;
  private readonly peers = new Map<string, PeerEntry>();
  private serverInfo: ServerInfo | null = null;
  private readonly log: Logger;
  private filter: ReturnType<typeof createCandidateFilter>;
  private excludedAddresses: string;
  /**
   * Whether an address may never be an ICE candidate. Handed to every session once; it asks the
   * current filter, so later changes reach all of them.
   */
  readonly isExcludedAddress = (address: string): boolean => this.filter(address);
  private stopped = false;
  /** Disconnects we caused (reconnecting after a network change): not worth a warning. */
  private expectedDisconnects = 0;
  private lastStallReconnect = Number.NEGATIVE_INFINITY;
  /** Learnt by any session, used by all: this network lets TURN over TCP out but not over UDP. */
  private readonly turnHint: TurnTransportHint = { udpBlocked: false };

  constructor(private readonly options: PeerConnectorOptions) {
    super();
    this.log = options.logger;
    this.client = new IntroClient({
      url: options.introUrl,
      privateKey: options.privateKey,
      logger: options.logger,
      // Any repair of a path needs the server: come back soon after it does (jitter spreads the load).
      reconnect: { maxDelayMs: options.introReconnectMaxMs ?? 10_000 },
    });
    this.ownKey = decodeKey(this.client.publicKey);
    this.excludedAddresses = options.excludeAddresses.join(",");
    this.filter = createCandidateFilter({
      excludeInterfaces: options.excludeInterfaces,
      excludeAddresses: options.excludeAddresses,
    });
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
    this.client.on("disconnected", ({ code, reason }) => {
      if (this.expectedDisconnects > 0) {
        this.expectedDisconnects--;
        return;
      }
      this.log.warn({ code, reason }, "introduction server connection lost; established paths stay");
    });
    this.client.on("peer-online", (key) => this.onPeerOnline(key));
    this.client.on("envelope", (key, payload) => this.onEnvelope(key, payload));
  }

  start(): void {
    this.client.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.client.stop();
    await Promise.all([...this.peers.keys()].map((key) => this.removePeer(key)));
  }

  /** The peers to connect (the interface's peers); others' envelopes are dropped. */
  setPeers(keys: string[]): void {
    const wanted = new Set(keys);
    for (const key of [...this.peers.keys()]) if (!wanted.has(key)) void this.removePeer(key);
    for (const key of wanted) {
      if (!this.peers.has(key))
        this.peers.set(key, {
          session: null,
          retries: 0,
          retryTimer: null,
          upgrades: 0,
          upgradeTimer: null,
          networkRestart: null,
        });
    }
    this.client.setPeers([...wanted]);
  }

  /** The tunnel's ranges changed (peers or allowed IPs added or removed): exclude the new set. */
  setExcludedAddresses(ranges: string[]): void {
    const joined = ranges.join(",");
    if (joined === this.excludedAddresses) return;
    try {
      this.filter = createCandidateFilter({
        excludeInterfaces: this.options.excludeInterfaces,
        excludeAddresses: ranges,
      });
      this.excludedAddresses = joined;
    } catch (err) {
      this.log.warn({ err }, "tunnel ranges not usable as candidate exclusions; keeping the previous ones");
    }
  }

  isOnline(key: string): boolean {
    return this.client.isOnline(key);
  }

  /** The peer's ICE state for status, or null when no ICE session exists. */
  state(key: string): IceSessionState | null {
    return this.peers.get(key)?.session?.state ?? null;
  }

  selectedPair(key: string): IceSession["selectedPair"] {
    return this.peers.get(key)?.session?.selectedPair ?? null;
  }

  /** True while a new generation is under way to replace a path we doubt (not an upgrade attempt). */
  repairing(key: string): boolean {
    return this.peers.get(key)?.session?.repairing ?? false;
  }

  /**
   * WireGuard wants to reach a peer that has no path, or the path is suspect: connect now, or restart
   * ICE at once, keeping the old path until a new pair is nominated. A first attempt or a repair already
   * under way is left to finish; an upgrade attempt (it gathers no relay) or a restart the peer started
   * on its own (it may be one) does not stand in the way.
   */
  connect(key: string, reason: string): void {
    const entry = this.peers.get(key);
    if (!entry || !this.client.isOnline(key)) return;
    const session = entry.session;
    if (!session) {
      this.ensureSession(key, entry);
      return;
    }
    if (session.state === "connecting" || (session.state === "restarting" && session.repairing)) return;
    session.restart(reason);
  }

  /**
   * Our addresses or routes changed: every candidate gathered so far may be stale, and so may the
   * connection to the introduction server (its TCP connection may be bound to an address that is gone,
   * and would notice only by its keepalive). Reconnect to the server at once; every peer restarts ICE
   * (an attempt under way too) as soon as it is online again there. Backoffs start over.
   */
  networkChanged(reason: string): void {
    if (this.stopped) return;
    this.turnHint.udpBlocked = false;
    for (const entry of this.peers.values()) {
      entry.retries = 0;
      entry.upgrades = 0;
      this.clearTimers(entry);
      entry.networkRestart = reason;
    }
    this.reconnectIntro();
  }

  /**
   * Replaces the connection to the introduction server. stop() tears it down at once (peers go offline)
   * and finishes closing in the background; start() opens the new connection meanwhile.
   */
  private reconnectIntro(): void {
    if (this.client.connected) this.expectedDisconnects++;
    const closing = this.client.stop();
    this.client.start();
    void closing;
  }

  /**
   * The peer did not react to our offer or restart request although the server says it is online: our
   * connection to the server may be dead without knowing it (a NAT that forgot it). Reconnect, and
   * restart ICE with the peer once it is online again.
   */
  private onStalled(key: string, entry: PeerEntry, what: string): void {
    if (this.stopped || !this.client.connected || !this.client.isOnline(key)) return;
    const now = performance.now();
    if (now - this.lastStallReconnect < STALL_RECONNECT_INTERVAL_MS) return;
    this.lastStallReconnect = now;
    this.log.info({ peer: key, what }, "signalling unanswered; reconnecting to the introduction server");
    entry.networkRestart = `signalling stalled: ${what}`;
    this.reconnectIntro();
  }

  /** The liveness monitor gave up on the peer's path (no answer for long): drop it; retries follow. */
  pathDead(key: string): void {
    this.peers.get(key)?.session?.expirePath();
  }

  private controlling(key: string): boolean {
    return Buffer.compare(Buffer.from(this.ownKey), Buffer.from(decodeKey(key))) < 0;
  }

  private stunUrls(): string[] {
    return this.options.stunUrls ?? this.serverInfo?.stunUrls ?? [];
  }

  private turn(): TurnConfig | undefined {
    if (this.options.turn) return this.options.turn;
    const t = this.serverInfo?.turn;
    return t ? { urls: t.urls, username: t.username, credential: t.credential } : undefined;
  }

  private onPeerOnline(key: string): void {
    const entry = this.peers.get(key);
    if (!entry) return;
    const session = entry.session;
    const networkRestart = entry.networkRestart;
    entry.networkRestart = null;
    if (session && networkRestart) {
      session.restart(networkRestart);
      return;
    }
    if (session && (session.state === "connecting" || session.repairing)) {
      // An attempt was under way while we (or the peer) were away from the server: its signals may be
      // lost. Start it again (the controlled side asks for it).
      session.restart("signalling reconnected");
      return;
    }
    if (!session) {
      const created = this.ensureSession(key, entry);
      // A fresh controlled session asks for an offer at once: if the peer still has a path to our previous
      // process, that path is dead and it would otherwise notice only by its probes.
      if (!created.controlling) created.restart("new session");
      return;
    }
    if (!this.controlling(key)) {
      if (session.state === "failed") session.restart("peer online again");
      return;
    }
    // The peer came back: it reconnected to the server (its agents live on) or its Tunnelbore restarted
    // (they are gone), or its network changed. A path that still answers probes is kept (an upgrade
    // attempt under way goes on); otherwise restart.
    const path = session.path;
    if (!path || session.state === "failed") {
      session.restart("peer online again");
      return;
    }
    void this.verifyPath(key, entry, session, path);
  }

  private async verifyPath(key: string, entry: PeerEntry, session: IceSession, path: IcePath): Promise<void> {
    for (let i = 0; i < VERIFY_PROBES; i++) {
      if ((await path.probe(VERIFY_PROBE_TIMEOUT_MS)) !== null) return;
    }
    if (entry.session !== session || session.path !== path || this.stopped) return;
    this.log.debug({ peer: key }, "path of a peer back online does not answer");
    if (!session.repairing) session.restart("peer online again");
  }

  private onEnvelope(key: string, payload: unknown): void {
    const entry = this.peers.get(key);
    if (!entry || !isSignalEnvelope(payload)) {
      this.log.debug({ peer: key }, "envelope dropped: not an ICE signal of a configured peer");
      return;
    }
    this.ensureSession(key, entry).handleSignal(payload.ice);
  }

  private ensureSession(key: string, entry: PeerEntry): IceSession {
    if (entry.session) return entry.session;
    const controlling = this.controlling(key);
    const log = this.log.child({ peer: key });
    const session = new IceSession({
      controlling,
      sendSignal: (message) => this.sendSignal(key, message),
      stunUrls: this.stunUrls(),
      turn: this.turn(),
      excludeAddresses: this.isExcludedAddress,
      logger: log,
      turnHint: this.turnHint,
    });
    entry.session = session;
    session.on("path", (path) => {
      entry.retries = 0;
      if (entry.retryTimer) clearTimeout(entry.retryTimer);
      entry.retryTimer = null;
      if (path.kind === "relay") {
        this.scheduleUpgrade(key, entry);
      } else {
        entry.upgrades = 0;
        if (entry.upgradeTimer) clearTimeout(entry.upgradeTimer);
        entry.upgradeTimer = null;
      }
      this.emit("path", key, path, path.reason);
    });
    session.on("stalled", (what) => this.onStalled(key, entry, what));
    session.on("failed", (failure) => {
      if (failure.pathLost) {
        this.emit(
          "path",
          key,
          null,
          failure.reason === "consent-expired" ? "path unanswered" : failure.reason,
        );
        this.scheduleRetry(key, entry);
        return;
      }
      // A path is still up; only the controlling side keeps looking for a better one.
      if (session.path?.kind === "relay") this.scheduleUpgrade(key, entry);
    });
    session.start();
    log.info({ controlling }, "ice session started");
    return session;
  }

  /**
   * Controlling side with a relay path: try for a direct path with capped exponential backoff, for as long
   * as the path is relayed (the NAT in the way may change, e.g. the user moves to another network).
   */
  private scheduleUpgrade(key: string, entry: PeerEntry): void {
    const session = entry.session;
    if (this.stopped || entry.upgradeTimer || !session?.canUpgrade) return;
    const initial = this.options.upgradeInitialMs ?? 5000;
    const cap = this.options.retryMaxMs ?? 30_000;
    const delay = Math.min(cap, initial * 2 ** entry.upgrades) * (0.75 + Math.random() * 0.25);
    entry.upgrades++;
    entry.upgradeTimer = setTimeout(() => {
      entry.upgradeTimer = null;
      if (this.stopped || entry.session !== session || session.path?.kind !== "relay") return;
      if (!this.client.isOnline(key) || session.state !== "connected") {
        this.scheduleUpgrade(key, entry);
        return;
      }
      session.restart("upgrade to a direct path", "upgrade");
    }, delay);
    entry.upgradeTimer.unref();
  }

  private clearTimers(entry: PeerEntry): void {
    if (entry.retryTimer) clearTimeout(entry.retryTimer);
    if (entry.upgradeTimer) clearTimeout(entry.upgradeTimer);
    entry.retryTimer = null;
    entry.upgradeTimer = null;
  }

  /** A failed attempt is retried with capped exponential backoff and jitter, never given up. */
  private scheduleRetry(key: string, entry: PeerEntry): void {
    if (this.stopped || entry.retryTimer) return;
    const initial = this.options.retryInitialMs ?? 1000;
    const cap = this.options.retryMaxMs ?? 30_000;
    const delay = Math.min(cap, initial * 2 ** entry.retries) * (0.75 + Math.random() * 0.5);
    entry.retries++;
    entry.retryTimer = setTimeout(() => {
      entry.retryTimer = null;
      if (this.stopped || !this.client.isOnline(key)) return;
      entry.session?.restart("retry after failure");
    }, delay);
    entry.retryTimer.unref();
  }

  private sendSignal(key: string, message: IceSignal): void {
    try {
      this.client.send(key, { ice: message });
    } catch (err) {
      if (err instanceof IntroOfflineError)
        this.log.debug({ peer: key, reason: err.reason }, "signal not sent");
      else this.log.warn({ peer: key, err }, "signal not sent");
    }
  }

  private async removePeer(key: string): Promise<void> {
    const entry = this.peers.get(key);
    if (!entry) return;
    this.peers.delete(key);
    this.clearTimers(entry);
    const session = entry.session;
    entry.session = null;
    if (session) {
      this.emit("path", key, null, "peer removed");
      await session.close();
    }
  }
}
