import { EventEmitter } from "node:events";
import { ConfigError, RuntimeError } from "../errors.js";
import type { Logger } from "../log.js";
import { listensOnIpv6Loopback } from "../wg/ipv6-listen.js";
import { Mac1Key } from "../wireguard/mac1.js";
import {
  MessageType,
  messageType,
  receiverIndex,
  senderIndex,
  TRANSPORT_MIN_SIZE,
} from "../wireguard/messages.js";
import { PeerKeyTable } from "../wireguard/peer-key-table.js";
import {
  type BatchedUdpSocket,
  openBatchedUdpSocket,
  type ReceivedBatch,
  type UdpIo,
} from "./batched-udp.js";
import { type DropCounters, type DropReason, newDropCounters } from "./counters.js";
import { HeldData } from "./held-data.js";
import { IndexTable } from "./index-table.js";
import type { KernelForwarder } from "./kernel-forwarder.js";
import {
  LOOPBACK6_ADDRESS,
  type LoopbackAddress,
  LoopbackAllocator,
  loopbackEndpointText,
} from "./loopback-address.js";
import type { PeerPath } from "./path.js";
import { describeUdpPortHolder } from "./port-holder.js";
import { ProxyPeer } from "./proxy-peer.js";
import { SOCKET_BUFFER_BYTES } from "./udp-socket.js";

export interface WireGuardProxyOptions {
  /** WireGuard's listen port; every datagram for WireGuard goes to 127.0.0.1 at this port. */
  wireguardPort: number;
  /** The catch-all socket WireGuard may send any peer's datagrams to. */
  catchAll: { address: string; port: number };
  loopbackPortBase?: number;
  /** The interface's own public key: inbound handshakes must carry a mac1 made with it. */
  localPublicKey?: Uint8Array;
  /** The kernel fast path (--ebpf): carries transport data of paths that send plain UDP. */
  kernel?: KernelForwarder | null;
  /** How long a replaced path still delivers the peer's datagrams (default 2000 ms). */
  replacedPathGraceMs?: number;
  /** How long after our initiation a peer's initiation counts as crossing it (default 1000 ms). */
  crossingWindowMs?: number;
  /** How the catch-all and L(P) sockets do their I/O (batched-udp.ts; default "auto": native when it loads). */
  udpIo?: UdpIo | "auto";
  /** Whether WireGuard has an IPv6 socket on `port` that hears [::1] (default: /proc/net/udp6). */
  listensOnIpv6?: (port: number) => Promise<boolean>;
  logger: Logger;
}

export interface WireGuardProxyEvents {
  /**
   * WireGuard sent a handshake message (initiation or response) to a peer that has no path, or data to a
   * dormant one: it wants the peer. The message is held until `setPath`.
   */
  "path-needed": [peer: ProxyPeer];
  /** An initiation from WireGuard went out on the peer's path. */
  "initiation-sent": [peer: ProxyPeer, initiation: Buffer];
  /** A handshake response from the peer reached WireGuard. */
  "response-received": [peer: ProxyPeer];
}

const WIREGUARD_HOST = "127.0.0.1";
/** Where WireGuard is sent to from L6(P): its IPv6 socket. */
const WIREGUARD_HOST6 = LOOPBACK6_ADDRESS;

/**
 * WireGuard retries an unanswered handshake after REKEY_TIMEOUT (5 s) plus up to 1/3 s of jitter, and
 * the retry supersedes it. A held handshake older than this is not sent, nor is an unanswered
 * initiation resent.
 */
const SUPERSEDED_AFTER_MS = 5500;
const REPLACED_PATH_GRACE_MS = 2000;
/** More than a round trip on any path: a peer's initiation sent before ours arrived gets here by then. */
const CROSSING_WINDOW_MS = 1000;

/**
 * The data plane: the catch-all socket, one loopback socket L(P) per peer, and forwarding between
 * WireGuard and each peer's path. Every datagram is checked to be a well-formed WireGuard message;
 * anything else is dropped and counted, never forwarded, never thrown.
 */
