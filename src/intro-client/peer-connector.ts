import { EventEmitter } from "node:events";
import type { Logger } from "../log.js";
import { decodeKey } from "../mac1/keys.js";
import type { PeerPath } from "../proxy/path.js";
import { createCandidateFilter } from "./candidate-filter.js";
import { IceSession, type IceSessionState, type TurnConfig } from "./ice-session.js";
import type { IceSignal } from "./ice-signal.js";
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
}

export interface PeerConnectorEvents {
  /** The ICE path of a peer changed: a newly nominated pair, or null when it was lost. */
  path: [publicKey: string, path: PeerPath | null];
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
}

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
  private readonly exclude: ReturnType<typeof createCandidateFilter>;
  private stopped = false;

  constructor(private readonly options: PeerConnectorOptions) {
    super();
    this.log = options.logger;
    this.client = new IntroClient({
      url: options.introUrl,
      privateKey: options.privateKey,
      logger: options.logger,
    });
    this.ownKey = decodeKey(this.client.publicKey);
    this.exclude = createCandidateFilter({
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
    this.client.on("disconnected", ({ code, reason }) =>
      this.log.warn({ code, reason }, "introduction server connection lost; established paths stay"),
    );
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
      if (!this.peers.has(key)) this.peers.set(key, { session: null, retries: 0, retryTimer: null });
    }
    this.client.setPeers([...wanted]);
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

  /**
   * WireGuard wants to reach a peer that has no path (or an unanswered handshake says the path is
   * dead): connect now, or restart ICE at once, keeping the old path until a new pair is nominated.
   */
  connect(key: string, reason: string): void {
    const entry = this.peers.get(key);
    if (!entry || !this.client.isOnline(key)) return;
    const session = entry.session;
    if (!session) {
      this.ensureSession(key, entry);
      return;
    }
    if (session.state === "connecting" || session.state === "restarting") return;
    session.restart(reason);
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
    if (entry.session && this.controlling(key)) {
      // The peer came back (its Tunnelbore restarted, or it reconnected): its agents may be gone.
      entry.session.restart("peer online again");
      return;
    }
    this.ensureSession(key, entry);
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
      excludeAddresses: this.exclude,
      logger: log,
    });
    entry.session = session;
    session.on("path", (path) => {
      entry.retries = 0;
      this.emit("path", key, path);
    });
    session.on("failed", (failure) => {
      if (failure.pathLost) this.emit("path", key, null);
      this.scheduleRetry(key, entry);
    });
    session.start();
    log.info({ controlling }, "ice session started");
    return session;
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
    if (entry.retryTimer) clearTimeout(entry.retryTimer);
    const session = entry.session;
    entry.session = null;
    if (session) {
      this.emit("path", key, null);
      await session.close();
    }
  }
}
