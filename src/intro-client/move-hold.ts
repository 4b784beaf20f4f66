/**
 * What an introduction client does for its envelopes while it (or a peer) moves between servers:
 * remembers what may not have arrived (recent-envelopes.ts), holds what is sent meanwhile for the peers
 * expected back (outbox.ts), and gives up on peers that do not come back. IntroClient calls it at each
 * step of a connection's life; with it, a move is invisible to whoever sends.
 */
import type { Logger } from "../log.js";
import type { SealedEnvelope } from "../signalling/protocol.js";
import { type HeldItem, IntroOutbox } from "./outbox.js";
import { RecentEnvelopes } from "./recent-envelopes.js";

/** Envelopes sent this long before a connection ended are sent again after the move. */
const RESEND_WINDOW_MS = 2_000;
/** ... at most this many. */
const RESEND_MAX = 1_024;
/** Peers not back this long after we are are given up (the outbox's grace, and a little more). */
const SWEEP_AFTER_MS = 11_000;

export class MoveHold {
  private readonly outbox = new IntroOutbox();
  private readonly recent = new RecentEnvelopes(RESEND_WINDOW_MS, RESEND_MAX);
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(private readonly log: Logger) {}

  /** An envelope went to the connection; `epochKnown`: sealed for the peer's current epoch. */
  sent(peer: string, envelope: SealedEnvelope, epochKnown: boolean): void {
    this.recent.record(peer, envelope);
    // Whatever waited for that epoch is being sent now.
    if (epochKnown) this.recent.epochKnown(peer);
  }

  /** A payload waits for the peer's epoch (EnvelopeExchange drops it if the peer goes offline first). */
  waitingForEpoch(peer: string, payload: unknown): void {
    this.recent.recordUnsealed(peer, payload);
  }

  /** The connection ended (not by stop()): these peers are expected back; what may be lost is kept. */
  connectionLost(onlinePeers: Iterable<string>): void {
    clearTimeout(this.sweepTimer);
    this.outbox.connectionLost(onlinePeers);
    for (const [peer, unsent] of this.recent.takeAll()) this.outbox.resend(peer, unsent);
  }

  /** Online again: the peers expected back have a grace to come back too. */
  connectionBack(): void {
    this.outbox.connectionBack();
    clearTimeout(this.sweepTimer);
    this.sweepTimer = setTimeout(() => {
      const dropped = this.outbox.sweep();
      if (dropped > 0) this.log.debug({ dropped }, "envelopes held for peers that did not come back dropped");
    }, SWEEP_AFTER_MS);
    this.sweepTimer.unref();
  }

  /** The peer left the server while we stayed: it may be moving too. */
  peerLeft(peer: string): void {
    this.outbox.peerLeft(peer);
    this.outbox.resend(peer, this.recent.takePeer(peer));
  }

  /** Whether what is sent to `peer` now is held (it is expected back). */
  holds(peer: string): boolean {
    return this.outbox.expects(peer);
  }

  /** Throws IntroSendError when too much is held. */
  hold(peer: string, payload: unknown): void {
    this.outbox.hold(peer, payload);
  }

  /** The peer is online again: what was held for it, oldest first. */
  take(peer: string): HeldItem[] {
    return this.outbox.take(peer);
  }

  /** The peer is no longer declared. */
  forget(peer: string): void {
    this.outbox.drop(peer);
    this.recent.takePeer(peer);
  }

  /** The client stops: nothing is waited for. */
  stop(): void {
    clearTimeout(this.sweepTimer);
    this.outbox.clear();
    this.recent.clear();
  }
}