export class WireGuardProxy extends EventEmitter<WireGuardProxyEvents> {
  readonly drops: DropCounters = newDropCounters();
  private readonly peers = new Map<string, ProxyPeer>();
  /** The peers with a path, in the order they got it: all liveness has to look at (a hub's few of 10,000). */
  private readonly pathed = new Set<ProxyPeer>();
  private readonly keys = new PeerKeyTable<ProxyPeer>();
  private readonly indices = new IndexTable<ProxyPeer>();
  private readonly allocator: LoopbackAllocator;
  private readonly allocator6 = new LoopbackAllocator(undefined, 6);
  /** L6(P) bindings under way, so that two callers for a peer share one. */
  private readonly binding6 = new Map<ProxyPeer, Promise<LoopbackAddress | null>>();
  /**
   * Whether L6(P) can be used: WireGuard hears [::1] at its port (asked once per port) and lo has ::1
   * (false for good after a bind says it has not). Null: not asked yet.
   */
  private loopback6Usable: Promise<boolean> | null = null;
  private readonly localMac1: Mac1Key | null;
  private readonly log: Logger;
  /**
   * The level of each peer's lines (added, its path, its kernel entries): debug while many peers are set
   * up at once (a hub's start wrote 30,000 lines at info, a fifth of the worker's start; issue 16).
   */
  private peerLines: "info" | "debug" = "info";
  private catchAll: BatchedUdpSocket | null = null;
  private wireguardPort: number;
  private readonly kernel: KernelForwarder | null;
  private readonly replacedGraceMs: number;
  private readonly crossingWindowMs: number;

  constructor(private readonly options: WireGuardProxyOptions) {
    super();
    this.log = options.logger;
    this.replacedGraceMs = options.replacedPathGraceMs ?? REPLACED_PATH_GRACE_MS;
    this.crossingWindowMs = options.crossingWindowMs ?? CROSSING_WINDOW_MS;
    this.wireguardPort = options.wireguardPort;
    this.kernel = options.kernel ?? null;
    this.kernel?.setWireGuardPort(options.wireguardPort, []);
    this.kernel?.useLoopback6((peer) => this.loopback6(peer));
    this.allocator = new LoopbackAllocator(options.loopbackPortBase);
    this.localMac1 = options.localPublicKey ? new Mac1Key(options.localPublicKey) : null;
    // Kept off the data path: initiations and responses are a few per peer every two minutes.
    this.on("initiation-sent", (peer, initiation) => {
      peer.unansweredInitiation = initiation;
    });
    this.on("response-received", (peer) => {
      peer.unansweredInitiation = null;
      // Ours was answered: the handshake is done, and the crossing one is moot.
      if (peer.deferredInitiation) this.drop("superseded");
      peer.deferredInitiation = null;
      clearTimeout(peer.deferredTimer);
    });
  }

  /** Many peers are being set up at once (true) or no longer: each one's lines at debug meanwhile. */
  setBulk(bulk: boolean): void {
    this.peerLines = bulk ? "debug" : "info";
    this.kernel?.setBulk(bulk);
  }

  get wireguardListenPort(): number {
    return this.wireguardPort;
  }

  /**
   * Binds the catch-all. Fails with a ConfigError (code "port-busy") when the address is taken, naming
   * who holds it (another tunnelbore, or a local user who bound it first) and what to do.
   */
  async start(): Promise<void> {
    const { address, port } = this.options.catchAll;
    let socket: BatchedUdpSocket;
    try {
      socket = await this.openSocket(address, port, "catch-all");
    } catch (err) {
      if (!(err instanceof ConfigError) || err.code !== "port-busy") throw err;
      const holder = await describeUdpPortHolder(address, port);
      throw new ConfigError(
        "port-busy",
        `catch-all address ${address}:${port} is already in use by ${holder}: stop that program (or that other tunnelbore), or give this one another address with --listen ADDR:PORT`,
        { address, port, holder },
        { cause: err },
      );
    }
    socket.onBatch = (batch: ReceivedBatch) => {
      for (let i = 0; i < batch.count; i++) this.fromWireGuardAtCatchAll(batch.datagram(i), batch.address(i));
    };
    socket.onError = (err) => this.log.debug({ err }, "catch-all socket error");
    this.catchAll = socket;
    // Linux caps SO_RCVBUF/SO_SNDBUF at net.core.rmem_max/wmem_max; we never change those sysctls, so
    // say what was granted.
    const granted = socket.grantedBufferBytes();
    if (granted.receive < SOCKET_BUFFER_BYTES || granted.send < SOCKET_BUFFER_BYTES) {
      this.log.info(
        { asked: SOCKET_BUFFER_BYTES, granted },
        "socket buffers capped by net.core.rmem_max/wmem_max (raise them for bursts at high rates)",
      );
    }
  }

