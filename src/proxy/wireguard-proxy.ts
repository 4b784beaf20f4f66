import type { RemoteInfo, Socket } from "node:dgram";
import { EventEmitter } from "node:events";
import { RuntimeError } from "../errors.js";
import type { Logger } from "../log.js";
import { Mac1Key } from "../wireguard/mac1.js";
import { MessageType, messageType, receiverIndex, senderIndex } from "../wireguard/messages.js";
import { PeerKeyTable } from "../wireguard/peer-key-table.js";
import { type DropCounters, type DropReason, newDropCounters } from "./counters.js";
import { IndexTable } from "./index-table.js";
import type { KernelForwarder } from "./kernel-forwarder.js";
import { LoopbackAllocator } from "./loopback-address.js";
import type { PeerPath } from "./path.js";
import { ProxyPeer } from "./proxy-peer.js";
import { bindUdpSocket, SOCKET_BUFFER_BYTES } from "./udp-socket.js";

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
  logger: Logger;
}

export interface WireGuardProxyEvents {
  /** WireGuard sent an initiation to a peer that has no path: it is held until `setPath`. */
  "path-needed": [peer: ProxyPeer];
  /** An initiation from WireGuard went out on the peer's path. */
  "initiation-sent": [peer: ProxyPeer, initiation: Buffer];
  /** A handshake response from the peer reached WireGuard. */
  "response-received": [peer: ProxyPeer];
}

const WIREGUARD_HOST = "127.0.0.1";

/**
 * An unanswered initiation is sent again on a path that replaces the one it went out on, if it is
 * younger than this: WireGuard's own retry (every 5 s, with a fresh timestamp) supersedes it.
 */
const RESEND_INITIATION_MAX_AGE_MS = 5000;

/**
 * The data plane: the catch-all socket, one loopback socket L(P) per peer, and forwarding between
 * WireGuard and each peer's path. Every datagram is checked to be a well-formed WireGuard message;
 * anything else is dropped and counted, never forwarded, never thrown.
 */
export class WireGuardProxy extends EventEmitter<WireGuardProxyEvents> {
  readonly drops: DropCounters = newDropCounters();
  private readonly peers = new Map<string, ProxyPeer>();
  private readonly keys = new PeerKeyTable<ProxyPeer>();
  private readonly indices = new IndexTable<ProxyPeer>();
  private readonly allocator: LoopbackAllocator;
  private readonly localMac1: Mac1Key | null;
  private readonly log: Logger;
  private catchAll: Socket | null = null;
  private wireguardPort: number;
  private readonly kernel: KernelForwarder | null;

  constructor(private readonly options: WireGuardProxyOptions) {
    super();
    this.log = options.logger;
    this.wireguardPort = options.wireguardPort;
    this.kernel = options.kernel ?? null;
    this.kernel?.setWireGuardPort(options.wireguardPort, []);
    this.allocator = new LoopbackAllocator(options.loopbackPortBase);
    this.localMac1 = options.localPublicKey ? new Mac1Key(options.localPublicKey) : null;
    // Kept off the data path: initiations and responses are a few per peer every two minutes.
    this.on("initiation-sent", (peer, initiation) => {
      peer.unansweredInitiation = initiation;
    });
    this.on("response-received", (peer) => {
      peer.unansweredInitiation = null;
    });
  }

  get wireguardListenPort(): number {
    return this.wireguardPort;
  }

