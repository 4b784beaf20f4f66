import { Mac1Key } from "../wireguard/mac1.js";
import type { BatchedUdpSocket } from "./batched-udp.js";
import { newTrafficCounters, type TrafficCounters } from "./counters.js";
import type { HeldData } from "./held-data.js";
import type { LoopbackAddress } from "./loopback-address.js";
import type { PeerPath } from "./path.js";

/** Data-plane state of one peer: its loopback sockets (L(P), L6(P)), its current path and its counters. */
export class ProxyPeer {
  readonly mac1: Mac1Key;
  path: PeerPath | null = null;
  /**
   * The latest handshake message (initiation or response) WireGuard sent while no path existed, and
   * when: sent as soon as a path is set, unless WireGuard's 5 s retry has superseded it.
   */
  heldHandshake: Buffer | null = null;
  heldAt = 0;
  /**
   * The peer is dormant (its ICE session released for idleness): WireGuard's data is held too, not only
   * its handshakes, so that the first packet after a pause wakes the peer and still arrives.
   */
  dormant = false;
  /** The transport data WireGuard sent while dormant (sent with the next path); made on first use. */
  heldData: HeldData | null = null;
  /** `initiationsReceived` when the held handshake was made. */
  heldAfterInitiations = 0;
  /** Initiations from the peer delivered to WireGuard. */
  initiationsReceived = 0;
  /** Our initiation wins when both WireGuards initiate at once (our public key is the smaller one). */
  winsCrossing = false;
  /** The peer's initiation that crossed ours, held back until ours is answered (see WireGuardProxy). */
  deferredInitiation: Buffer | null = null;
  deferredTimer: NodeJS.Timeout | undefined;
  /** The path this one replaced, still delivering for a moment (the peer may not have switched yet). */
  replacedPath: PeerPath | null = null;
  replacedTimer: NodeJS.Timeout | undefined;
  /** The latest initiation sent on a path, until a response arrives (resent on a replacement path). */
  unansweredInitiation: Buffer | null = null;
  readonly traffic: TrafficCounters = newTrafficCounters();
  /** The part of `traffic` the kernel fast path carried (--ebpf). */
  readonly kernelTraffic: TrafficCounters = newTrafficCounters();
  lastSentAt = 0;
  lastReceivedAt = 0;
  lastInitiationSentAt = 0;
  lastResponseAt = 0;
  /** Time from the last initiation sent to the response that followed, in ms (null until measured). */
  handshakeRttMs: number | null = null;
  /**
   * L6(P), [::1]:port, and its socket: bound the first time the kernel fast path carries a plain UDP path
   * over IPv6 for the peer (WireGuardProxy.loopback6), then kept, as WireGuard may send to it until it
   * hears from L(P) again. Null until then, and wherever it cannot be used.
   */
  loopback6: LoopbackAddress | null = null;
  socket6: BatchedUdpSocket | null = null;
  /**
   * The peer's datagrams reach WireGuard from L6(P), not L(P): set with the kernel's entries that
   * deliver from it (KernelForwarder), so that user space (handshakes) and the kernel (data) agree and
   * WireGuard's endpoint stays put.
   */
  deliversFrom6 = false;
  /** The path callback, made once per peer so switching paths allocates nothing new. */
  deliverInbound: ((datagram: Buffer) => void) | undefined;

  constructor(
    readonly publicKey: string,
    readonly keyBytes: Uint8Array,
    readonly loopback: LoopbackAddress,
    readonly socket: BatchedUdpSocket,
  ) {
    this.mac1 = new Mac1Key(keyBytes);
  }
}
