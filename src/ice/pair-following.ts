// Keeps an IcePath on the pair the peer sends on. werift's aggressive nomination can leave the two sides
// on different validated pairs, and a peer whose NAT gave it a new mapping moves to a new pair on its
// own (see ice-path.ts); either way IcePath reports data on another validated pair through onOtherPair.
import type { CandidatePair } from "werift-ice";
import type { Logger } from "../log.js";
import type { IcePath } from "./ice-path.js";

/** The controlled side follows the peer to another pair at most this often (a confused peer cannot make it flap). */
export const FOLLOW_INTERVAL_MS = 1000;
/**
 * The controlling side follows the peer to another pair only after hearing nothing on its own pair this
 * long: by then a controlled side that merely picked another pair has followed us (FOLLOW_INTERVAL_MS).
 */
export const PEER_MOVED_SILENCE_MS = 2000;

/** Keeps `path` on the pair the peer sends on, from now on (installs `path.onOtherPair`). */
export function followPeer(path: IcePath, controlling: boolean, log: Logger): void {
  const follower = new PairFollower(path, log);
  path.onOtherPair = controlling
    ? (other) => follower.followIfPeerMoved(other)
    : (other) => follower.follow(other, "ice pair re-nominated to follow the controlling side");
}

class PairFollower {
  /** When the path last followed the peer to another pair (performance.now()). */
  private followedAt = Number.NEGATIVE_INFINITY;
  /** Controlling side: datagrams heard on the path's own pair, and since when that count stands. */
  private readonly heardOnPair = { count: 0, since: performance.now() };

  constructor(
    private readonly path: IcePath,
    private readonly log: Logger,
  ) {}

  /**
   * Controlled side: the peer sends on a validated pair other than ours (werift's aggressive nomination
   * let the two sides pick different pairs). Adopt it, so both sides use one 5-tuple and consent checks
   * run on the pair in use.
   */
  follow(pair: CandidatePair, message: string): void {
    const path = this.path;
    const now = performance.now();
    if (path.closed || now - this.followedAt < FOLLOW_INTERVAL_MS) return;
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
  }

  /**
   * Controlling side: the peer's datagrams arrive on another validated pair and none on ours for
   * PEER_MOVED_SILENCE_MS. Its NAT gave it a new mapping (a conntrack flush, a NAT reboot) and its new
   * address proved the ICE password in a triggered check. Send there: our datagrams would otherwise go to
   * a mapping that is gone, while the peer's probes through the new one are answered and nobody suspects
   * the path.
   */
  followIfPeerMoved(pair: CandidatePair): void {
    const path = this.path;
    const heard = path.stats.datagramsReceived - path.stats.otherPairDatagrams;
    const now = performance.now();
    const mark = this.heardOnPair; // updated in place: this runs per datagram on the other pair
    if (heard !== mark.count) {
      mark.count = heard;
      mark.since = now;
      return;
    }
    if (now - mark.since < PEER_MOVED_SILENCE_MS) return;
    this.follow(pair, "ice pair re-nominated: the peer moved to a new address");
    mark.since = now;
  }
}