  get catchAllAddress(): { address: string; port: number } {
    const a = this.catchAll?.address();
    return a ? { address: a.address, port: a.port } : this.options.catchAll;
  }

  /**
   * Adds a peer and binds its L(P): the first candidate of its key (loopbackCandidates) that nobody
   * holds (`preferred`, WireGuard's endpoint for it, first when it is one of them). A candidate someone
   * else holds is logged with who holds it and skipped; WireGuard is only ever pointed at the socket
   * bound here.
   */
  async addPeer(publicKey: string, keyBytes: Uint8Array, preferred?: string | null): Promise<ProxyPeer> {
    const existing = this.peers.get(publicKey);
    if (existing) return existing;
    let tried = 0;
    for (const where of this.allocator.candidates(keyBytes, preferred)) {
      tried++;
      const socket = await this.bindLoopback(publicKey, where);
      if (!socket) continue;
      this.allocator.claim(where);
      const peer = new ProxyPeer(publicKey, keyBytes, where, socket);
      const local = this.options.localPublicKey;
      peer.winsCrossing = local !== undefined && Buffer.compare(local, keyBytes) < 0;
      this.hearWireGuard(peer, socket);
      this.peers.set(publicKey, peer);
      this.keys.add(keyBytes, peer);
      this.log[this.peerLines]({ peer: publicKey, loopback: `${where.address}:${where.port}` }, "peer added");
      // WireGuard's endpoint is an L6(P) a run before held (its path was IPv6): held again, so that what
      // WireGuard sends there arrives, and the sync takes that endpoint for ours.
      if (preferred?.startsWith(`[${LOOPBACK6_ADDRESS}]:`)) await this.loopback6(peer, preferred);
      return peer;
    }
    throw new RuntimeError(
      "loopback-exhausted",
      `no free loopback address:port for peer ${publicKey} after ${tried} candidates (see the log for who holds them)`,
      { peer: publicKey },
    );
  }

  /**
   * The peer's L6(P), [::1]:port: bound on first use (`preferred` first: WireGuard's endpoint, when it
   * is one) and kept while the peer is. Null where it cannot be used: no kernel fast path (the only
   * reason for it: WireGuard sending IPv6 spares the kernel a 4 -> 6 translation per datagram), WireGuard
   * without an IPv6 socket, lo without ::1, or every candidate port held.
   */
  loopback6(peer: ProxyPeer, preferred?: string | null): Promise<LoopbackAddress | null> {
    if (peer.loopback6) return Promise.resolve(peer.loopback6);
    if (!this.kernel) return Promise.resolve(null);
    let binding = this.binding6.get(peer);
    if (!binding) {
      binding = this.bindLoopback6(peer, preferred).finally(() => this.binding6.delete(peer));
      this.binding6.set(peer, binding);
    }
    return binding;
  }

