// Keeps an IcePath on the pair the peer sends on, on authenticated evidence only. werift's aggressive
// nomination can leave the two sides on different validated pairs, and a peer whose NAT gave it a new
// mapping moves to a new pair on its own (see ice-path.ts); either way IcePath reports data on another
// validated pair through onOtherPair.
//
// Such a datagram is only a hint: its source address is spoofable (one datagram from the peer's TURN
// relay address used to move a direct path onto the relay), and Tunnelbore cannot verify WireGuard
// data. The path moves to the hinted pair only on evidence an attacker cannot forge:
// - the controlled side: an integrity-checked request from the controlling peer nominating that pair
//   (USE-CANDIDATE), within EVIDENCE_WINDOW_MS of data on it; or, from a relayed pair, such a
//   nomination of a direct pair our own check validated, data or not. The controlling side nominates the pair
//   it sends on with every probe, and at once when it moves (IcePath.switchTo), so the controlled side
//   follows within about one round trip;
// - either side: a probe round on the hint (a binding request on our pair and one on the hinted pair)
//   in which our pair stays silent and the hinted one answers. The peer moved (its NAT forgot the old
//   mapping) and the old pair is gone; an attacker cannot silence a pair that works.
// On the controlling side the round's probe of our own pair also nominates it, which brings a
// controlled side that picked another pair back to ours.
//
// The controlling side also leaves a relayed pair for a direct pair of the same agent that its own check
// validated. werift nominates the first pair whose check succeeds: a relay pair's check through a TURN
// permission answers in one round trip, while a direct pair's first check is dropped by the peer's NAT
// until the peer's own check opens it, so the relay now and then wins by a few milliseconds (seen on a
// loaded machine; likelier where the TURN server is nearer than the peer). The direct checks still in
// flight, and those the peer's checks trigger, validate direct pairs after the nomination; the path
// moves to the best one at once instead of waiting for the first upgrade attempt (a new generation,
// 5 s on). Our check's answer carried the peer's MESSAGE-INTEGRITY: the pair works both ways.
import { type CandidatePair, CandidatePairState } from "werift-ice";
import type { Logger } from "../log.js";
import { type IcePath, probeTimeoutMs } from "./ice-path.js";
import { PeerNominations } from "./peer-requests.js";
import { isRelayedPair } from "./relayed-pair.js";
import type { StunGuard } from "./stun-guard.js";
import { onCheckComplete } from "./werift-workarounds.js";

/** The path follows the peer to another pair at most this often (a confused peer cannot make it flap). */
export const FOLLOW_INTERVAL_MS = 1000;
/** A hint starts a probe round at most this often (a spray of spoofed datagrams costs two probes a second). */
export const PROBE_ROUND_INTERVAL_MS = 1000;
/**
 * Controlled side: the peer's nomination of a pair and data on it make the peer's move only this close
 * together. Stale nominations (the checks of the connect) say nothing about where the peer sends now.
 */
export const EVIDENCE_WINDOW_MS = 1000;

/** A pair our own check validated (its answer carried the peer's MESSAGE-INTEGRITY), not through TURN. */
function validatedDirect(pair: CandidatePair): boolean {
  return pair.state === CandidatePairState.SUCCEEDED && !isRelayedPair(pair);
}

/**
 * Keeps `path` on the pair the peer sends on, from now on (installs `path.onOtherPair`; on the
 * controlled side, listens to the checks `guard` let through to the path's agent); tells `onFollowed`
 * after each move.
 */
export function followPeer(
  path: IcePath,
  controlling: boolean,
  guard: StunGuard,
  log: Logger,
  /** The path followed the peer to another pair (its kind may have changed). */
  onFollowed: () => void,
): void {
  const follower = new PairFollower(path, log, onFollowed);
  path.onOtherPair = (pair) => follower.hint(pair, controlling);
  if (controlling) {
    const unsubscribe = onCheckComplete(path.conn, (pair) => {
      if (path.closed) unsubscribe();
      // After werift's own handling of the check (a nomination it makes comes first).
      else if (validatedDirect(pair)) queueMicrotask(() => follower.directValidated());
    });
    // One may have validated between werift's nomination and now.
    follower.directValidated();
  } else {
    const nominations = new PeerNominations(path.conn);
    const unsubscribe = guard.onAuthenticatedRequest((request) =>
      // Looked at once werift has handled it: a request from a new address makes werift learn its pair.
      queueMicrotask(() => {
        if (path.closed) {
          unsubscribe();
          return;
        }
        const pair = nominations.take(request, path.pair);
        if (pair) follower.nominated(pair);
      }),
    );
  }
}

