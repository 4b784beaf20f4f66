// Which peers are idle: one pass over every peer at the interface's periodic read (no timer of its own,
// none per peer, no per-packet work). The data plane already stamps each peer's latest datagram either
// way: user space as it forwards, the kernel fast path's counters as KernelForwarder folds them in.
import type { Peer } from "./peer.js";

/** A peer's latest datagram each way (wall-clock ms; 0: none), as `ProxyPeer` keeps them. */
export interface TrafficStamps {
  readonly lastSentAt: number;
  readonly lastReceivedAt: number;
}

/**
 * Tells every peer the sweep concerns (`Peer.swept`) how long nothing went either way for it
 * (`Peer.onTrafficAge`); the peer decides.
 * Answers how many went dormant (hundreds at once leave their sessions' garbage: src/heap-release.ts).
 */
export function sweepIdlePeers(
  peers: Iterable<Peer>,
  stampsOf: (publicKey: string) => TrafficStamps | undefined,
  now: number = Date.now(),
): number {
  let rested = 0;
  for (const peer of peers) {
    if (!peer.swept) continue; // dormant with no path: nothing it could have carried
    const stamps = stampsOf(peer.publicKey);
    if (!stamps) continue;
    const wasDormant = isDormant(peer);
    peer.onTrafficAge(now - Math.max(stamps.lastSentAt, stamps.lastReceivedAt));
    if (!wasDormant && isDormant(peer)) rested++;
  }
  return rested;
}

function isDormant(peer: Peer): boolean {
  return peer.state.name === "dormant";
}
