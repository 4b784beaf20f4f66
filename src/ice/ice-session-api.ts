// What an IceSession takes and tells: its options, states, events, failures and stats, apart from the
// generation logic in ice-session.ts.
import type { Logger } from "../log.js";
import type { AddressExclusion } from "./candidate-filter.js";
import type { IcePath } from "./ice-path.js";
import type { IceSignal } from "./ice-signal.js";
import type { NatBehaviour } from "./nat-behaviour.js";

export type IceSessionState =
  /** Constructed, not started. */
  | "new"
  /** No path yet; an attempt is under way (or, controlled, awaited). */
  | "connecting"
  /** A path is up and it belongs to the newest generation. */
  | "connected"
  /** A path is up; a newer generation is being established to replace it. */
  | "restarting"
  /** No path and no attempt: call restart(). */
  | "failed"
  | "closed";

/** "consent-expired": the path in use stopped answering (werift's consent, or our liveness probes). */
export type IceFailureReason = "timeout" | "checks-failed" | "consent-expired";

/**
 * "full": gather everything (host, srflx, relay), unless a full generation is already under way (see
 * `IceSession.restart`): that one answers the restart. "replace": a full generation that abandons one
 * under way, for when it cannot succeed (our network changed, or its signals may have been lost).
 * "upgrade": controlling side only, a path is up over a relay and we look for a direct one: no TURN
 * allocation on either side (the offer says so), and neither side's relay candidates are paired, so the
 * attempt either finds a direct pair or fails without touching the relay path.
 */
export type RestartMode = "full" | "replace" | "upgrade";

export interface IceFailure {
  readonly generation: number;
  readonly reason: IceFailureReason;
  /** True when no path is left (an older path still working is kept and reported as false). */
  readonly pathLost: boolean;
}

export interface IceSessionEvents {
  /** A pair was nominated (first connect and after each restart). The previous path keeps working for a grace period. */
  path: [path: IcePath];
  /** The path in use followed the peer to another pair of its generation: its kind may have changed. */
  "path-moved": [path: IcePath];
  failed: [failure: IceFailure];
  state: [state: IceSessionState];
  /**
   * The peer did not react to our signalling in time (an offer unanswered, a restart request without
   * offer): the signalling channel may be broken (e.g. a NAT reset killed its TCP connection silently).
   */
  stalled: [what: string];
}

export interface TurnConfig {
  urls: string[];
  /** TURN REST: `${expiryUnixSeconds}:${name}`. */
  username: string;
  /** TURN REST: base64(HMAC-SHA1(secret, username)). A secret: never logged. */
  credential: string;
}

/**
 * Shared by the sessions of one process: TURN over UDP failed where TCP worked (a firewall lets no UDP
 * out). werift tries UDP first and falls back only after ~6.4 s, in every generation; later generations
 * go straight to TCP until the owner clears this (on a network change).
 */
export interface TurnTransportHint {
  udpBlocked: boolean;
}

export interface IceSessionOptions {
  controlling: boolean;
  sendSignal: (message: IceSignal) => void;
  stunUrls: string[];
  turn?: TurnConfig;
  /** Addresses that must not appear in candidates, ours or the peer's (createCandidateFilter). */
  excludeAddresses?: AddressExclusion;
  logger?: Logger;
  /** Gather only TURN relay candidates (tests; networks where direct paths must not be used). */
  forceRelay?: boolean;
  /** Host addresses offered in addition to the gathered ones (werift never gathers loopback). */
  extraHostAddresses?: string[];
  /** Gather IPv6 host candidates (default true). */
  ipv6?: boolean;
  /** A generation that nominates no pair within this time fails (default 15 s). */
  connectTimeoutMs?: number;
  /** An upgrade attempt that nominates no pair within this time fails (default 6 s; direct checks are quick). */
  upgradeTimeoutMs?: number;
  /** The peer reacts to an offer or restart request within this time, or `stalled` is emitted (default 3 s). */
  signalTimeoutMs?: number;
  /** How long the previous generation's agent lives on after a new pair is nominated (default 2 s). */
  previousPathGraceMs?: number;
  /** Controlling side: restart requests from the peer are honoured at most this often (default 1 s). */
  minRemoteRestartIntervalMs?: number;
  /** Receive/send buffer of the nominated pair's socket (werift leaves the OS default). */
  socketBufferBytes?: number;
  turnHint?: TurnTransportHint;
  /** How often a relayed path re-binds its TURN channel (default 2 min; turn-channel.ts). */
  turnChannelRefreshMs?: number;
  /** Our NAT's mapping behaviour as known now (nat-behaviour.ts), told to the peer in our signals. */
  natBehaviour?: () => NatBehaviour;
}

export interface IceSessionStats {
  signalsReceived: number;
  /** Failed schema validation (dropped). */
  signalsMalformed: number;
  /** For an older, unknown or abandoned generation, or out of turn (dropped). */
  signalsStale: number;
  /** Peer candidates over the per-generation limit or with an excluded address (dropped). */
  remoteCandidatesRejected: number;
  /** Own candidates with an excluded address (not sent). */
  localCandidatesFiltered: number;
  /** Generations started (controlling) or accepted (controlled). */
  generations: number;
  restartRequestsIgnored: number;
  /** Full restarts answered by the generation already under way (no new one started or asked for). */
  restartsJoined: number;
}
