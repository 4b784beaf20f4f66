/**
 * What was handed to the current server connection but may not have reached the peer when the
 * connection ends: the envelopes sent in the last few seconds (the server may not have relayed them:
 * frames it read while closing, a recipient that left it, frames still in our pacing queue or in
 * flight), and the payloads still waiting for the peer's epoch (EnvelopeExchange drops them when the
 * peer goes offline). After the move they go out again: sealed envelopes as they were, so the peer's
 * replay window refuses whichever copy comes second; payloads sealed afresh.
 */
import type { SealedEnvelope } from "../signalling/protocol.js";

export interface Unsent {
  /** Sealed and sent, oldest first. */
  sealed: Array<{ at: number; sealed: SealedEnvelope }>;
  /** Not sealed yet (the peer's epoch was unknown), oldest first. */
  payloads: Array<{ at: number; payload: unknown }>;
}

interface SentEnvelope {
  peer: string;
  at: number;
  sealed: SealedEnvelope;
}

export class RecentEnvelopes {
  private sent: SentEnvelope[] = [];
  private readonly unsealed = new Map<string, Array<{ at: number; payload: unknown }>>();

  constructor(
    /** How far back (ms) envelopes are kept. */
    private readonly windowMs: number,
    /** At most this many are kept (the oldest go first). */
    private readonly maxKept: number,
    private readonly now: () => number = Date.now,
  ) {}

  record(peer: string, sealed: SealedEnvelope): void {
    const at = this.now();
    this.sent.push({ peer, at, sealed });
    if (this.sent.length > this.maxKept || this.sent[0]!.at < at - this.windowMs) this.trim(at);
  }

  /** A payload waits for the peer's epoch (EnvelopeExchange holds it until then). */
  recordUnsealed(peer: string, payload: unknown): void {
    const list = this.unsealed.get(peer) ?? [];
    list.push({ at: this.now(), payload });
    this.unsealed.set(peer, list);
  }

  /** The peer's epoch is known: what waited for it has been sealed and sent. */
  epochKnown(peer: string): void {
    this.unsealed.delete(peer);
  }

  /** The connection ended: what may not have arrived, by peer; forgets it all. */
  takeAll(): Map<string, Unsent> {
    this.trim(this.now());
    const byPeer = new Map<string, Unsent>();
    const of = (peer: string) => {
      const unsent = byPeer.get(peer) ?? { sealed: [], payloads: [] };
      byPeer.set(peer, unsent);
      return unsent;
    };
    for (const { peer, at, sealed } of this.sent) of(peer).sealed.push({ at, sealed });
    for (const [peer, payloads] of this.unsealed) of(peer).payloads.push(...payloads);
    this.clear();
    return byPeer;
  }

  /** The peer left the server (we stayed): what may not have reached it; forgets that. */
  takePeer(peer: string): Unsent {
    this.trim(this.now());
    const sealed = this.sent.filter((sent) => sent.peer === peer).map(({ at, sealed }) => ({ at, sealed }));
    if (sealed.length > 0) this.sent = this.sent.filter((sent) => sent.peer !== peer);
    const payloads = this.unsealed.get(peer) ?? [];
    this.unsealed.delete(peer);
    return { sealed, payloads };
  }

  clear(): void {
    this.sent = [];
    this.unsealed.clear();
  }

  private trim(now: number): void {
    const oldest = now - this.windowMs;
    let first = 0;
    while (
      first < this.sent.length &&
      (this.sent[first]!.at < oldest || this.sent.length - first > this.maxKept)
    )
      first++;
    if (first > 0) this.sent = this.sent.slice(first);
  }
}
