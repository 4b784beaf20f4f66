import type { Socket } from "node:dgram";
import { Mac1Key } from "../wireguard/mac1.js";
import { newTrafficCounters, type TrafficCounters } from "./counters.js";
import type { LoopbackAddress } from "./loopback-address.js";
import type { PeerPath } from "./path.js";

/** Data-plane state of one peer: its loopback socket L(P), its current path and its counters. */
export class ProxyPeer {
  readonly mac1: Mac1Key;
  path: PeerPath | null = null;
  /** The latest initiation WireGuard sent while no path existed. */
  heldInitiation: Buffer | null = null;
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
  /** The path callback, made once per peer so switching paths allocates nothing new. */
  deliverInbound: ((datagram: Buffer) => void) | undefined;

  constructor(
    readonly publicKey: string,
    readonly keyBytes: Uint8Array,
    readonly loopback: LoopbackAddress,
    readonly socket: Socket,
  ) {
    this.mac1 = new Mac1Key(keyBytes);
  }
}
