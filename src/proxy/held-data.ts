// WireGuard's transport data for a dormant peer, held until its path is back (lazy peers). A pause often
// ends with several datagrams at once (a DNS query and a TCP SYN, a ping and its retry): holding only
// the latest lost the others while the path came up. Bounded, as WireGuard's own queue is while it
// handshakes, so a peer that never comes back costs little.

/** At most this many datagrams and bytes a peer (the oldest go first beyond either). */
export const HELD_DATA_MAX_DATAGRAMS = 16;
export const HELD_DATA_MAX_BYTES = 32 * 1024;

export class HeldData {
  private readonly datagrams: Buffer[] = [];
  private readonly heldAt: number[] = [];
  private bytes = 0;

  get size(): number {
    return this.datagrams.length;
  }

  /** Keeps a copy of `datagram` (the socket's buffer is reused); answers how many older ones made room. */
  hold(datagram: Buffer, now: number): number {
    this.datagrams.push(Buffer.from(datagram));
    this.heldAt.push(now);
    this.bytes += datagram.length;
    let dropped = 0;
    while (
      this.datagrams.length > HELD_DATA_MAX_DATAGRAMS ||
      (this.bytes > HELD_DATA_MAX_BYTES && this.datagrams.length > 1)
    ) {
      this.bytes -= this.datagrams.shift()?.length ?? 0;
      this.heldAt.shift();
      dropped++;
    }
    return dropped;
  }

  /**
   * Empties it, in the order held: `send` gets each datagram held within `maxAgeMs`; answers how many
   * were older (WireGuard has retransmitted or moved on by then).
   */
  release(now: number, maxAgeMs: number, send: (datagram: Buffer) => void): number {
    let stale = 0;
    for (let i = 0; i < this.datagrams.length; i++) {
      if (now - (this.heldAt[i] ?? 0) < maxAgeMs) send(this.datagrams[i] as Buffer);
      else stale++;
    }
    this.datagrams.length = 0;
    this.heldAt.length = 0;
    this.bytes = 0;
    return stale;
  }
}
