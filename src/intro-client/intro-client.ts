/**
 * Client of the introduction server: one authenticated WebSocket, re-established with capped
 * exponential backoff; presence of mutually declared peers; end-to-end encrypted envelopes. Given
 * several servers it uses one at a time and moves to the next at once when it goes away
 * (server-list.ts); with holdWhileMoving the move loses no envelope (move-hold.ts).
 *
 *   const intro = new IntroClient({ url, keys: new LocalKeyAgreement(privateKey) });
 *   intro.on("peer-online", (key) => intro.send(key, { candidates }));
 *   intro.on("envelope", (key, payload) => ...);
 *   intro.setPeers([...]); intro.start();
 */
import { EventEmitter } from "node:events";
import { type ClientOptions, WebSocket } from "ws";
import { ConfigError } from "../errors.js";
import { createLogger, type Logger } from "../log.js";
import { EnvelopeCodec } from "../signalling/envelope.js";
import type { KeyAgreement } from "../signalling/key-agreement.js";
import {
  type ChallengeMessage,
  type ClientMessage,
  CloseCode,
  DEFAULT_MAX_DECLARED_PEERS,
  type EnvelopeMessage,
  keyFingerprint,
  MAX_MESSAGE_BYTES,
  MAX_PEERS_PER_MESSAGE,
  PROTOCOL_VERSION,
  publicKeySchema,
  type SealedEnvelope,
  type ServerInfo,
  type ServerMessage,
  serverMessageSchema,
  type WelcomeMessage,
} from "../signalling/protocol.js";
import { answerChallenge } from "./challenge-answer.js";
import { DeclaredPeers, declarationFrames, sameKeys } from "./declared-peers.js";
import { EnvelopeExchange } from "./envelope-exchange.js";
import { IntroOfflineError, IntroSendError } from "./intro-errors.js";
import type { IntroConnectionStatus } from "./intro-status.js";
import { MoveHold } from "./move-hold.js";
import { PacedQueue } from "./paced-queue.js";
import { ReconnectPolicy } from "./reconnect-policy.js";
import {
  closeVerdict,
  connectionLookup,
  describeTarget,
  IntroServerList,
  type IntroServerTarget,
} from "./server-list.js";
import { ServerLiveness } from "./server-liveness.js";

export type { ServerInfo } from "../signalling/protocol.js";

import type { IntroClientEvents, IntroClientOptions } from "./intro-client-options.js";

export type { IntroClientEvents, IntroClientOptions } from "./intro-client-options.js";

type ClientState = "stopped" | "connecting" | "online" | "waiting";

/** A connection that stayed up this long resets the backoff. */
const STABLE_CONNECTION_MS = 5_000;

export class IntroClient extends EventEmitter<IntroClientEvents> {
  readonly publicKey: string;
  /** The servers, and which one is in use. */
  readonly servers: IntroServerList;
  private readonly log: Logger;
  private readonly codec: EnvelopeCodec;
  private readonly envelopes: EnvelopeExchange;
  private readonly outgoing: PacedQueue;
  private readonly keys: KeyAgreement;
  private readonly reconnectPolicy: ReconnectPolicy;
  private readonly handshakeTimeoutMs: number;
  private readonly tls: IntroClientOptions["tls"];

  private state: ClientState = "stopped";
  private stateSince = Date.now();
  /** The transport error of the current attempt, if any (the close that follows says the rest). */
  private attemptError: string | null = null;
  private ws: WebSocket | undefined;
  private onlineSince = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private readonly liveness = new ServerLiveness();
  private turnRefreshTimer: NodeJS.Timeout | undefined;
  private currentServerInfo: ServerInfo | undefined;
  private readonly declared = new DeclaredPeers(DEFAULT_MAX_DECLARED_PEERS);
  /** The list `setPeers` was last given, as given. */
  private givenPeers: readonly string[] = [];
  private readonly onlinePeers = new Set<string>();
  /** With holdWhileMoving: what waits for a move to end, and what may need sending again. */
  private readonly moves: MoveHold | null;
  /** Peers the server says are online whose keys are still being derived. */
  private readonly pendingOnline = new Set<string>();

