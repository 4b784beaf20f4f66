// Which of the peer's authenticated requests are evidence for pair following (pair-following.ts). The
// StunGuard in front of werift has verified USERNAME and MESSAGE-INTEGRITY (stun-verify.ts) and tells
// its subscribers of every check it admits; of those, this takes the controlling peer's nominations
// (USE-CANDIDATE with ICE-CONTROLLING) on a pair of the agent, with a transaction ID not seen before
// (a replayed request proves nothing new). The pair need not be validated yet (a request from a new
// address makes werift learn it and check it): following still needs data on it, which only
// validated pairs deliver.
import type { CandidatePair, Connection } from "werift-ice";
import type { AuthenticatedRequest } from "./stun-guard.js";

/** Transaction IDs remembered against replays (a peer sends a few requests a second at most). */
const REMEMBERED_TRANSACTIONS = 64;

export class PeerNominations {
  private readonly seen = new Set<string>();

  constructor(private readonly conn: Connection) {}

  /**
   * The pair `request` nominates, if it is seen for the first time and is the controlling peer's
   * nomination of a pair of the agent other than `skip`; null otherwise.
   */
  take(request: AuthenticatedRequest, skip: CandidatePair | null): CandidatePair | null {
    const { protocol, remote } = request;
    const pair = this.conn.checkList.find(
      (p) => p.protocol === protocol && p.remoteAddr[1] === remote[1] && p.remoteAddr[0] === remote[0],
    );
    if (!pair || pair === skip) return null;
    const id = request.transactionId;
    if (this.seen.has(id)) return null;
    this.seen.add(id);
    if (this.seen.size > REMEMBERED_TRANSACTIONS) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    return request.useCandidate && request.controlling ? pair : null;
  }
}