  private async bindLoopback6(peer: ProxyPeer, preferred?: string | null): Promise<LoopbackAddress | null> {
    this.loopback6Usable ??= (this.options.listensOnIpv6 ?? listensOnIpv6Loopback)(this.wireguardPort).then(
      (usable) => {
        if (!usable) {
          this.log.info(
            { port: this.wireguardPort },
            "WireGuard has no IPv6 socket hearing [::1]: IPv6 paths reach it from 127.x, translated",
          );
        }
        return usable;
      },
    );
    if (!(await this.loopback6Usable)) return null;
    for (const where of this.allocator6.candidates(peer.keyBytes, preferred)) {
      if (this.peers.get(peer.publicKey) !== peer) return null;
      // Claimed while it binds: other peers' first binds run at the same time (a network change).
      this.allocator6.claim(where);
      let socket: BatchedUdpSocket | null;
      try {
        socket = await this.bindLoopback(peer.publicKey, where, true);
      } catch (err) {
        this.allocator6.release(where);
        // lo has no ::1 (IPv6 disabled on it): no candidate can be bound, until WireGuard's port changes.
        this.loopback6Usable = Promise.resolve(false);
        this.log.info({ err }, "lo has no ::1: IPv6 paths reach WireGuard from 127.x, translated");
        return null;
      }
      if (!socket) {
        this.allocator6.release(where);
        continue;
      }
      if (this.peers.get(peer.publicKey) !== peer) {
        // Removed while it bound.
        this.allocator6.release(where);
        socket.close();
        return null;
      }
      this.hearWireGuard(peer, socket);
      peer.loopback6 = where;
      peer.socket6 = socket;
      this.log[this.peerLines](
        { peer: peer.publicKey, loopback6: loopbackEndpointText(where) },
        "IPv6 loopback bound",
      );
      return where;
    }
    this.log.info(
      { peer: peer.publicKey },
      "no free [::1] port: the peer's IPv6 path reaches WireGuard from 127.x",
    );
    return null;
  }

  /** What WireGuard sends to one of the peer's loopback sockets is the peer's. */
  private hearWireGuard(peer: ProxyPeer, socket: BatchedUdpSocket): void {
    socket.onBatch = (batch: ReceivedBatch) => {
      for (let i = 0; i < batch.count; i++) this.fromWireGuard(peer, batch.datagram(i), batch.address(i));
    };
    socket.onError = (err) => this.log.debug({ err, peer: peer.publicKey }, "loopback socket error");
  }

  /**
   * Binds one L(P) (or L6(P), `ipv6`) candidate; null (logged) when it is held by someone else or cannot
   * be bound. For L6(P), an address lo does not have (EADDRNOTAVAIL) is thrown: no candidate would do.
   */
  private async bindLoopback(
    publicKey: string,
    where: LoopbackAddress,
    ipv6 = false,
  ): Promise<BatchedUdpSocket | null> {
    const loopback = loopbackEndpointText(where);
    let socket: BatchedUdpSocket;
    try {
      socket = await this.openSocket(where.address, where.port, ipv6 ? "IPv6 loopback" : "loopback", ipv6);
    } catch (err) {
      const cause = err instanceof Error ? (err.cause as NodeJS.ErrnoException | undefined) : undefined;
      if (ipv6 && cause?.code === "EADDRNOTAVAIL") throw err;
      if (err instanceof ConfigError && err.code === "port-busy") {
        const holder = await describeUdpPortHolder(where.address, where.port);
        this.log.warn(
          { peer: publicKey, loopback, holder },
          `loopback ${loopback} is held by ${holder}: trying the next candidate`,
        );
      } else {
        this.log.warn({ err, peer: publicKey, loopback }, "cannot bind loopback candidate: trying the next");
      }
      return null;
    }
    // Belt and braces: the endpoint WireGuard gets is exactly the address this socket holds.
    const bound = socket.address();
    if (bound.address !== where.address || bound.port !== where.port) {
      socket.close();
      this.log.warn({ peer: publicKey, loopback, bound }, "loopback socket bound elsewhere: trying the next");
      return null;
    }
    return socket;
  }

  private openSocket(address: string, port: number, role: string, ipv6 = false): Promise<BatchedUdpSocket> {
    const io = this.options.udpIo ?? "auto";
    const type = ipv6 ? "udp6" : "udp4";
    return openBatchedUdpSocket({ address, port, role, exclusive: true, logger: this.log, io, type });
  }

  removePeer(publicKey: string): void {
    const peer = this.peers.get(publicKey);
    if (!peer) return;
    this.peers.delete(publicKey);
    this.keys.remove(peer.keyBytes);
    this.indices.forget(peer);
    this.allocator.release(peer.loopback);
    if (peer.loopback6) this.allocator6.release(peer.loopback6);
    this.kernel?.remove(peer);
    if (peer.path) this.detach(peer.path);
    peer.path = null;
    this.pathed.delete(peer);
    this.endRetirement(peer);
    clearTimeout(peer.deferredTimer);
    peer.socket.close();
    peer.socket6?.close();
    this.log.info({ peer: publicKey }, "peer removed");
  }