  constructor(options: IntroClientOptions) {
    super();
    const urls = typeof options.url === "string" ? [options.url] : options.url;
    // Each must be ws:// or wss:// (a ConfigError names the one that is not).
    this.servers = new IntroServerList(urls, options.resolveHost);
    this.keys = options.keys;
    this.publicKey = options.keys.publicKey;
    if (options.publicKey !== undefined && options.publicKey !== this.publicKey) {
      throw new ConfigError("intro-key-mismatch", "publicKey is not the public key of the private key", {
        given: options.publicKey,
        derived: this.publicKey,
      });
    }
    this.log = (options.logger ?? createLogger("intro-client")).child({
      key: keyFingerprint(this.publicKey),
    });
    this.moves = options.holdWhileMoving ? new MoveHold(this.log) : null;
    this.codec = new EnvelopeCodec({ ...options.envelope, keys: options.keys });
    this.outgoing = new PacedQueue(options.maxQueuedMessages ?? 5_000);
    this.envelopes = new EnvelopeExchange({
      codec: this.codec,
      log: this.log,
      transmit: (peer, envelope) => this.transmit(peer, envelope),
      deliver: (peer, payload) => this.emit("envelope", peer, payload),
      dropped: (peer, reason) => this.emit("envelope-dropped", peer, reason),
    });
    this.reconnectPolicy = new ReconnectPolicy({
      url: urls.join(" "),
      publicKey: this.publicKey,
      log: this.log,
      ...options.reconnect,
    });
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
    this.tls = options.tls;
  }

  /** The URL of the server in use (or being tried). */
  get url(): string {
    return this.servers.current.url;
  }

  /** True while authenticated to the server. */
  get connected(): boolean {
    return this.state === "online";
  }

  /** STUN/TURN servers from the last welcome (or refresh); undefined before the first one. */
  get serverInfo(): ServerInfo | undefined {
    return this.currentServerInfo;
  }

  /** Where the connection stands (for status). */
  get connectionStatus(): IntroConnectionStatus {
    const { failures, lastError, lastErrorAt, notMember } = this.reconnectPolicy;
    const state =
      this.state === "online"
        ? "connected"
        : this.state === "stopped"
          ? "stopped"
          : notMember
            ? "not-member"
            : failures > 0
              ? "retrying"
              : "connecting";
    const current = this.servers.current;
    return {
      url: current.url,
      address: current.address === current.host ? null : current.address,
      servers: this.servers.describe(),
      state,
      since: this.stateSince,
      failures,
      lastError,
      lastErrorAt,
    };
  }

  /**
   * Asks the server for a sign of life now (a WebSocket ping) and replaces the connection when none
   * comes within `timeoutMs`: a NAT that forgot our TCP mapping leaves the socket open and silent, and
   * the keepalive would notice only after 2.5 intervals. Used when a path goes suspect, or signalling
   * goes unanswered (`why`, for the log): when a network event may have taken the connection. One check
   * at a time (shared). True when the server answered; false when it did not (the connection is being
   * replaced, as when it closes meanwhile) or we are not online.
   */
  checkAlive(timeoutMs: number, why: string): Promise<boolean> {
    const ws = this.ws;
    if (this.state !== "online" || !ws) return Promise.resolve(false);
    return this.liveness.check(ws, timeoutMs, () => {
      if (this.ws !== ws) return;
      this.attemptError = `no answer to a ping within ${timeoutMs} ms`;
      this.log.info({ url: this.url }, `introduction server silent after ${why}: reconnecting`);
      ws.terminate();
    });
  }

  /** Whether `peer` is online at the server (and we are). */
  isOnline(peer: string): boolean {
    return this.onlinePeers.has(peer);
  }

