/**
 * The introduction server: authenticates WireGuard keys, tells mutually declared peers about each
 * other's presence and relays their opaque envelopes. It keeps no state but its live connections.
 */
import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import { createLogger } from "../src/log.js";
import {
  type AuthMessage,
  CloseCode,
  keyFingerprint,
  MAX_MESSAGE_BYTES,
  MAX_PEERS_PER_MESSAGE,
  type PeersMessage,
  PROTOCOL_VERSION,
  type SendMessage,
} from "../src/signalling/protocol.js";
import {
  authProof,
  generateX25519KeyPair,
  proofsEqual,
  type X25519KeyPair,
  x25519,
} from "../src/signalling/signalling-crypto.js";
import { TokenBucket } from "../src/signalling/signalling-rate.js";
import { frameBytes, parseClientFrame } from "./client-frame.js";
import { ClusterNode, localConnections, type ServerActions } from "./cluster/cluster-node.js";
import { ClusterRelay } from "./cluster/cluster-relay.js";
import { stamp, startLoopTrace } from "./cluster/envelope-trace.js";
import { DEFAULT_CLUSTER_TIMING, RedisClusterBus } from "./cluster/redis-cluster-bus.js";
import { AddressCounter, addressBucket, type CapVerdict } from "./connection-caps.js";
import { formatHost, hostFromHeader } from "./host-names.js";
import { createHttpFront, listenHttp } from "./http-front.js";
import { KeepaliveSweep } from "./keepalive-sweep.js";
import { DEFAULT_LIMITS, type IntroServerLimits } from "./limits.js";
import { LogThrottle } from "./log-throttle.js";
import type { IntroServer, IntroServerOptions, IntroServerStats } from "./server-api.js";
import { NO_INTRO_SERVER_METRICS } from "./server-metrics.js";
import { DRAIN_CLOSE_MS, DRAIN_REASON, shutDown } from "./shutdown.js";
import { type StunResponder, startStunResponder } from "./stun.js";
import { type IssuedTurnCredentials, refreshTurnCredentials } from "./turn-credentials.js";
import { UpgradePacer } from "./upgrade-pacer.js";

export { DEFAULT_LIMITS, type IntroServerLimits } from "./limits.js";

export type {
  IntroServer,
  IntroServerOptions,
  IntroServerStats,
  RelayObservation,
} from "./server-api.js";

type ConnectionState = "awaiting-auth" | "authenticated" | "closing";

interface Connection {
  readonly id: number;
  readonly ws: WebSocket;
  readonly remote: string;
  /** The TCP (or TLS) socket under the WebSocket, for the unauthenticated count. */
  readonly socket: Socket;
  /** What the caps count this connection's address as (IPv6: its /64). */
  readonly bucket: string;
  readonly urlHost: string;
  state: ConnectionState;
  challenge?: { keyPair: X25519KeyPair; nonce: Buffer };
  authTimer?: NodeJS.Timeout;
  publicKey?: string;
  declared: Set<string>;
  turn?: IssuedTurnCredentials;
  lastSeen: number;
  messages: TokenBucket;
  bytes: TokenBucket;
  /** Cluster: the key is recorded in the engine (claimed), and its first declaration too. */
  claimed: boolean;
  clusterDeclared: boolean;
  /** Told to move (4011) at a drain: its frames are still relayed until its close completes. */
  draining: boolean;
}

/**
 * The server's WebSocket: it carries its connection, so that one set of handlers serves every socket
 * (a handler closure per connection and event would cost ~0.5 KiB per client).
 */
class IntroSocket extends WebSocket {
  connection?: Connection;
}

/** Closes not worth a line each: orderly ones, and refusals a stranger can repeat (LogThrottle logs those). */
const QUIET_CLOSES = new Set<number>([
  CloseCode.normal,
  CloseCode.serverShutdown,
  CloseCode.notMember,
  CloseCode.tooManyConnections,
  CloseCode.tooManyPeers,
]);

/** Time a turn of the event loop gives WebSocket upgrades (a key pair and a challenge each): see UpgradePacer. */
const UPGRADE_MS_PER_TURN = 25;

interface PendingUpgrade {
  request: IncomingMessage;
  socket: Duplex;
  head: Buffer;
}