  /** Binds the catch-all. Fails with a ConfigError (code "port-busy") when the address is taken. */
  async start(): Promise<void> {
    const { address, port } = this.options.catchAll;
    const socket = await bindUdpSocket({ address, port, role: "catch-all", exclusive: true });
    socket.on("message", (msg, rinfo) => this.fromWireGuardAtCatchAll(msg, rinfo));
    this.catchAll = socket;
    // Linux caps SO_RCVBUF/SO_SNDBUF at net.core.rmem_max/wmem_max (the kernel reports double the
    // granted size); we never change those sysctls, so say what was granted.
    const granted = { receive: socket.getRecvBufferSize() / 2, send: socket.getSendBufferSize() / 2 };
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

  /** Adds a peer and binds its L(P): the first free candidate of its key, in a deterministic order. */
  async addPeer(publicKey: string, keyBytes: Uint8Array): Promise<ProxyPeer> {
    const existing = this.peers.get(publicKey);
    if (existing) return existing;
    let lastError: unknown;
    for (const where of this.allocator.candidates(keyBytes)) {
      try {
        const socket = await bindUdpSocket({
          address: where.address,
          port: where.port,
          role: "loopback",
          exclusive: true,
        });
        this.allocator.claim(where);
        const peer = new ProxyPeer(publicKey, keyBytes, where, socket);
        socket.on("message", (msg, rinfo) => this.fromWireGuard(peer, msg, rinfo));
        socket.on("error", (err) => this.log.debug({ err, peer: publicKey }, "loopback socket error"));
        this.peers.set(publicKey, peer);
        this.keys.add(keyBytes, peer);
        this.log.info({ peer: publicKey, loopback: `${where.address}:${where.port}` }, "peer added");
        return peer;
      } catch (err) {
        lastError = err;
        this.allocator.claim(where); // busy: someone else holds it; skip it from now on
      }
    }
    throw new RuntimeError("loopback-exhausted", `no free loopback address:port for peer ${publicKey}`, {
      peer: publicKey,
      cause: String(lastError),
    });
  }

  removePeer(publicKey: string): void {
    const peer = this.peers.get(publicKey);
    if (!peer) return;
    this.peers.delete(publicKey);
    this.keys.remove(peer.keyBytes);
    this.indices.forget(peer);
    this.allocator.release(peer.loopback);
    this.kernel?.remove(peer);
    if (peer.path) this.detach(peer.path);
    peer.path = null;
    peer.socket.close();
    this.log.info({ peer: publicKey }, "peer removed");
  }

  peer(publicKey: string): ProxyPeer | undefined {
    return this.peers.get(publicKey);
  }

  allPeers(): IterableIterator<ProxyPeer> {
    return this.peers.values();
  }

  /**
   * Makes `path` the peer's path and sends the held initiation on it; a path that replaces another also
   * gets the initiation that went out on the old one and is still unanswered (the old path was suspect),
   * so WireGuard does not wait for its 5 s retry. The previous path is detached (its datagrams are no
   * longer delivered) but not closed: whoever made a path closes it. `null` removes the path:
   * initiations are held again until a new one is set. The change is logged once, with `reason`.
   */
  setPath(publicKey: string, path: PeerPath | null, reason = "unspecified"): void {
    const peer = this.peers.get(publicKey);
    if (!peer) return;
    const previous = peer.path;
    if (previous === path) return;
    peer.path = path;
    if (previous) this.detach(previous);
    if (this.kernel) {
      const kernel = this.kernel;
      if (path) path.onRouteChange = () => void kernel.update(peer);
      void kernel.update(peer);
    }
    this.log.info(
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
    const held = peer.heldInitiation;
    const unanswered = peer.unansweredInitiation;
    if (held) {
      peer.heldInitiation = null;
      this.forward(peer, held, MessageType.Initiation);
    } else if (
      previous &&
      unanswered &&
      peer.lastResponseAt < peer.lastInitiationSentAt &&
      Date.now() - peer.lastInitiationSentAt < RESEND_INITIATION_MAX_AGE_MS
    ) {
      peer.unansweredInitiation = null;
      this.forward(peer, unanswered, MessageType.Initiation);
    }
  }

  /** Sends to WireGuard at its new listen port from now on, e.g. after it was restarted. */
  setWireGuardPort(port: number): void {
    this.wireguardPort = port;
    this.kernel?.setWireGuardPort(port, this.peers.values());
  }

  private detach(path: PeerPath): void {
    path.onDatagram = null;
    if (path.onRouteChange !== undefined) path.onRouteChange = null;
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

  /** A datagram WireGuard sent to L(P): it is P's by construction. */
  private fromWireGuard(peer: ProxyPeer, msg: Buffer, rinfo: RemoteInfo): boolean {
    if (!rinfo.address.startsWith("127.")) return this.drop("foreign-source");
    const type = messageType(msg);
    if (type === 0) return this.drop("malformed");
    if ((type === MessageType.Initiation || type === MessageType.Response) && !peer.mac1.verify(msg)) {
      return this.drop("bad-mac1");
    }
    return this.forward(peer, msg, type);
  }

  /** A datagram WireGuard sent to the catch-all: handshakes by mac1, the rest by receiver index. */
  private fromWireGuardAtCatchAll(msg: Buffer, rinfo: RemoteInfo): boolean {
    // Only this host can reach a 127.x socket; the source port is not checked, so that the parser
    // (not a port filter) is what every datagram meets, and a restarted WireGuard is heard at once.
    if (!rinfo.address.startsWith("127.")) return this.drop("foreign-source");
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
      if (type === MessageType.Initiation) {
        // Latest wins: WireGuard's retry carries a fresh timestamp the peer will accept.
        peer.heldInitiation = Buffer.from(msg);
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
    }
    peer.socket.send(msg, this.wireguardPort, WIREGUARD_HOST);
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