  peer(publicKey: string): ProxyPeer | undefined {
    return this.peers.get(publicKey);
  }

  /** Up to when the peer's traffic stamps are complete (KernelForwarder.countsKnownUntil; Infinity: now). */
  trafficKnownUntil(publicKey: string): number {
    const peer = this.peers.get(publicKey);
    return peer && this.kernel ? this.kernel.countsKnownUntil(peer) : Number.POSITIVE_INFINITY;
  }

  allPeers(): IterableIterator<ProxyPeer> {
    return this.peers.values();
  }

  /** The peers that have a path (`setPath`), in the order they got it. */
  peersWithPath(): IterableIterator<ProxyPeer> {
    return this.pathed.values();
  }

  /**
   * Makes `path` the peer's path and sends the held handshake on it; a path that replaces another also
   * gets the initiation that went out on the old one and is still unanswered (the old path was suspect),
   * so WireGuard does not wait for its 5 s retry. The previous path still delivers for a grace period
   * (`retire`), then is detached, but not closed: whoever made a path closes it. `null` removes the
   * path: handshakes are held again until a new one is set. The change is logged once, with `reason`.
   */
  setPath(publicKey: string, path: PeerPath | null, reason = "unspecified"): void {
    const peer = this.peers.get(publicKey);
    if (!peer) return;
    const previous = peer.path;
    if (previous === path) return;
    peer.path = path;
    if (path) this.pathed.add(peer);
    else this.pathed.delete(peer);
    if (previous) this.retire(peer, previous);
    if (this.kernel) {
      const kernel = this.kernel;
      if (path) path.onRouteChange = () => void kernel.update(peer);
      void kernel.update(peer);
    }
    this.log[this.peerLines](
      {
        peer: publicKey,
        kind: path?.kind ?? null,
        remote: path?.remote ?? null,
        was: previous?.kind ?? null,
        wasRemote: previous?.remote ?? null,
        reason,
      },
      path ? "path changed" : "path removed",
    );
    if (!path) return;
    path.onDatagram = peer.deliverInbound ??= (datagram: Buffer) => {
      this.fromPeer(peer, datagram);
    };
    const held = peer.heldHandshake;
    const unanswered = peer.unansweredInitiation;
    if (held) {
      peer.heldHandshake = null;
      if (peer.initiationsReceived > peer.heldAfterInitiations) {
        // The peer's initiation reached WireGuard since (just now, if it waited for this path): the
        // answer WireGuard gives it replaces the held message, which would only cross it (each side
        // would answer the other's initiation and discard the answer to its own, then wait 5 s).
        this.drop("superseded");
      } else if (Date.now() - peer.heldAt < SUPERSEDED_AFTER_MS) {
        this.forward(peer, held, messageType(held));
      } else {
        this.drop("no-path"); // waited too long for a path: WireGuard has moved on
      }
    } else if (
      previous &&
      unanswered &&
      peer.lastResponseAt < peer.lastInitiationSentAt &&
      Date.now() - peer.lastInitiationSentAt < SUPERSEDED_AFTER_MS
    ) {
      peer.unansweredInitiation = null;
      this.forward(peer, unanswered, MessageType.Initiation);
    }
    this.sendHeldData(peer);
  }

  /**
   * A dormant peer (its ICE session released for idleness): WireGuard's data is held too until a path
   * is set, and wakes the peer (`path-needed`). Off again: data without a path is dropped, as before.
   */
  setDormant(publicKey: string, dormant: boolean): void {
    const peer = this.peers.get(publicKey);
    if (peer) peer.dormant = dormant;
  }

  /** The data held while the peer was dormant, after the held handshake (its session may still be WireGuard's). */
  private sendHeldData(peer: ProxyPeer): void {
    const held = peer.heldData;
    if (!held) return;
    peer.heldData = null;
    const stale = held.release(Date.now(), SUPERSEDED_AFTER_MS, (data) =>
      this.forward(peer, data, MessageType.Transport),
    );
    for (let i = 0; i < stale; i++) this.drop("no-path");
  }

