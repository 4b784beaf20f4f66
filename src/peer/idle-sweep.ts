// Which peers are idle: one pass over every peer at the interface's periodic read (no timer of its own,
// none per peer, no per-packet work). The data plane already stamps each peer's latest datagram either
// way: user space as it forwards, the kernel fast path's counters as KernelForwarder folds them in,
// which is late: a peer rests only on quiet its stamps know of, up to `knownUntil`.
import type { Peer } from "./peer.js";

/** A peer's latest datagram each way (wall-clock ms; 0: none), as `ProxyPeer` keeps them. */
export interface TrafficStamps {
  readonly lastSentAt: number;
  readonly lastReceivedAt: number;
}

/**
 * Tells every peer the sweep concerns (`Peer.swept`) how long nothing went either way for it
 * (`Peer.onTrafficAge`); the peer decides. The stamps are complete only up to `knownUntil` (the kernel
 * fast path's counts are read up to 5 s late, KernelForwarder.countsKnownUntil): the peer is told how
 * much of that quiet is not known yet, so that one whose datagrams the kernel carried meanwhile is not
 * released (it rests that much later instead).
 * Answers how many went dormant (hundreds at once leave their sessions' garbage: src/heap-release.ts).
 */
export function sweepIdlePeers(
  peers: Iterable<Peer>,
  stampsOf: (publicKey: string) => TrafficStamps | undefined,
  now: number = Date.now(),
  knownUntil: (publicKey: string) => number = () => now,
): number {
  let rested = 0;
  for (const peer of peers) {
    if (!peer.swept) continue; // dormant with no path: nothing it could have carried
    const stamps = stampsOf(peer.publicKey);
    if (!stamps) continue;
    const wasDormant = isDormant(peer);
    const unknownMs = Math.max(0, now - knownUntil(peer.publicKey));
    peer.onTrafficAge(now - Math.max(stamps.lastSentAt, stamps.lastReceivedAt), unknownMs);
    if (!wasDormant && isDormant(peer)) rested++;
  }
  return rested;
}

function isDormant(peer: Peer): boolean {
  return peer.state.name === "dormant";
}
