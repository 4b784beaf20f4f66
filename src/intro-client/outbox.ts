/**
 * Envelopes held while the client moves between introduction servers (or a peer moves between them):
 * what the application sends to a peer that was online when the connection ended, and the envelopes
 * sent just before the end (which the old server may not have relayed), go out once we are back and
 * the peer is online again. The application never sees the move.
 *
 * Bounded per peer and in total; a peer not back within `graceMs` of our return (or of its own
 * departure, if we stayed) is taken for gone and its envelopes dropped, as anything older than
 * `maxAgeMs` is (the peer would refuse it as stale anyway).
 */
import type { SealedEnvelope } from "../signalling/protocol.js";
import { IntroSendError } from "./intro-errors.js";
import type { Unsent } from "./recent-envelopes.js";

/** An envelope sealed on an earlier connection (resent as it was: a duplicate is refused as a replay), or a payload still to seal. */
export type HeldItem = { sealed: SealedEnvelope } | { payload: unknown };

interface Held {
  at: number;
  item: HeldItem;
}

interface Expected {
  /** Until when (ms) the peer is waited for; null while we are away ourselves. */
  deadline: number | null;
  items: Held[];
}

export interface IntroOutboxOptions {
  maxPerPeer?: number;
  maxTotal?: number;
  graceMs?: number;
  maxAgeMs?: number;
  now?: () => number;
}

export class IntroOutbox {
  private readonly expected = new Map<string, Expected>();
  private total = 0;
  /** When our connection ended (null while online): after `maxAgeMs` away, nothing more is held. */
  private lostAt: number | null = null;
  private readonly maxPerPeer: number;
  private readonly maxTotal: number;
  private readonly graceMs: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;

  constructor(options: IntroOutboxOptions = {}) {
    this.maxPerPeer = options.maxPerPeer ?? 64;
    this.maxTotal = options.maxTotal ?? 2_048;
    this.graceMs = options.graceMs ?? 10_000;
    this.maxAgeMs = options.maxAgeMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  /** Envelopes held, all peers together. */
  get size(): number {
    return this.total;
  }

  /** Our connection ended: these peers (online until then) are waited for until we are back, and some. */
  connectionLost(peers: Iterable<string>): void {
    this.lostAt ??= this.now();
    for (const peer of peers) {
      const entry = this.expected.get(peer);
      if (entry) entry.deadline = null;
      else this.expected.set(peer, { deadline: null, items: [] });
    }
  }

  /** We are online again: the peers we wait for have `graceMs` from now to come back. */
  connectionBack(): void {
    this.lostAt = null;
    const deadline = this.now() + this.graceMs;
    for (const entry of this.expected.values()) entry.deadline ??= deadline;
  }

  /** The peer went offline while we stayed: it may be moving; wait `graceMs` for it. */
  peerLeft(peer: string): void {
    const deadline = this.now() + this.graceMs;
    const entry = this.expected.get(peer);
    if (entry) entry.deadline = entry.deadline === null ? null : Math.max(entry.deadline, deadline);
    else this.expected.set(peer, { deadline, items: [] });
  }

  /**
   * Whether sends to `peer` are held (it is expected back). Not once we have been away longer than
   * `maxAgeMs`: what would be held then is stale by the time it could go (the sender hears it is offline).
   */
  expects(peer: string): boolean {
    const entry = this.expected.get(peer);
    if (!entry) return false;
    if (this.lostAt !== null && this.now() - this.lostAt > this.maxAgeMs) return false;
    if (entry.deadline !== null && this.now() > entry.deadline) {
      this.drop(peer);
      return false;
    }
    return true;
  }

  /** Holds a payload for an expected peer; throws IntroSendError when the peer's or the total bound is reached. */
  hold(peer: string, payload: unknown): void {
    const entry = this.expected.get(peer);
    if (!entry) throw new IntroSendError("intro-not-expected", "the peer is not expected back", { peer });
    if (entry.items.length >= this.maxPerPeer || this.total >= this.maxTotal) {
      throw new IntroSendError("intro-queue-full", "too many envelopes held while moving between servers", {
        peer,
        heldForPeer: entry.items.length,
        heldTotal: this.total,
      });
    }
    entry.items.push({ at: this.now(), item: { payload } });
    this.total++;
  }

  /**
   * What was sent to `peer` but may not have arrived when the connection ended (recent-envelopes.ts):
   * it goes out again ahead of what is held. Best effort: beyond the bounds the oldest are left out.
   */
  resend(peer: string, unsent: Unsent): void {
    const entry = this.expected.get(peer);
    if (!entry) return;
    const items: Held[] = [
      ...unsent.sealed.map(({ at, sealed }) => ({ at, item: { sealed } })),
      ...unsent.payloads.map(({ at, payload }) => ({ at, item: { payload } })),
    ];
    const room = Math.max(0, Math.min(this.maxPerPeer - entry.items.length, this.maxTotal - this.total));
    const kept = items.slice(Math.max(0, items.length - room));
    entry.items.unshift(...kept);
    this.total += kept.length;
  }

  /** The peer is online again: what is held for it (fresh enough), oldest first; it is no longer waited for. */
  take(peer: string): HeldItem[] {
    const entry = this.expected.get(peer);
    if (!entry) return [];
    this.drop(peer);
    const oldest = this.now() - this.maxAgeMs;
    return entry.items.filter((held) => held.at >= oldest).map((held) => held.item);
  }

  /** Gives up on peers whose grace ran out; returns how many envelopes that dropped. */
  sweep(): number {
    const now = this.now();
    let dropped = 0;
    for (const [peer, entry] of [...this.expected]) {
      if (entry.deadline !== null && now > entry.deadline) dropped += this.drop(peer);
    }
    return dropped;
  }

  /** The peer is not waited for any more (undeclared, or given up); what was held for it is dropped. */
  drop(peer: string): number {
    const entry = this.expected.get(peer);
    if (!entry) return 0;
    this.expected.delete(peer);
    this.total -= entry.items.length;
    return entry.items.length;
  }

  clear(): void {
    this.expected.clear();
    this.total = 0;
    this.lostAt = null;
  }
}
