// Why a peer's path is not direct, in words for `tunnelbore status`: from what the peer knows (its path,
// the introduction server, the peer's presence) and what both sides learnt of their NATs (nat-behaviour.ts;
// the peer's arrives in its ICE signals).
import type { PathKind } from "../proxy/path.js";
import type { NatBehaviour } from "./nat-behaviour.js";

export interface NotDirectFacts {
  /** An introduction server is configured (ICE is possible at all). */
  introduction: boolean;
  /** The peer is online at the introduction server. */
  peerOnline: boolean;
  /** The path in use, or null. */
  pathKind: PathKind | null;
  /** How our TURN allocation is reached, for a relayed path on our own allocation. */
  relayTransport: "udp" | "tcp" | "tls" | null;
  /** True when an ICE attempt failed and no ICE path is up. */
  iceFailed: boolean;
  localNat: NatBehaviour;
  remoteNat: NatBehaviour;
}

function natWords(behaviour: NatBehaviour): string | null {
  switch (behaviour) {
    case "address-and-port-dependent":
      return "symmetric NAT";
    case "endpoint-independent":
      return "endpoint-independent NAT";
    case "no-nat":
      return "no NAT";
    case "unknown":
      return null;
  }
}

/** Why the ICE attempts found no direct pair, from both sides' NAT behaviours. */
function whyNoDirectPair(localNat: NatBehaviour, remoteNat: NatBehaviour): string {
  const symmetricHere = localNat === "address-and-port-dependent";
  const symmetricThere = remoteNat === "address-and-port-dependent";
  if (symmetricHere && symmetricThere) return "symmetric NAT on both sides";
  const here = natWords(localNat);
  const there = natWords(remoteNat);
  if (symmetricHere) return there ? `symmetric NAT here, ${there} there` : "symmetric NAT here";
  if (symmetricThere) return here ? `${here} here, symmetric NAT there` : "symmetric NAT there";
  return "direct pairs failed";
}

/** The reason, or null when the path is direct (or nothing is known to say). */
export function notDirectReason(facts: NotDirectFacts): string | null {
  if (facts.pathKind === "direct") return null;
  const outcome =
    facts.pathKind === "static" ? "static endpoint" : facts.pathKind === "relay" ? "relayed" : "no path";
  if (!facts.introduction) return `no introduction server: ${outcome}`;
  if (!facts.peerOnline) return `peer offline at the introduction server: ${outcome}`;
  if (facts.pathKind === "relay" && (facts.relayTransport === "tcp" || facts.relayTransport === "tls"))
    return `no UDP to the peer: relayed over ${facts.relayTransport.toUpperCase()}`;
  // ICE still under way: nothing to explain yet.
  if (facts.pathKind !== "relay" && !facts.iceFailed)
    return facts.pathKind === "static" ? "ICE under way: static endpoint" : null;
  return `${whyNoDirectPair(facts.localNat, facts.remoteNat)}: ${outcome}`;
}
