// What a Peer is given: its ICE session, the introduction server, the data plane, its timing and the
// clock (tests pass fakes of each), apart from its life in peer.ts.
import type { RestartMode } from "../ice/ice-session.js";
import type { CandidateType, IceSignal } from "../ice/ice-signal.js";
import type { NotDirectFacts } from "../ice/not-direct-reason.js";
import type { Logger } from "../log.js";
import type { ProbeablePath } from "../proxy/liveness.js";
import type { PeerPath } from "../proxy/path.js";
import type { Clock } from "./clock.js";
import type { Peer } from "./peer.js";
import type { PeerState } from "./peer-state.js";

/** An ICE session as a peer drives it (src/ice/ice-session.ts; tests pass a fake). */
export interface PeerIceSession {
  readonly state: "new" | "connecting" | "connected" | "restarting" | "failed" | "closed";
  /** The nominated path in use, or null. */
  readonly path: ProbeablePath | null;
  /** A newer generation is under way to replace a path we doubt (not an upgrade attempt). */
  readonly repairing: boolean;
  /** Controlling, a TURN server, direct paths allowed: looking for a direct path from a relay makes sense. */
  readonly canUpgrade: boolean;
  start(): void;
  restart(reason: string, mode?: RestartMode): void;
  handleSignal(signal: unknown): void;
  /** The liveness verdict "dead": drop the path in use. */
  expirePath(): void;
  close(): Promise<void>;
  /** Both sides' NAT behaviours and the relay transport (status: why the path is not direct). */
  readonly natFacts?: Pick<NotDirectFacts, "localNat" | "remoteNat" | "relayTransport">;
  /** The pair the path in use is on (status), or null without a path. */
  readonly selectedPair?: IcePairFacts | null;
}

/** What status tells of an ICE pair: both candidates' types, and how we reach our TURN server. */
export interface IcePairFacts {
  readonly localType: CandidateType;
  readonly remoteType: CandidateType;
  /** Our own TURN allocation's transport when the local candidate is a relay one; else null. */
  readonly relayTransport: "udp" | "tcp" | "tls" | null;
  /** The ICE generation the pair is of: 0 for the first connect, one more per restart or upgrade attempt. */
  readonly generation: number;
}

/** What an ICE session tells its peer. */
export interface IceSessionHandlers {
  /** A pair was nominated: the new path (the previous one keeps working for a grace period). */
  path(path: ProbeablePath, reason: string): void;
  /** The path in use moved to another pair of its generation (pair following): direct or relay anew. */
  moved(path: ProbeablePath): void;
  /** A generation failed; `pathLost` when no path is left. */
  failed(reason: string, pathLost: boolean): void;
  /** The peer did not react to our signalling in time. */
  stalled(what: string): void;
  /** The session's state changed. */
  state(): void;
}

/** The introduction server and ICE, as one peer uses them; null where Tunnelbore runs without them. */
export interface PeerSignalling {
  /** The peer is online at the introduction server (signals can reach it). */
  isOnline(publicKey: string): boolean;
  /** The side with the smaller public key is controlling. */
  controlling(publicKey: string): boolean;
  send(publicKey: string, signal: IceSignal): void;
  /**
   * Our signalling went unanswered although the peer is online: the connection to the server may be
   * dead without knowing it, or the peer is not answering. Resolves true when the connection was found
   * dead and is being replaced (then restart ICE once the peer is back); never rejects.
   */
  stalled(publicKey: string, what: string): Promise<boolean>;
  /** A path went suspect: the same network event may have silenced the signalling link; check it. */
  pathSuspect(): void;
  createSession(
    publicKey: string,
    controlling: boolean,
    handlers: IceSessionHandlers,
    logger: Logger,
  ): PeerIceSession;
}

/** The data plane's side: which path WireGuard's datagrams for the peer take. */
export interface PeerDataPlane {
  setPath(publicKey: string, path: PeerPath | null, reason: string): void;
  /**
   * Dormant (ICE released): the proxy holds WireGuard's next datagram without a path, data too (not only
   * handshakes), and says so (`onHandshakeHeld`), so that the peer wakes and the datagram goes out.
   */
  setDormant(publicKey: string, dormant: boolean): void;
  /**
   * The chosen path moved to another pair of its ICE session (the same path, another remote, maybe
   * another kind): for what looks at paths' remotes (the loop and MTU checks). The proxy learns it
   * from the path itself (`onRouteChange`).
   */
  pathMoved?(publicKey: string): void;
}

export interface PeerTiming {
  /** First retry after a failed attempt; doubles up to `retryMaxMs` (DESIGN: about 30 s, never give up). */
  retryInitialMs: number;
  retryMaxMs: number;
  /** First attempt to replace a relay by a direct path; doubles up to `retryMaxMs`. */
  upgradeInitialMs: number;
  /** Probes (and their timeout) checking the path of a peer that came back online. */
  verifyProbes: number;
  verifyProbeTimeoutMs: number;
  /** WireGuard roaming to the address we pointed it away from within this time: the peer talks to it directly. */
  endpointFightMs: number;
  /**
   * No traffic either way (and not woken) for this long: release the ICE session (`dormant`); 0: never.
   * `run --idle-timeout` (default 15 min); off here, so that a peer rests only where it is asked to.
   */
  idleTimeoutMs: number;
}

export const DEFAULT_PEER_TIMING: PeerTiming = {
  retryInitialMs: 1000,
  retryMaxMs: 30_000,
  upgradeInitialMs: 5000,
  verifyProbes: 2,
  verifyProbeTimeoutMs: 500,
  endpointFightMs: 60_000,
  idleTimeoutMs: 0,
};

export interface PeerEnvironment {
  clock: Clock;
  /** Jitter source in [0, 1). */
  random?: () => number;
  logger: Logger;
  dataPlane: PeerDataPlane;
  signalling: PeerSignalling | null;
  timing?: Partial<PeerTiming>;
  /** Told after every transition (metrics, tests). */
  onTransition?: (peer: Peer, from: PeerState) => void;
}

/** Each timing as given merged with the defaults once, shared by the peers given it (a hub's 10,000). */
const mergedTimings = new WeakMap<Partial<PeerTiming>, PeerTiming>();
export function peerTiming(given: Partial<PeerTiming> | undefined): PeerTiming {
  if (!given) return DEFAULT_PEER_TIMING;
  let timing = mergedTimings.get(given);
  if (!timing) {
    timing = { ...DEFAULT_PEER_TIMING, ...given };
    mergedTimings.set(given, timing);
  }
  return timing;
}