class PairFollower {
  /** When the path last followed the peer to another pair (performance.now()). */
  private followedAt = Number.NEGATIVE_INFINITY;
  private roundAt = Number.NEGATIVE_INFINITY;
  private roundInFlight = false;
  /** A move off the relay waiting for the follow interval (directValidated). */
  private promotionDue: NodeJS.Timeout | undefined;
  /** Per other validated pair of the agent (so bounded by its check list): last data, last nomination. */
  private readonly dataAt = new Map<CandidatePair, number>();
  private readonly nominatedAt = new Map<CandidatePair, number>();

  constructor(
    private readonly path: IcePath,
    private readonly log: Logger,
    /** The path moved: its kind (direct, relay) may be another now. */
    private readonly onFollowed: () => void,
  ) {}

  /** Data arrived on `pair`, another validated pair than ours (per datagram: cheap unless acted on). */
  hint(pair: CandidatePair, controlling: boolean): void {
    const now = performance.now();
    this.dataAt.set(pair, now);
    if (
      !controlling &&
      now - (this.nominatedAt.get(pair) ?? Number.NEGATIVE_INFINITY) <= EVIDENCE_WINDOW_MS
    ) {
      this.follow(pair, "ice pair re-nominated to follow the controlling side");
      return;
    }
    this.probeRound(pair, now);
  }

  /** Controlled side: the controlling peer nominated `pair` in an authenticated request. */
  nominated(pair: CandidatePair): void {
    const now = performance.now();
    this.nominatedAt.set(pair, now);
    if (now - (this.dataAt.get(pair) ?? Number.NEGATIVE_INFINITY) <= EVIDENCE_WINDOW_MS) {
      this.follow(pair, "ice pair re-nominated to follow the controlling side");
      return;
    }
    // Off a relay without data: the peer nominates a direct pair our own check has validated (it works
    // both ways), so nothing is lost if the nomination is stale, and an idle path would otherwise keep
    // probing through the TURN server (seen at a hub whose idle peers' checks had crossed).
    if (this.path.kind === "relay" && validatedDirect(pair))
      this.follow(pair, "ice pair re-nominated: the controlling side nominates a validated direct pair");
  }

  /**
   * Controlling side: a direct pair of the agent validated. A relayed path moves to the best such pair
   * (werift's priority order: host before server-reflexive), at once or once the follow interval allows.
   */
  directValidated(): void {
    const path = this.path;
    if (path.closed || path.kind !== "relay" || this.promotionDue) return;
    const wait = this.followedAt + FOLLOW_INTERVAL_MS - performance.now();
    if (wait > 0) {
      this.promotionDue = setTimeout(() => {
        this.promotionDue = undefined;
        this.directValidated();
      }, wait);
      this.promotionDue.unref();
      return;
    }
    let best: CandidatePair | undefined;
    for (const pair of path.conn.checkList) {
      if (validatedDirect(pair) && (!best || pair.priority > best.priority)) best = pair;
    }
    if (best) this.follow(best, "ice path moved off the relay: a direct pair of its generation answered");
  }

  /** Probes our pair and the hinted one; follows when ours is silent and the hinted one answers. */
  private probeRound(hinted: CandidatePair, now: number): void {
    const path = this.path;
    const own = path.pair;
    if (!own || this.roundInFlight || now - this.roundAt < PROBE_ROUND_INTERVAL_MS) return;
    this.roundAt = now;
    this.roundInFlight = true;
    void Promise.all([path.probe(probeTimeoutMs(own)), path.probePair(hinted, probeTimeoutMs(hinted))]).then(
      ([ownRtt, hintedRtt]) => {
        this.roundInFlight = false;
        const moved = ownRtt === null && hintedRtt !== null;
        this.log.debug(
          { generation: path.generation, ownAnswered: ownRtt !== null, hintedAnswered: hintedRtt !== null },
          "ice probe round on data from another pair",
        );
        if (!moved || path.pair !== own || hinted.state !== CandidatePairState.SUCCEEDED) return;
        this.follow(hinted, "ice pair re-nominated: our pair stopped answering, the peer's new one answers");
      },
    );
  }

  /** Moves the path to `pair` (the same 5-tuple on both sides; consent checks on the pair in use). */
  private follow(pair: CandidatePair, message: string): void {
    const path = this.path;
    const now = performance.now();
    if (path.closed || path.pair === pair || now - this.followedAt < FOLLOW_INTERVAL_MS) return;
    this.followedAt = now;
    const was = path.remote;
    try {
      path.switchTo(pair);
    } catch (err) {
      this.log.error({ err }, "cannot follow the peer's ice pair");
      return;
    }
    path.conn.nominated = pair; // consent checks follow the pair in use
    this.log.info({ generation: path.generation, kind: path.kind, remote: path.remote, was }, message);
    this.onFollowed();
  }
}
