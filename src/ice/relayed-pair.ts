import { type CandidatePair, StunOverTurnProtocol } from "werift-ice";

/** Whether `pair` goes through a TURN server: our allocation's or the peer's relay candidate. */
export function isRelayedPair(pair: CandidatePair): boolean {
  return (
    pair.localCandidate.type === "relay" ||
    pair.remoteCandidate.type === "relay" ||
    pair.protocol.type === StunOverTurnProtocol.type
  );
}