/** Close reasons are limited to 123 bytes by RFC 6455. */
function closeReason(text: string): string {
  return Buffer.byteLength(text) <= 123 ? text : Buffer.from(text).subarray(0, 120).toString("utf8");
}

export async function startIntroServer(options: IntroServerOptions = {}): Promise<IntroServer> {
  const limits: IntroServerLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const log = options.logger ?? createLogger("intro-server");
  const host = options.host ?? "127.0.0.1";
  const turn = options.turn ? { ...options.turn, ttlSeconds: options.turn.ttlSeconds ?? 3600 } : undefined;
  let allowedKeys = options.allowedKeys;
  const throttle = new LogThrottle(log);
  const metrics = options.metrics ?? NO_INTRO_SERVER_METRICS;
  // In a cluster the engine counts per address across nodes; each node keeps its own totals.
  const perAddress = (cap: number) => (options.cluster ? Number.MAX_SAFE_INTEGER : cap);
  const authenticatedCount = new AddressCounter(
    perAddress(limits.maxAuthenticatedPerAddress),
    limits.maxAuthenticatedTotal,
  );
  const declaredCount = new AddressCounter(
    perAddress(limits.maxDeclaredPeersPerAddress),
    limits.maxDeclaredPeersTotal,
  );

  const live = new Set<Connection>();
  /** Every open socket, authenticated or not, closing or not: what close() must end. */
  const sockets = new Set<WebSocket>();
  const byKey = new Map<string, Connection>();
  const stats: IntroServerStats = {
    connections: 0,
    unauthenticated: 0,
    authenticated: 0,
    relayed: 0,
    undeliverable: 0,
    closes: {},
  };
  let nextConnectionId = 1;
  let shuttingDown = false;
  /** Several nodes share presence and routing through the engine (--cluster). */
  let cluster: ClusterNode<Connection> | undefined;

  let stun: StunResponder | undefined;
  if (options.stun !== false) {
    const stunOptions = options.stun ?? { port: 3478 };
    stun = await startStunResponder({
      host: stunOptions.host ?? host,
      port: stunOptions.port,
      altPort: stunOptions.altPort ?? 0,
      logger: log,
    });
  }

  const wss = new WebSocketServer<typeof IntroSocket>({
    WebSocket: IntroSocket,
    noServer: true,
    maxPayload: MAX_MESSAGE_BYTES,
    perMessageDeflate: false, // compression costs memory per connection and invites zip bombs
    clientTracking: false,
  });
  wss.on("error", (error) => log.error({ err: error }, "WebSocket server error"));
  const upgrades = new UpgradePacer<PendingUpgrade>(
    UPGRADE_MS_PER_TURN,
    ({ request, socket, head }) =>
      wss.handleUpgrade(request, socket, head, (ws) => wss.emit("connection", ws, request)),
    ({ socket }) => !socket.destroyed,
  );
  const front = createHttpFront({
    tls: options.tls,
    limits,
    throttle,
    onUpgrade: (request, socket, head) => upgrades.push({ request, socket, head }),
  });
  const httpServer = front.server;

  function send(connection: Connection, message: object): void {
    if (connection.ws.readyState === WebSocket.OPEN) connection.ws.send(JSON.stringify(message));
  }

  function isMutual(a: Connection, bKey: string): Connection | undefined {
    if (!a.publicKey || !a.declared.has(bKey)) return undefined;
    const b = byKey.get(bKey);
    return b?.declared.has(a.publicKey) ? b : undefined;
  }

  function announce(a: Connection, b: Connection, online: boolean): void {
    send(a, { type: "presence", peer: b.publicKey, online });
    send(b, { type: "presence", peer: a.publicKey, online });
  }

  /** Forget an authenticated connection: its mutual peers see it go offline. Idempotent. */
  function detach(connection: Connection): void {
    stopAuthTimer(connection);
    connection.challenge = undefined;
    connection.turn = undefined;
    if (!live.delete(connection)) return;
    const key = connection.publicKey;
    // In a cluster the engine tells its peers, wherever they are.
    const leftCluster = cluster?.left(connection) ?? false;
    if (!leftCluster && key && byKey.get(key) === connection) {
      for (const peerKey of connection.declared) {
        const peer = isMutual(connection, peerKey);
        if (peer) send(peer, { type: "presence", peer: key, online: false });
      }
      byKey.delete(key);
    }
    if (connection.publicKey) authenticatedCount.remove(connection.bucket);
    declaredCount.remove(connection.bucket, connection.declared.size);
    connection.declared = new Set();
  }

  /** Logs (rate limited) and closes a connection that went over a cap. */
  function refuseOverCap(
    connection: Connection,
    what: "connections" | "declared peers",
    verdict: Exclude<CapVerdict, "ok">,
    cap: number,
  ): void {
    const code = what === "connections" ? CloseCode.tooManyConnections : CloseCode.tooManyPeers;
    const reason =
      verdict === "address"
        ? `too many ${what} from your address (at most ${cap})`
        : `too many ${what} on this server (at most ${cap})`;
    throttle.warn(`${what}-${verdict}`, { remote: connection.bucket, cap }, `cap reached: ${reason}`);
    metrics.capRefused({ cap: what === "connections" ? "connections" : "declared-peers", scope: verdict });
    closeConnection(connection, code, reason);
  }

  function isMember(publicKey: string): boolean {
    return allowedKeys === undefined || allowedKeys.has(publicKey);
  }

  /** Cleared and let go: a spent Timeout kept on an authenticated connection is ~0.2 KiB each. */
  function stopAuthTimer(connection: Connection): void {
    clearTimeout(connection.authTimer);
    connection.authTimer = undefined;
  }

  function closeConnection(connection: Connection, code: number, reason: string): void {
    if (connection.state === "closing") return;
    const level = QUIET_CLOSES.has(code) ? "debug" : "info";
    log[level]({ conn: connection.id, remote: connection.remote, code, reason }, "closing connection");
    if (connection.state === "awaiting-auth") metrics.authFailed(code);
    connection.state = "closing";
    stats.closes[code] = (stats.closes[code] ?? 0) + 1;
    detach(connection);
    connection.ws.close(code, closeReason(reason));
    // A peer that never answers the close frame is cut off rather than waited for (ws waits 30 s).
    setTimeout(() => connection.ws.terminate(), 2_000).unref();
  }

  function handleAuth(connection: Connection, message: AuthMessage): void {
    if (message.version !== PROTOCOL_VERSION) {
      closeConnection(connection, CloseCode.unsupportedVersion, `protocol version ${PROTOCOL_VERSION} only`);
      return;
    }
    const challenge = connection.challenge;
    if (!challenge) return;
    const clientKey = Buffer.from(message.publicKey, "base64");
    let valid = false;
    try {
      const shared = x25519(challenge.keyPair.privateKey, clientKey);
      const expected = authProof(shared, challenge.keyPair.publicKey, challenge.nonce, clientKey);
      valid = proofsEqual(expected, Buffer.from(message.proof, "base64"));
    } catch {
      valid = false; // a low-order key cannot prove anything
    }
    if (!valid) {
      closeConnection(
        connection,
        CloseCode.authFailed,
        "authentication failed: proof does not match the key",
      );
      return;
    }
    stopAuthTimer(connection);
    connection.challenge = undefined;
    if (!isMember(message.publicKey)) {
      // Rate limited: a stranger must not be able to flood the log.
      throttle.warn("not-member", { remote: connection.bucket }, "refusing a key not in the allowed keys");
      metrics.membershipRefused("auth");
      closeConnection(connection, CloseCode.notMember, "key not allowed on this server");
      return;
    }
    // The key proved itself: its older connection goes first, so that it does not count against it.
    const previous = byKey.get(message.publicKey);
    if (previous)
      closeConnection(previous, CloseCode.replaced, "replaced by a newer connection with this key");
    const verdict = authenticatedCount.tryAdd(connection.bucket);
    if (verdict !== "ok") {
      const cap = verdict === "address" ? limits.maxAuthenticatedPerAddress : limits.maxAuthenticatedTotal;
      refuseOverCap(connection, "connections", verdict, cap);
      return;
    }
    connection.publicKey = message.publicKey;
    if (cluster) cluster.claim(connection, message.publicKey);
    else admit(connection, message.publicKey);
  }

  function admit(connection: Connection, publicKey: string): void {
    front.leavePreAuth(connection.socket);
    connection.state = "authenticated";
    byKey.set(publicKey, connection);
    stats.authenticated++;
    metrics.authenticated();
    log.debug({ conn: connection.id, key: keyFingerprint(publicKey) }, "authenticated");

    // The primary first (werift gathers with it), then the alternate (mapping behaviour).
    const stunUrls = stun
      ? [stun.port, stun.altPort].flatMap((p) =>
          p === undefined ? [] : [`stun:${formatHost(connection.urlHost)}:${p}`],
        )
      : [];
    send(connection, {
      type: "welcome",
      publicKey,
      keepaliveSeconds: limits.pingIntervalMs / 1000,
      stunUrls,
      turn: turn ? issueTurn(connection).credentials : undefined,
      limits: {
        maxMessageBytes: MAX_MESSAGE_BYTES,
        maxPeersPerMessage: MAX_PEERS_PER_MESSAGE,
        maxDeclaredPeers: limits.maxDeclaredPeers,
        messagesPerSecond: limits.messagesPerSecond,
        messageBurst: limits.messageBurst,
        bytesPerSecond: limits.bytesPerSecond,
        byteBurst: limits.byteBurst,
      },
    });
  }

  function issueTurn(connection: Connection): IssuedTurnCredentials {
    connection.turn = refreshTurnCredentials(turn!, connection.publicKey!, connection.turn);
    metrics.turnIssued();
    return connection.turn;
  }

  function handlePeers(connection: Connection, message: PeersMessage): void {
    const own = connection.publicKey!;
    const before = connection.declared;
    let after: Set<string>;
    if (message.op === "replace") after = new Set(message.peers);
    else {
      after = new Set(before);
      for (const key of message.peers) {
        if (message.op === "add") after.add(key);
        else after.delete(key);
      }
    }
    after.delete(own);
    if (after.size > limits.maxDeclaredPeers) {
      throttle.warn(
        "declared-peers-key",
        { remote: connection.bucket, cap: limits.maxDeclaredPeers },
        "cap reached: too many declared peers for one key",
      );
      metrics.capRefused({ cap: "declared-peers", scope: "key" });
      closeConnection(
        connection,
        CloseCode.tooManyPeers,
        `at most ${limits.maxDeclaredPeers} declared peers`,
      );
      return;
    }
    const growth = after.size - before.size;
    if (cluster) {
      cluster.declare(connection, before, after);
      return;
    }
    if (growth > 0) {
      const verdict = declaredCount.tryAdd(connection.bucket, growth);
      if (verdict !== "ok") {
        const cap = verdict === "address" ? limits.maxDeclaredPeersPerAddress : limits.maxDeclaredPeersTotal;
        refuseOverCap(connection, "declared peers", verdict, cap);
        return;
      }
    } else declaredCount.remove(connection.bucket, -growth);
    const wasMutual = (key: string) => isMutual(connection, key);
    const removed: Connection[] = [];
    for (const key of before) {
      if (!after.has(key)) {
        const peer = wasMutual(key);
        if (peer) removed.push(peer);
      }
    }
    const added: string[] = [];
    for (const key of after) if (!before.has(key)) added.push(key);
    connection.declared = after;
    for (const peer of removed) announce(connection, peer, false);
    for (const key of added) {
      const peer = isMutual(connection, key);
      if (peer) announce(connection, peer, true);
    }
  }

  function handleSend(connection: Connection, message: SendMessage, frame: string): void {
    const from = connection.publicKey!;
    const observe = () => options.onRelay?.({ from, to: message.to, frame });
    stamp(message.envelope);
    if (cluster?.send(connection, message.to, message.envelope, observe)) return;
    const target = isMutual(connection, message.to);
    if (!target || target.ws.bufferedAmount > limits.maxBufferedBytes) {
      refuseSend(connection, message.to, target ? "backlogged" : "undeliverable");
      return;
    }
    options.onRelay?.({ from, to: message.to, frame });
    stats.relayed++;
    metrics.relayed();
    send(target, { type: "envelope", from, envelope: message.envelope });
  }

  /** The same answer whether the key is offline or has not declared us: presence does not leak. */
  function refuseSend(connection: Connection, to: string, why: "backlogged" | "undeliverable"): void {
    stats.undeliverable++;
    metrics.refused(why);
    send(connection, { type: "undeliverable", to });
  }

  function handleFrame(connection: Connection, data: RawData, isBinary: boolean): void {
    if (connection.state === "closing" && !connection.draining) return;
    connection.lastSeen = Date.now();
    if (isBinary) {
      closeConnection(connection, CloseCode.binaryFrame, "binary frames are not accepted; send JSON text");
      return;
    }
    const frame = frameBytes(data);
    if (!connection.messages.take(1) || !connection.bytes.take(frame.length)) {
      closeConnection(connection, CloseCode.rateLimited, "rate limit exceeded");
      return;
    }
    const verdict = parseClientFrame(frame);
    if (!verdict.ok) {
      closeConnection(connection, verdict.code, verdict.reason);
      return;
    }
    const { message, text } = verdict;
    // A draining client's envelopes already on their way still go through; nothing else does.
    if (connection.draining && message.type !== "send") return;

    if (connection.state === "awaiting-auth") {
      if (message.type === "auth") handleAuth(connection, message);
      else closeConnection(connection, CloseCode.unexpectedMessage, `${message.type} before auth`);
      return;
    }
    switch (message.type) {
      case "auth":
        closeConnection(connection, CloseCode.unexpectedMessage, "already authenticated");
        return;
      case "peers":
        handlePeers(connection, message);
        return;
      case "send":
        handleSend(connection, message, text);
        return;
      case "turn-refresh":
        // Membership is enforced when the list changes; checked again so no path issues to a stranger.
        if (turn && isMember(connection.publicKey!))
          send(connection, { type: "turn-credentials", turn: issueTurn(connection).credentials });
        return;
      case "ping":
        send(connection, { type: "pong" });
        return;
    }
  }

  // One function per event for all sockets (`this` is the socket), not a closure per connection.
  function onSocketMessage(this: IntroSocket, data: RawData, isBinary: boolean): void {
    if (this.connection) handleFrame(this.connection, data, isBinary);
  }
  function onSocketPong(this: IntroSocket, _data: Buffer): void {
    if (this.connection) this.connection.lastSeen = Date.now();
  }
  function onSocketError(this: IntroSocket, error: Error): void {
    log.debug({ conn: this.connection?.id, err: error.message }, "connection error");
  }
  function onSocketClose(this: IntroSocket, code: number): void {
    sockets.delete(this);
    const connection = this.connection;
    if (!connection) return;
    if (connection.state !== "closing") {
      stats.closes[code] = (stats.closes[code] ?? 0) + 1;
      connection.state = "closing";
    }
    detach(connection);
  }

  wss.on("connection", (ws: IntroSocket, request: IncomingMessage) => {
    const remote = `${request.socket.remoteAddress}:${request.socket.remotePort}`;
    const socket = request.socket as Socket;
    sockets.add(ws);
    ws.on("close", onSocketClose);
    ws.on("error", onSocketError);
    if (shuttingDown) {
      ws.close(CloseCode.serverShutdown, "server shutting down");
      return;
    }
    const keyPair = generateX25519KeyPair();
    const nonce = randomBytes(32);
    const connection: Connection = {
      id: nextConnectionId++,
      ws,
      remote,
      socket,
      bucket: addressBucket(socket.remoteAddress),
      urlHost: options.publicHost ?? hostFromHeader(request.headers.host) ?? host,
      state: "awaiting-auth",
      challenge: { keyPair, nonce },
      declared: new Set(),
      claimed: false,
      clusterDeclared: false,
      draining: false,
      lastSeen: Date.now(),
      messages: new TokenBucket(limits.messageBurst, limits.messagesPerSecond),
      bytes: new TokenBucket(limits.byteBurst, limits.bytesPerSecond),
    };
    live.add(connection);
    stats.connections++;
    connection.authTimer = setTimeout(
      () => closeConnection(connection, CloseCode.authTimeout, "authentication timed out"),
      limits.authTimeoutMs,
    );
    ws.connection = connection;
    ws.on("message", onSocketMessage);
    ws.on("pong", onSocketPong);
    log.debug({ conn: connection.id, remote }, "connection opened");
    send(connection, {
      type: "challenge",
      version: PROTOCOL_VERSION,
      serverKey: keyPair.publicKey.toString("base64"),
      nonce: nonce.toString("base64"),
    });
  });

  const sweep = new KeepaliveSweep(live, limits, (connection) =>
    closeConnection(connection, CloseCode.idleTimeout, "idle timeout"),
  );
  metrics.observe({
    authenticated: () => byKey.size,
    unauthenticated: () => front.preAuthCount(),
    stunAnswers: () => stun?.stats().answered ?? 0,
  });

  if (options.cluster) {
    const timing = { ...DEFAULT_CLUSTER_TIMING, ...options.cluster.timing };
    const actions: ServerActions<Connection> = {
      byKey,
      limits,
      declaredCount,
      log,
      send,
      closeConnection,
      refuseOverCap,
      refuseSend,
      admit,
      relayed: () => {
        stats.relayed++;
        metrics.relayed();
      },
    };
    const bus = new RedisClusterBus(options.cluster.url, log, timing);
    const relay = new ClusterRelay(bus, localConnections(actions), log);
    cluster = new ClusterNode(relay, actions);
    startLoopTrace();
    try {
      await relay.start();
    } catch (error) {
      sweep.stop();
      await stun?.close();
      throw error;
    }
  }

  /** Tells an authenticated client to move (4011) but relays what it already sent until its close completes. */
  function drain(connection: Connection): void {
    if (connection.state !== "authenticated") {
      closeConnection(connection, CloseCode.serverShutdown, DRAIN_REASON);
      return;
    }
    connection.state = "closing";
    connection.draining = true;
    stats.closes[CloseCode.serverShutdown] = (stats.closes[CloseCode.serverShutdown] ?? 0) + 1;
    connection.ws.close(CloseCode.serverShutdown, DRAIN_REASON);
    setTimeout(() => connection.ws.terminate(), DRAIN_CLOSE_MS).unref();
  }

  try {
    await listenHttp(httpServer, host, options.port ?? 0);
  } catch (error) {
    sweep.stop();
    await stun?.close();
    await cluster?.relay.bus.close();
    throw error;
  }
  httpServer.on("error", (error) => log.error({ err: error }, "HTTP server error"));

  const address = httpServer.address();
  const port = typeof address === "object" && address ? address.port : (options.port ?? 0);
  const url = `${options.tls ? "wss" : "ws"}://${formatHost(host)}:${port}`;
  log.info(
    { url, stunPort: stun?.port, turn: turn ? turn.urls : undefined, allowedKeys: allowedKeys?.size },
    "introduction server listening",
  );
  if (allowedKeys === undefined) {
    log.warn(
      turn
        ? "no --allowed-keys: this is a public server; it serves every key and gives each TURN credentials"
        : "no --allowed-keys: this is a public server; it serves every key",
    );
  }

  let closed: Promise<void> | undefined;
  return {
    port,
    host,
    url,
    stunPort: stun?.port,
    stunAltPort: stun?.altPort,
    stats: () => ({
      ...stats,
      connections: live.size,
      unauthenticated: front.preAuthCount(),
      authenticated: byKey.size,
      closes: { ...stats.closes },
    }),
    setAllowedKeys: (keys) => {
      allowedKeys = keys;
      for (const connection of [...byKey.values()]) {
        if (keys.has(connection.publicKey!)) continue;
        metrics.membershipRefused("revoked");
        closeConnection(connection, CloseCode.notMember, "key no longer allowed on this server");
      }
    },
    close: () => {
      closed ??= (async () => {
        shuttingDown = true;
        sweep.stop();
        upgrades.clear(({ socket }) => socket.destroy());
        const bus = cluster?.relay.bus;
        await shutDown({
          log,
          httpServer,
          wss,
          sockets,
          connectedKeys: () => [...byKey.keys()],
          drainAll: () => {
            for (const connection of [...live]) drain(connection);
          },
          cluster: bus && { markMoving: (keys) => bus.markMoving(keys), close: () => bus.close() },
          stun,
        });
      })();
      return closed;
    },
  };
}
