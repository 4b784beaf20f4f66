import type { PathKind } from "../proxy/path.js";

/**
 * Where a peer is in its life (DESIGN.md §3):
 * `idle -> signalling -> connecting -> connected(direct|relay|static) -> (suspect -> restarting) -> ...`,
 * `failed` when an attempt ended without a path (retried with backoff), and `dormant` when no traffic
 * for `--idle-timeout` released its ICE session (woken by WireGuard's next datagram or the peer's signal).
 */
export type PeerState =
  /** Nothing wanted of it yet, no attempt under way. */
  | { readonly name: "idle" }
  /** WireGuard wants it (a handshake is held) and no attempt has started: waiting for the peer online. */
  | { readonly name: "signalling" }
  /** An ICE attempt is under way and no path exists yet. */
  | { readonly name: "connecting" }
  | { readonly name: "connected"; readonly path: PathKind }
  /** The path in use looks dead (liveness): ICE is restarted as soon as the peer can be reached. */
  | { readonly name: "suspect"; readonly path: PathKind; readonly reason: string }
  /** A new ICE generation is under way to replace a doubted path; the old one carries on meanwhile. */
  | { readonly name: "restarting"; readonly path: PathKind }
  /** The last attempt ended without a path; a retry is scheduled (or waits for the peer online). */
  | { readonly name: "failed" }
  /**
   * The peer reaches WireGuard's own port directly and WireGuard talks to it there (its endpoint is the
   * peer's address, not L(P)): Tunnelbore leaves that endpoint alone instead of fighting over it.
   */
  | { readonly name: "bypassed"; readonly remote: string }
  /**
   * Idle: no traffic for `--idle-timeout`, its ICE session and sockets released (L(P) stays, and a static
   * path too). WireGuard's next handshake or data, or a signal from the peer, connects it again.
   */
  | { readonly name: "dormant" };

export type PeerStateName = PeerState["name"];

export const PEER_STATE_NAMES: readonly PeerStateName[] = [
  "idle",
  "signalling",
  "connecting",
  "connected",
  "suspect",
  "restarting",
  "failed",
  "bypassed",
  "dormant",
];

/** As status shows it: `connected(direct)`, `suspect`, `idle`, `bypassed`, ... */
export function formatPeerState(state: PeerState): string {
  return state.name === "connected" ? `connected(${state.path})` : state.name;
}

/** Same state and same path kind (a new reason for the same state is no transition). */
export function samePeerState(a: PeerState, b: PeerState): boolean {
  return a.name === b.name && pathOf(a) === pathOf(b);
}

export function pathOf(state: PeerState): PathKind | null {
  return "path" in state ? state.path : null;
}
