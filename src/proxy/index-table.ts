/** How many of a peer's recent sender indices stay mapped: current, previous and next sessions, plus slack. */
const INDICES_PER_PEER = 4;

/**
 * Maps the sender indices a peer announced in its handshakes to that peer, so WireGuard's cookie replies
 * and transport messages sent to the catch-all (which carry the peer's index as receiver) find their way.
 * Bounded: each peer keeps only its last few indices.
 */
export class IndexTable<P extends object> {
  private readonly byIndex = new Map<number, P>();
  private readonly recent = new WeakMap<P, number[]>();

  /** Records that `peer` uses `index` (from a handshake it sent). */
  learn(index: number, peer: P): void {
    let ring = this.recent.get(peer);
    if (!ring) {
      ring = [];
      this.recent.set(peer, ring);
    }
    if (this.byIndex.get(index) === peer) return;
    this.byIndex.set(index, peer);
    ring.push(index);
    if (ring.length > INDICES_PER_PEER) {
      const old = ring.shift() as number;
      if (this.byIndex.get(old) === peer) this.byIndex.delete(old);
    }
  }

  lookup(index: number): P | undefined {
    return this.byIndex.get(index);
  }

  /** Forgets every index of a peer (when it is removed). */
  forget(peer: P): void {
    for (const index of this.recent.get(peer) ?? []) {
      if (this.byIndex.get(index) === peer) this.byIndex.delete(index);
    }
    this.recent.delete(peer);
  }

  get size(): number {
    return this.byIndex.size;
  }
}
