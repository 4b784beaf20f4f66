// Which of the peer's STUN Binding requests are evidence for pair following (pair-following.ts): only
// those that prove the ICE password (MESSAGE-INTEGRITY with our local password, our ufrag pair in
// USERNAME), arrive on a pair of the agent, and carry a transaction ID not seen before (a replayed
// request proves nothing new). The pair need not be validated yet (a request from a new address makes
// werift learn it and check it): following still needs data on it, which only validated pairs deliver. werift itself answers requests without checking their integrity, and
// its counters say nothing about which request was authenticated, so the path verifies them itself.
//
// Cost: the caller hands over only STUN-framed datagrams on pairs other than the one in use (rare:
// checks, the peer's probes), and the cheap tests (class, method, pair) run before the HMAC.
import { type CandidatePair, type Connection, type Protocol, parseMessage } from "werift-ice";
import type { Address } from "./werift-internals.js";

/** An authenticated Binding request from the peer on one of the agent's pairs. */
export interface PeerRequest {
  readonly pair: CandidatePair;
  /** The peer is controlling and nominates the pair (USE-CANDIDATE): it says it sends there. */
  readonly nominates: boolean;
}

/** Transaction IDs remembered against replays (a peer sends a few requests a second at most). */
const REMEMBERED_TRANSACTIONS = 64;
/** STUN message type of a Binding request (RFC 5389 §6: method 0x001, class request). */
const BINDING_REQUEST = 0x0001;

export class PeerRequestVerifier {
  private readonly seen = new Set<string>();

  constructor(private readonly conn: Connection) {}

  /**
   * The request `data` from `addr` on `protocol` if it is an authenticated Binding request of the peer's
   * on a pair of the agent other than `skip`, seen for the first time; null otherwise. Never throws.
   */
  verify(protocol: Protocol, data: Buffer, addr: Address, skip: CandidatePair | null): PeerRequest | null {
    if (data.length < 20 || data.readUInt16BE(0) !== BINDING_REQUEST) return null;
    const conn = this.conn;
    const pair = conn.checkList.find(
      (p) => p.protocol === protocol && p.remoteAddr[1] === addr[1] && p.remoteAddr[0] === addr[0],
    );
    if (!pair || pair === skip || !conn.localPassword) return null;
    let message: ReturnType<typeof parseMessage>;
    try {
      message = parseMessage(data, Buffer.from(conn.localPassword, "utf8"));
    } catch {
      return null;
    }
    if (!message || message.getAttributeValue("USERNAME") !== `${conn.localUsername}:${conn.remoteUsername}`)
      return null;
    const id = message.transactionIdHex;
    if (this.seen.has(id)) return null;
    this.seen.add(id);
    if (this.seen.size > REMEMBERED_TRANSACTIONS) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    const keys = message.attributesKeys;
    return { pair, nominates: keys.includes("USE-CANDIDATE") && keys.includes("ICE-CONTROLLING") };
  }
}
