// Which of the peer's authenticated requests are evidence, and for what. The StunGuard in front of
// werift has verified USERNAME and MESSAGE-INTEGRITY (stun-verify.ts) and tells its subscribers of
// every check it admits; a request whose transaction ID was seen before is a replay (or werift's
// retransmission) and proves nothing new. Of the fresh ones:
// - PeerNominations takes the controlling peer's nominations (USE-CANDIDATE with ICE-CONTROLLING) on a
//   pair of the agent, for pair following (pair-following.ts). The pair need not be validated yet (a
//   request from a new address makes werift learn it and check it): following still needs data on
//   it, which only validated pairs deliver.
// - PeerChecks notes the peer's checks on the path's own pair (IcePath.peerCheckedAt), for liveness
//   (src/proxy/liveness.ts): the peer's agent, holding this generation's password, sends on the pair
//   now, so our own renewal probe of an idle path can wait.
import type { CandidatePair, Connection } from "werift-ice";
import type { AuthenticatedRequest } from "./stun-guard.js";

/** Transaction IDs remembered against replays (a peer sends a few requests a second at most). */
const REMEMBERED_TRANSACTIONS = 64;

/** The transaction IDs seen lately, oldest forgotten first. */
class RecentTransactions {
  private readonly seen = new Set<string>();

  /** True the first time `id` is seen (within the last REMEMBERED_TRANSACTIONS). */
  fresh(id: string): boolean {
    if (this.seen.has(id)) return false;
    this.seen.add(id);
    if (this.seen.size > REMEMBERED_TRANSACTIONS) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    return true;
  }
}

function sameRemote(request: AuthenticatedRequest, pair: CandidatePair): boolean {
  const { remote } = request;
  return (
    request.protocol === pair.protocol && pair.remoteAddr[1] === remote[1] && pair.remoteAddr[0] === remote[0]
  );
}

export class PeerNominations {
  private readonly transactions = new RecentTransactions();

  constructor(private readonly conn: Connection) {}

  /**
   * The pair `request` nominates, if it is seen for the first time and is the controlling peer's
   * nomination of a pair of the agent other than `skip`; null otherwise.
   */
  take(request: AuthenticatedRequest, skip: CandidatePair | null): CandidatePair | null {
    const pair = this.conn.checkList.find((p) => sameRemote(request, p));
    if (!pair || pair === skip || !this.transactions.fresh(request.transactionId)) return null;
    return request.useCandidate && request.controlling ? pair : null;
  }
}

export class PeerChecks {
  private readonly transactions = new RecentTransactions();

  /** True when `request` is the peer's fresh check of `pair` (the path's pair in use). */
  onPair(request: AuthenticatedRequest, pair: CandidatePair | null): boolean {
    return pair !== null && sameRemote(request, pair) && this.transactions.fresh(request.transactionId);
  }
}