  /** Sends to WireGuard at its new listen port from now on, e.g. after it was restarted. */
  setWireGuardPort(port: number): void {
    this.wireguardPort = port;
    this.loopback6Usable = null;
    this.kernel?.setWireGuardPort(port, this.peers.values());
  }

  private detach(path: PeerPath): void {
    path.onDatagram = null;
    if (path.onRouteChange !== undefined) path.onRouteChange = null;
  }

  /**
   * A replaced path keeps delivering the peer's datagrams for a grace period: the peer switches a
   * moment after us (an ICE-controlled side reports its nomination tens of ms after the controlling
   * one) and may still send on it, and a handshake response lost there costs WireGuard's 5 s retry.
   * One replaced path per peer: an older one is detached at once.
   */
  private retire(peer: ProxyPeer, previous: PeerPath): void {
    this.endRetirement(peer);
    if (previous.onRouteChange !== undefined) previous.onRouteChange = null;
    peer.replacedPath = previous;
    peer.replacedTimer = setTimeout(() => this.endRetirement(peer), this.replacedGraceMs);
    peer.replacedTimer.unref();
  }

  /** Detaches the replaced path, unless it is the path in use again. */
  private endRetirement(peer: ProxyPeer): void {
    clearTimeout(peer.replacedTimer);
    const replaced = peer.replacedPath;
    peer.replacedPath = null;
    if (replaced && replaced !== peer.path) this.detach(replaced);
  }

  async close(): Promise<void> {
    for (const key of [...this.peers.keys()]) this.removePeer(key);
    this.kernel?.close();
    this.catchAll?.close();
    this.catchAll = null;
  }

  /** Counts a dropped datagram; handlers return its result, which says "not forwarded". */
  private drop(reason: DropReason): false {
    this.drops[reason]++;
    return false;
  }

  /** A datagram WireGuard sent to L(P) or L6(P): it is P's by construction. */
  private fromWireGuard(peer: ProxyPeer, msg: Buffer, source: string): boolean {
    if (!source.startsWith("127.") && source !== LOOPBACK6_ADDRESS) return this.drop("foreign-source");
    const type = messageType(msg);
    if (type === 0) return this.drop("malformed");
    if ((type === MessageType.Initiation || type === MessageType.Response) && !peer.mac1.verify(msg)) {
      return this.drop("bad-mac1");
    }
    return this.forward(peer, msg, type);
  }

  /** A datagram WireGuard sent to the catch-all: handshakes by mac1, the rest by receiver index. */
  private fromWireGuardAtCatchAll(msg: Buffer, source: string): boolean {
    // Only this host can reach a 127.x socket; the source port is not checked, so that the parser
    // (not a port filter) is what every datagram meets, and a restarted WireGuard is heard at once.
    if (!source.startsWith("127.")) return this.drop("foreign-source");
    const type = messageType(msg);
    if (type === 0) return this.drop("malformed");
    let peer: ProxyPeer | undefined;
    if (type === MessageType.Initiation || type === MessageType.Response) {
      peer = this.keys.identify(msg);
      if (!peer) return this.drop("unknown-peer");
    } else {
      peer = this.indices.lookup(receiverIndex(msg));
      if (!peer) return this.drop("unknown-index");
    }
    return this.forward(peer, msg, type);
  }