  /** Connects and keeps connecting until stop(). */
  start(): void {
    if (this.state !== "stopped") return;
    this.reconnectPolicy.start();
    this.connect();
  }

  /**
   * Between attempts (after a refusal, a failure or not-member), the next one now instead of when its
   * backoff ends: SIGHUP after the server's operator allowed our key. False when not waiting.
   */
  retryNow(): boolean {
    if (this.state !== "waiting") return false;
    clearTimeout(this.reconnectTimer);
    this.connect();
    return true;
  }

  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    const wasOnline = this.state === "online";
    this.state = "stopped";
    this.stateSince = Date.now();
    this.reconnectPolicy.stop();
    clearTimeout(this.reconnectTimer);
    this.moves?.stop();
    const ws = this.ws;
    this.teardownConnection();
    if (ws) {
      const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
      const cutOff = setTimeout(() => ws.terminate(), 1_000);
      ws.close(CloseCode.normal, "client stopping");
      await closed;
      clearTimeout(cutOff);
    }
    if (wasOnline) {
      this.emit("disconnected", {
        code: CloseCode.normal,
        reason: "client stopped",
        cause: "client stopped",
        server: describeTarget(this.servers.current),
      });
    }
  }

  /** The keys we want presence and envelopes for; replaces the previous list, survives reconnects. */
  setPeers(publicKeys: string[]): void {
    // The very list of last time (validated then): nothing to check, build or tell.
    if (sameKeys(publicKeys, this.givenPeers)) return;
    const wanted = new Set<string>();
    for (const key of publicKeys) {
      if (!publicKeySchema.safeParse(key).success) {
        throw new ConfigError("intro-bad-peer", `not a WireGuard public key: ${JSON.stringify(key)}`);
      }
      if (key !== this.publicKey) wanted.add(key);
    }
    this.givenPeers = [...publicKeys];
    const removed = [...this.declared.keys()].filter((key) => !wanted.has(key));
    const change = this.declared.setWanted(wanted);
    for (const key of removed) {
      this.envelopes.forget(key);
      this.moves?.forget(key);
      if (this.onlinePeers.delete(key)) this.emit("peer-offline", key);
    }
    for (const key of change.remove) {
      if (this.onlinePeers.delete(key)) this.emit("peer-offline", key);
    }
    if (this.state === "online") {
      this.sendPeers("remove", change.remove);
      this.sendPeers("add", change.add);
      this.warnIfCapped();
    }
  }

  /** Wanted peers the server's cap on declarations left out (0 when all are declared). */
  get undeclaredPeers(): number {
    return this.declared.left;
  }

  private warnIfCapped(): void {
    const warning = this.declared.capWarning();
    if (warning) this.log.error({ url: this.url, ...warning.fields }, warning.message);
  }

  /**
   * Seals `payload` (JSON-serialisable) for `peer` and sends it through the server; until the peer's
   * envelope epoch is known (just after it came online) it waits for it.
   * Throws IntroOfflineError when we or the peer are not online (with holdWhileMoving, only when the
   * peer is not expected back either), IntroSendError when too large or too much waits.
   */
  send(peer: string, payload: unknown): void {
    if (this.state === "online" && this.onlinePeers.has(peer)) {
      this.sendNow(peer, payload);
      return;
    }
    if (this.moves?.holds(peer) && this.declared.has(peer)) {
      this.moves.hold(peer, payload);
      return;
    }
    if (this.state !== "online") throw new IntroOfflineError(peer, "disconnected");
    throw new IntroOfflineError(peer, "peer-offline");
  }

  /** The peer is online again after a move: what was held for it goes out, oldest first. */
  private sendHeld(peer: string): void {
    for (const held of this.moves?.take(peer) ?? []) {
      try {
        if ("sealed" in held) this.transmit(peer, held.sealed);
        else this.sendNow(peer, held.payload);
      } catch (error) {
        this.log.warn(
          { peer: keyFingerprint(peer), err: (error as Error).message },
          "a held envelope not sent",
        );
      }
    }
  }

  /** Seals and sends, or leaves it to wait for the peer's epoch (remembered, in case of a move). */
  private sendNow(peer: string, payload: unknown): void {
    const unsealed = !this.codec.knowsPeerEpoch(peer);
    this.envelopes.send(peer, payload);
    if (unsealed) this.moves?.waitingForEpoch(peer, payload);
  }

  /** Frames a sealed envelope for the server; throws IntroSendError when too large or too much waits. */
  private transmit(peer: string, envelope: SealedEnvelope): void {
    const frame = JSON.stringify({ type: "send", to: peer, envelope } satisfies ClientMessage);
    if (Buffer.byteLength(frame) > MAX_MESSAGE_BYTES) {
      throw new IntroSendError("intro-payload-too-large", `the envelope exceeds ${MAX_MESSAGE_BYTES} bytes`, {
        peer,
        bytes: Buffer.byteLength(frame),
      });
    }
    this.outgoing.push(frame);
    this.moves?.sent(peer, envelope, this.codec.knowsPeerEpoch(peer));
  }

  // ---- connection life ----

  private connect(): void {
    if (this.reconnectPolicy.failures === 0 && this.state !== "waiting") this.stateSince = Date.now();
    this.state = "connecting";
    this.attemptError = null;
    if (!this.servers.needsRefresh) {
      this.open(this.servers.current);
      return;
    }
    // Names are resolved at start and each time the list wraps around.
    void this.servers.refresh().then(() => {
      if (this.state === "connecting" && !this.ws) this.open(this.servers.current);
    });
  }

  private open(target: IntroServerTarget): void {
    this.log.debug({ url: describeTarget(target), attempt: this.reconnectPolicy.attempts }, "connecting");
    const options: ClientOptions & { lookup?: ReturnType<typeof connectionLookup> } = {
      maxPayload: MAX_MESSAGE_BYTES,
      perMessageDeflate: false,
      handshakeTimeout: this.handshakeTimeoutMs,
      ca: this.tls?.ca,
    };
    // To this address, while the name stays the Host header and the TLS servername.
    if (target.address !== null) options.lookup = connectionLookup(target.address, target.family ?? 4);
    const ws = new WebSocket(target.url, options);
    this.ws = ws;
    this.liveness.heard();
    this.handshakeTimer = setTimeout(() => {
      this.attemptError = `no answer within ${this.handshakeTimeoutMs} ms`;
      this.log.debug({ url: this.url }, "introduction handshake timed out");
      ws.terminate();
    }, this.handshakeTimeoutMs);
    ws.on("message", (data, isBinary) => {
      if (this.ws !== ws) return;
      this.liveness.heard();
      if (isBinary) {
        this.log.warn("ignoring a binary frame from the server");
        return;
      }
      this.handleMessage(ws, data.toString());
    });
    ws.on("ping", () => this.liveness.heard());
    ws.on("pong", () => {
      if (this.ws === ws) this.liveness.heard();
    });
    ws.on("error", (error: NodeJS.ErrnoException) => {
      this.attemptError = error.code ? `${error.code}: ${error.message}` : error.message;
      this.log.debug({ url: this.url, errno: error.code, err: error.message }, "connection error");
    });
    ws.on("close", (code, reason) => {
      if (this.ws === ws) this.handleClose(code, reason.toString());
    });
  }

  private handleClose(code: number, reason: string): void {
    const wasOnline = this.state === "online";
    const stable = wasOnline && Date.now() - this.onlineSince >= STABLE_CONNECTION_MS;
    // The peers online until now are expected back, wherever each of us lands (move-hold.ts).
    if (this.state !== "stopped") this.moves?.connectionLost([...this.onlinePeers, ...this.pendingOnline]);
    const server = describeTarget(this.servers.current);
    this.teardownConnection();
    if (this.state === "stopped") return;
    const firstOfStreak = wasOnline || this.reconnectPolicy.failures === 0;
    const attemptError = this.attemptError;
    // Another server, unless this one only said another process uses our key; at once while the streak
    // of failures has not yet been through every server (src/intro-client/server-list.ts).
    const verdict = closeVerdict(code);
    const failedInARow = this.reconnectPolicy.failures + 1;
    const moveOn = verdict !== "stay" && failedInARow < this.servers.size;
    if (verdict !== "stay") this.servers.advance();
    const delay = this.reconnectPolicy.ended({
      code,
      reason,
      attemptError,
      wasOnline,
      stable,
      url: server,
      moveOn,
    });
    if (firstOfStreak) this.stateSince = this.reconnectPolicy.lastErrorAt;
    if (wasOnline)
      this.emit("disconnected", {
        code,
        reason,
        cause: this.reconnectPolicy.lastError ?? `closed ${code}`,
        server,
      });
    this.state = "waiting";
    this.log.debug({ delayMs: Math.round(delay) }, "reconnecting later");
    this.reconnectTimer = setTimeout(() => {
      if (this.state === "waiting") this.connect();
    }, delay);
  }

  /** Forget everything tied to the current socket; peers go offline. */
  private teardownConnection(): void {
    clearTimeout(this.handshakeTimer);
    this.liveness.stop();
    clearTimeout(this.turnRefreshTimer);
    this.outgoing.close();
    this.ws = undefined;
    if (this.state !== "stopped") this.state = "waiting";
    const wentOffline = [...this.onlinePeers];
    this.onlinePeers.clear();
    this.pendingOnline.clear();
    for (const key of wentOffline) {
      this.envelopes.peerOffline(key);
      this.emit("peer-offline", key);
    }
  }

  // ---- messages from the server ----

  private handleMessage(ws: WebSocket, text: string): void {
    let message: ServerMessage;
    try {
      message = serverMessageSchema.parse(JSON.parse(text));
    } catch {
      this.log.warn({ bytes: text.length }, "ignoring an invalid message from the server");
      return;
    }
    switch (message.type) {
      case "challenge":
        this.answerChallenge(ws, message);
        return;
      case "welcome":
        this.handleWelcome(ws, message);
        return;
      case "presence":
        if (this.state !== "online" || !this.declared.has(message.peer)) return;
        if (message.online) {
          this.pendingOnline.add(message.peer);
          this.whenKeysReady(message.peer, () => {
            // Still online and still ours once the keys are there (an offline may have overtaken).
            if (!this.pendingOnline.delete(message.peer) || this.ws !== ws) return;
            if (this.state !== "online" || !this.declared.has(message.peer)) return;
            // Before the application hears of it: the hello goes out ahead of anything it sends, and
            // what was held for the peer during a move ahead of that.
            this.envelopes.peerOnline(message.peer);
            if (this.onlinePeers.has(message.peer)) return;
            this.sendHeld(message.peer);
            this.onlinePeers.add(message.peer);
            this.emit("peer-online", message.peer);
          });
        } else {
          const wasOnline = this.pendingOnline.delete(message.peer) || this.onlinePeers.has(message.peer);
          // It may be moving to another server: what we send meanwhile waits for it (outbox.ts).
          if (wasOnline) this.moves?.peerLeft(message.peer);
          this.envelopes.peerOffline(message.peer);
          if (this.onlinePeers.delete(message.peer)) this.emit("peer-offline", message.peer);
        }
        return;
      case "envelope":
        // A declared peer's keys are derived when it is first needed (presence or an envelope); an
        // envelope that comes meanwhile waits for them (callbacks run in arrival order).
        if (!this.declared.has(message.from)) this.handleEnvelope(message);
        else
          this.whenKeysReady(message.from, () => {
            if (this.ws === ws) this.handleEnvelope(message);
          });
        return;
      case "undeliverable":
        this.emit("undeliverable", message.to);
        return;
      case "turn-credentials":
        this.currentServerInfo = { stunUrls: this.currentServerInfo?.stunUrls ?? [], turn: message.turn };
        this.scheduleTurnRefresh();
        this.emit("server-info", this.currentServerInfo);
        return;
      case "pong":
        return;
    }
  }

  private answerChallenge(ws: WebSocket, challenge: ChallengeMessage): void {
    if (this.state !== "connecting") return;
    void answerChallenge(challenge, this.keys).then((answer) => {
      if (this.ws !== ws || this.state !== "connecting") return;
      if (answer.ok) {
        ws.send(answer.frame);
      } else if (answer.problem === "other-version") {
        this.log.error({ detail: answer.detail }, "server speaks another protocol version");
        ws.close(CloseCode.unsupportedVersion, `protocol version ${PROTOCOL_VERSION} only`);
      } else {
        this.log.warn({ err: answer.detail }, "unusable server key in the challenge");
        ws.terminate();
      }
    });
  }

  /**
   * Runs `then` now if the peer's keys are derived, else once they are (never if they cannot be: a bad
   * key is logged, its envelopes dropped). Keys are derived here, when a peer is first needed, not
   * when it is declared: a hub declares thousands of peers whose owners are mostly offline, and each
   * derivation is an X25519 asked of the privileged parent (issue 15).
   */
  private whenKeysReady(peer: string, then: () => void): void {
    if (this.codec.hasKeys(peer)) {
      then();
      return;
    }
    this.codec.prepare(peer).then(then, (error: unknown) => {
      this.log.warn({ peer: keyFingerprint(peer), err: (error as Error).message }, "unusable peer key");
      this.emit("envelope-dropped", peer, "bad-peer-key");
    });
  }

  private handleWelcome(ws: WebSocket, welcome: WelcomeMessage): void {
    if (this.state !== "connecting" || welcome.publicKey !== this.publicKey) return;
    clearTimeout(this.handshakeTimer);
    this.state = "online";
    this.onlineSince = Date.now();
    this.outgoing.open(ws, welcome.limits);
    this.currentServerInfo = { stunUrls: welcome.stunUrls, turn: welcome.turn };

    this.liveness.watch(ws, welcome.keepaliveSeconds, () => {
      this.attemptError = "server silent (keepalive)";
      this.log.warn({ url: this.url }, "introduction server silent: reconnecting");
      ws.terminate();
    });

    this.scheduleTurnRefresh();
    const after = this.reconnectPolicy.connected();
    this.log.info(
      { url: describeTarget(this.servers.current), after },
      "connected to the introduction server",
    );
    this.moves?.connectionBack();
    this.stateSince = Date.now();
    const peers = this.declared.connected(welcome.limits.maxDeclaredPeers);
    this.sendPeers("replace", peers.slice(0, MAX_PEERS_PER_MESSAGE));
    this.sendPeers("add", peers.slice(MAX_PEERS_PER_MESSAGE));
    this.warnIfCapped();
    this.emit("connected", this.currentServerInfo);
  }

  private handleEnvelope(message: EnvelopeMessage): void {
    if (!this.declared.has(message.from)) {
      this.emit("envelope-dropped", message.from, "undeclared-peer");
      return;
    }
    this.envelopes.receive(message.from, message.envelope);
  }

  private scheduleTurnRefresh(): void {
    clearTimeout(this.turnRefreshTimer);
    const turn = this.currentServerInfo?.turn;
    if (!turn) return;
    // Ask again at 80% of the lifetime so the credentials in use never expire.
    const delay = Math.min(turn.ttlSeconds * 800, 2 ** 31 - 1);
    this.turnRefreshTimer = setTimeout(() => {
      if (this.state === "online")
        this.outgoing.pushControl(JSON.stringify({ type: "turn-refresh" } satisfies ClientMessage));
    }, delay);
    this.turnRefreshTimer.unref();
  }

  // ---- declarations ----

  private sendPeers(op: "replace" | "add" | "remove", keys: string[]): void {
    for (const frame of declarationFrames(op, keys)) this.outgoing.pushControl(frame);
  }
}