  /** Sends WireGuard's datagram on the peer's path; true when it went out (or was held). */
  private forward(peer: ProxyPeer, msg: Buffer, type: number): boolean {
    const path = peer.path;
    if (!path) {
      if (type === MessageType.Initiation || type === MessageType.Response) {
        // Latest wins: WireGuard keeps one handshake state per peer, so a newer message (a retry with
        // a fresh timestamp, or a response that replaced our own initiation) makes older ones useless.
        if (peer.heldHandshake) this.drop("superseded");
        peer.heldHandshake = Buffer.from(msg);
        peer.heldAt = Date.now();
        peer.heldAfterInitiations = peer.initiationsReceived;
        this.emit("path-needed", peer);
        return true;
      }
      // A keepalive (no payload) is no reason to wake a dormant peer: WireGuard sends one after the last
      // data it received, which would wake every peer that just went dormant.
      if (peer.dormant && type === MessageType.Transport && msg.length > TRANSPORT_MIN_SIZE) {
        peer.heldData ??= new HeldData();
        const overflow = peer.heldData.hold(msg, Date.now());
        for (let i = 0; i < overflow; i++) this.drop("no-path");
        this.emit("path-needed", peer);
        return true;
      }
      return this.drop("no-path");
    }
    try {
      path.send(msg);
    } catch (err) {
      this.log.debug({ err, peer: peer.publicKey }, "path send failed");
      return this.drop("send-failed");
    }
    peer.traffic.txBytes += msg.length;
    peer.traffic.txDatagrams++;
    peer.lastSentAt = Date.now();
    if (type === MessageType.Initiation) {
      peer.lastInitiationSentAt = peer.lastSentAt;
      this.emit("initiation-sent", peer, msg);
    }
    return true;
  }

  /** A datagram that arrived on P's path: to WireGuard from L(P), and from nothing else. */
  private fromPeer(peer: ProxyPeer, msg: Buffer): boolean {
    const type = messageType(msg);
    if (type === 0) return this.drop("malformed");
    if (type === MessageType.Initiation || type === MessageType.Response) {
      if (this.localMac1 && !this.localMac1.verify(msg)) return this.drop("bad-mac1");
      this.indices.learn(senderIndex(msg), peer);
      if (type === MessageType.Initiation && this.crosses(peer)) {
        this.defer(peer, msg);
        return true;
      }
    }
    return this.toWireGuard(peer, msg, type);
  }

  /**
   * Both WireGuards initiated at once (both held a handshake until their paths came up, a few ms apart):
   * the peer's initiation arrives while ours is in flight. Delivered on both sides, each WireGuard would
   * answer the other's and discard the answer to its own, and both wait 5 s to retry. So the side whose
   * initiation wins (the smaller public key) holds the peer's back; the other side delivers ours.
   */
  private crosses(peer: ProxyPeer): boolean {
    return (
      peer.winsCrossing &&
      peer.unansweredInitiation !== null &&
      Date.now() - peer.lastInitiationSentAt < this.crossingWindowMs
    );
  }

  /** Held until ours is answered (then dropped), or delivered when the window ends (ours was lost). */
  private defer(peer: ProxyPeer, msg: Buffer): void {
    if (peer.deferredInitiation) this.drop("superseded");
    peer.deferredInitiation = Buffer.from(msg);
    clearTimeout(peer.deferredTimer);
    peer.deferredTimer = setTimeout(
      () => {
        const deferred = peer.deferredInitiation;
        peer.deferredInitiation = null;
        if (deferred && this.peers.get(peer.publicKey) === peer) {
          this.toWireGuard(peer, deferred, MessageType.Initiation);
        }
      },
      peer.lastInitiationSentAt + this.crossingWindowMs - Date.now(),
    );
    peer.deferredTimer.unref();
  }

  /** Sends the peer's datagram to WireGuard from L(P), or from L6(P) while the kernel does (`deliversFrom6`). */
  private toWireGuard(peer: ProxyPeer, msg: Buffer, type: number): boolean {
    if (type === MessageType.Initiation) peer.initiationsReceived++;
    const socket6 = peer.deliversFrom6 ? peer.socket6 : null;
    if (socket6) socket6.send(msg, this.wireguardPort, WIREGUARD_HOST6);
    else peer.socket.send(msg, this.wireguardPort, WIREGUARD_HOST);
    peer.traffic.rxBytes += msg.length;
    peer.traffic.rxDatagrams++;
    peer.lastReceivedAt = Date.now();
    if (type === MessageType.Response) {
      peer.lastResponseAt = peer.lastReceivedAt;
      if (peer.lastInitiationSentAt) peer.handshakeRttMs = peer.lastResponseAt - peer.lastInitiationSentAt;
      this.emit("response-received", peer);
    }
    return true;
  }
}
