// One WireGuard peer's life, in one place: its paths (static endpoint, ICE), its ICE session, the
// backoffs of retries and upgrades, and every transition between the states of DESIGN.md §3.
//
// Everything that happens to a peer arrives through a named hook (`onHandshakeHeld`, `onPathUp`,
// `onSuspect`, `onPeerOnline`, ...): each is a short function that says what happens, then `settle()`
// derives the new state from the facts the hooks keep, in one function (`deriveState`). Clock, ICE
// sessions and the data plane are injected: the whole life runs under a fake clock in unit tests.
import { Backoff } from "../backoff.js";
import type { RestartMode } from "../ice/ice-session.js";
import { notDirectReason } from "../ice/not-direct-reason.js";
import type { Logger } from "../log.js";
import type { ProbeablePath } from "../proxy/liveness.js";
import type { PeerPath } from "../proxy/path.js";
import type { Clock, ClockTimer } from "./clock.js";
import { type IceRestartCounts, type IceRestartReason, newIceRestartCounts } from "./ice-restarts.js";
import { Idleness } from "./idleness.js";
import {
  type IcePairFacts,
  type PeerEnvironment,
  type PeerIceSession,
  type PeerSignalling,
  type PeerTiming,
  peerTiming,
} from "./peer-environment.js";
import { formatPeerState, type PeerState, type PeerStateName, samePeerState } from "./peer-state.js";

export {
  DEFAULT_PEER_TIMING,
  type IcePairFacts,
  type IceSessionHandlers,
  type PeerDataPlane,
  type PeerEnvironment,
  type PeerIceSession,
  type PeerSignalling,
  type PeerTiming,
} from "./peer-environment.js";

const IDLE: PeerState = { name: "idle" };
const DORMANT: PeerState = { name: "dormant" };
/**
 * Woken by the peer's signal alone, a peer stays awake this long without traffic: enough to connect,
 * shorter than the first liveness probe of the new path (20 s), so that a side that restarts because its
 * path died (the other side rested) and wakes the other cannot have it wake us back for ever.
 */
const SIGNAL_WAKE_GRACE_MS = 10_000;

export class Peer {
  private current: PeerState = IDLE;
  private since: number;
  /** How often each state was entered. */
  readonly entered: Record<PeerStateName, number> = {
    idle: 1,
    signalling: 0,
    connecting: 0,
    connected: 0,
    suspect: 0,
    restarting: 0,
    failed: 0,
    bypassed: 0,
    dormant: 0,
  };
  /** ICE restarts this peer asked for, by reason (metrics). */
  readonly iceRestarts: IceRestartCounts = newIceRestartCounts();

  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly timing: PeerTiming;
  private readonly signalling: PeerSignalling | null;
  private staticPath: PeerPath | null = null;
  private staticEndpointText: string | null = null;
  private icePath: ProbeablePath | null = null;
  /** The path the data plane uses: ICE (direct, else relay) when up, else static, else none. */
  private chosen: PeerPath | null = null;
  private session: PeerIceSession | null = null;
  /**
   * The backoffs of retries and upgrades, made at the first delay and dropped at a reset (a new one
   * starts from the first delay, as a reset does): a hub's thousands of peers mostly never need one.
   */
  private retry: Backoff | null = null;
  private retryTimer: ClockTimer | null = null;
  private upgrade: Backoff | null = null;
  private upgradeTimer: ClockTimer | null = null;
  /** WireGuard holds a handshake for the peer and no path exists. */
  private wanted = false;
  /** Why the path in use is suspect (liveness), or null. */
  private suspect: string | null = null;
  /** ICE must restart once the peer is online again (our network changed, or signalling stalled). */
  private pendingRestart: { why: IceRestartReason; detail: string } | null = null;
  private closed = false;
  private latestHandshake = 0;
  /**
   * Something came from the peer on the chosen path recently (liveness: a datagram or an answered
   * probe). A nominated ICE pair counts: its checks were answered. Without it the peer is not
   * `connected`, whatever path exists.
   */
  private heard = false;
  /** We pointed WireGuard's endpoint back at L(P) from this address, at this time, WireGuard's rx then. */
  private pointedBackFrom: { endpoint: string; at: number; rxBytes: number } | null = null;
  /** WireGuard talks to the peer directly at this address (see `bypassed`). */
  private bypass: string | null = null;
  /** Lazy peers: idle for the idle timeout, its ICE session is released (`dormant`). */
  private readonly idleness: Idleness;

  constructor(
    readonly publicKey: string,
    private readonly env: PeerEnvironment,
  ) {
    this.log = env.logger.child({ peer: publicKey });
    this.clock = env.clock;
    this.signalling = env.signalling;
    this.timing = peerTiming(env.timing);
    this.since = this.clock.now();
    // Without an introduction server there is no ICE to release: never idle.
    this.idleness = new Idleness(this.clock, env.signalling ? this.timing.idleTimeoutMs : 0);
  }

  get state(): PeerState {
    return this.current;
  }

  /**
   * Whether the idle sweep has anything to tell this peer (`onTrafficAge`) now: awake with a path, its
   * traffic keeps it awake; dormant with a static path, traffic there wakes ICE. Without a path no
   * traffic can have moved its stamps (WireGuard's own datagrams wake it through `onHandshakeHeld`, not
   * the sweep): dormant, there is nothing to tell it; awake, nothing before its idle timeout. So a hub's
   * thousands of road warriors, awake after a start or dormant, are not gone over at every read (issue 15).
   */
  get swept(): boolean {
    if (this.closed || !this.idleness.enabled) return false;
    if (this.idleness.dormant) return this.staticPath !== null;
    return this.chosen !== null || this.idleness.idleUnlessTrafficUnread;
  }

  /** When the current state was entered (clock ms). */
  get stateSince(): number {
    return this.since;
  }

  /** The path in use, or null. */
  get path(): PeerPath | null {
    return this.chosen;
  }

  /** WireGuard's latest handshake with the peer (unix seconds, 0: never), as `wg show` last said. */
  get lastHandshake(): number {
    return this.latestHandshake;
  }

  /** The static endpoint as configured ("host:port"), or null. */
  get staticEndpoint(): string | null {
    return this.staticEndpointText;
  }

  /** The ICE pair the chosen path is on (status); null on a static path or without one. */
  get pair(): IcePairFacts | null {
    const session = this.session;
    return this.chosen !== null && this.chosen === session?.path ? (session.selectedPair ?? null) : null;
  }

  /** Why the path is not direct (status); null when it is, or while ICE is still under way. */
  get notDirectReason(): string | null {
    const session = this.session;
    return notDirectReason({
      introduction: this.signalling !== null,
      peerOnline: this.signalling?.isOnline(this.publicKey) ?? false,
      pathKind: this.chosen?.kind ?? null,
      iceFailed: session?.state === "failed",
      localNat: "unknown",
      remoteNat: "unknown",
      relayTransport: null,
      ...session?.natFacts,
    });
  }

  // --- hooks: the data plane and WireGuard --------------------------------------------------------

  /**
   * WireGuard sent a handshake and the peer has no path, or (dormant) sent it anything: connect now
   * (the proxy holds the datagram). A dormant peer wakes.
   */
  onHandshakeHeld(): void {
    if (this.closed || this.chosen) return;
    this.wake("WireGuard sent to it");
    this.idleness.active();
    this.wanted = true;
    this.connect("initiation-held", "initiation held");
    this.settle();
  }

  /** The peer's real endpoint (or none): the static path, used when ICE has none. Takes ownership. */
  onStaticPath(path: PeerPath | null, endpoint: string | null): void {
    if (this.closed) {
      path?.close();
      return;
    }
    const previous = this.staticPath;
    this.staticPath = path;
    this.staticEndpointText = path ? endpoint : null;
    this.choosePath(path ? "static endpoint" : "static endpoint removed");
    if (previous !== path) previous?.close();
  }

  /** `wg show` was read: WireGuard's latest handshake with the peer (unix seconds, 0: never). */
  onHandshakeObserved(unixSeconds: number): void {
    this.latestHandshake = unixSeconds;
  }

  /** WireGuard's endpoint for the peer is its L(P): Tunnelbore carries the peer. */
  onEndpointOurs(): void {
    if (!this.bypass) return;
    this.log.info({ was: this.bypass }, "WireGuard's endpoint is ours again");
    this.bypass = null;
    this.settle();
  }

  /**
   * WireGuard's endpoint for the peer is a real address, not L(P): a new endpoint the user set, or
   * WireGuard roamed there because the peer reached its port directly. True: point it back at L(P).
   * WireGuard back at the same address soon after we pointed it away, having received something
   * meanwhile (`rxBytes`, WireGuard's counter, grew: it roams only on an authenticated packet), means
   * the peer talks to WireGuard directly: then leave it there (false) rather than fight over it.
   */
  onEndpointElsewhere(endpoint: string, rxBytes: number): boolean {
    if (this.closed) return false;
    if (this.bypass === endpoint) return false;
    const last = this.pointedBackFrom;
    if (
      last &&
      last.endpoint === endpoint &&
      rxBytes > last.rxBytes &&
      this.clock.now() - last.at < this.timing.endpointFightMs
    ) {
      this.bypass = endpoint;
      this.log.warn(
        { endpoint },
        "the peer reaches WireGuard directly (WireGuard moved its endpoint there again): leaving it there",
      );
      this.settle();
      return false;
    }
    this.bypass = null;
    this.pointedBackFrom = { endpoint, at: this.clock.now(), rxBytes };
    this.settle();
    return true;
  }

  /** WireGuard got its real endpoint back from us (release, stop): that is no roaming to remember. */
  onEndpointReleased(): void {
    this.pointedBackFrom = null;
  }

  /**
   * The idle sweep (src/peer/idle-sweep.ts, one pass over every peer): nothing went either way for the
   * peer, in user space or in the kernel, for `quietMs`, of which the last `unknownMs` are not known yet
   * (the kernel's counts come late). Idle for the idle timeout: release ICE. Dormant and traffic since
   * (on its static path, which stays): connect ICE again.
   */
  onTrafficAge(quietMs: number, unknownMs = 0): void {
    if (this.closed || !this.idleness.enabled) return;
    this.idleness.quietFor(quietMs, unknownMs);
    if (this.idleNow()) this.rest();
    if (!this.idleness.trafficSinceRest) return;
    this.wake("traffic on its static path");
    this.connect("initiation-held", "traffic on the static path");
    this.settle();
  }

  /**
   * Just created: WireGuard's latest handshake with the peer was `quietMs` ago. Quiet for the idle
   * timeout already, the peer starts dormant: proactive connection is for peers with recent traffic,
   * and a host with thousands of idle peers would otherwise open an ICE session with every one online
   * at each restart. WireGuard's next datagram wakes it, as at a cold start.
   */
  onCreatedQuiet(quietMs: number): void {
    if (this.closed || !this.idleness.enabled) return;
    this.idleness.quietSinceBefore(quietMs);
    if (this.idleNow()) this.rest();
    this.settle();
  }

  /** Liveness: the peer was heard on the chosen path (again). */
  onHeard(): void {
    if (this.heard) return;
    this.heard = true;
    this.settle();
  }

  /** Liveness: nothing from the peer on the chosen path for long (or never since it was chosen). */
  onQuiet(): void {
    if (!this.heard) return;
    this.heard = false;
    this.settle();
  }

  // --- hooks: liveness of the path in use ---------------------------------------------------------

  /** The path looks dead: restart ICE at once, keeping the old path until a new pair is nominated. */
  onSuspect(reason: string, repeat: boolean): void {
    if (this.closed || !this.chosen) return;
    this.log[repeat ? "debug" : "info"](
      { remote: this.chosen.remote, reason },
      repeat ? "path still suspect" : "path suspect; restarting ice",
    );
    this.suspect = reason;
    if (!repeat) this.signalling?.pathSuspect();
    this.connect("path-suspect", reason);
    this.settle();
  }

  /**
   * Liveness began to doubt the path (probes will decide). The same network event may have silenced
   * the signalling link: have it checked now, so that a restart can be signalled as soon as needed.
   */
  onDoubt(): void {
    if (!this.closed) this.signalling?.pathSuspect();
  }

  /** A suspect path answers again. */
  onRecovered(): void {
    if (!this.suspect) return;
    this.log.info({ remote: this.chosen?.remote }, "suspect path answers again");
    this.suspect = null;
    this.settle();
  }

  /** No contact on the path for long: drop it (the session reports the loss; retries follow). */
  onDead(): void {
    this.session?.expirePath();
  }

  // --- hooks: the introduction server -------------------------------------------------------------

  /**
   * The peer is online at the introduction server (first time, or back). Connect proactively; restart
   * what its absence (or ours) may have broken; keep a path that still answers.
   */
  onPeerOnline(): void {
    const signalling = this.signalling;
    if (this.closed || !signalling) return;
    if (this.idleNow()) this.rest();
    if (this.idleness.dormant) {
      // Proactive only for peers with recent traffic: a dormant one waits for WireGuard or the peer.
      this.settle();
      return;
    }
    const session = this.session;
    const pending = this.pendingRestart;
    this.pendingRestart = null;
    if (!session) {
      // A fresh controlled session asks for an offer at once: if the peer still has a path to our
      // previous process, that path is dead and it would otherwise notice only by its probes.
      const created = this.ensureSession(signalling);
      if (!signalling.controlling(this.publicKey)) this.restartIce(created, "new-session", "new session");
    } else if (pending) {
      // Our network changed or our signalling stalled: a generation under way cannot succeed.
      this.restartIce(session, pending.why, pending.detail, "replace");
    } else if (session.state === "connecting" || session.repairing) {
      // An attempt was under way while one of us was away from the server: its signals may be lost.
      this.restartIce(session, "signalling-reconnected", "signalling reconnected", "replace");
    } else if (!signalling.controlling(this.publicKey)) {
      if (session.state === "failed") this.restartIce(session, "peer-online-again", "peer online again");
    } else if (!session.path || session.state === "failed") {
      this.restartIce(session, "peer-online-again", "peer online again");
    } else {
      // It reconnected to the server (its agents live on) or its Tunnelbore restarted (they are gone).
      void this.verifyPath(session, session.path);
    }
    this.settle();
  }

  /** The peer left the introduction server: paths stay; signalling waits for it to come back. */
  onPeerOffline(): void {
    this.log.debug("peer offline at the introduction server");
    this.settle();
  }

  /** An ICE signal from the peer (decrypted and authenticated by the envelope layer). */
  onSignal(signal: unknown): void {
    const signalling = this.signalling;
    if (this.closed || !signalling) return;
    this.wake("signal from the peer", SIGNAL_WAKE_GRACE_MS);
    this.ensureSession(signalling).handleSignal(signal);
    this.settle();
  }

  /**
   * Our addresses or routes changed: every candidate may be stale. Backoffs start over, and ICE restarts
   * (an attempt under way too) as soon as the peer is online again (the owner reconnects signalling).
   */
  onNetworkChanged(reason: string): void {
    if (this.closed) return;
    this.retry = null;
    this.upgrade = null;
    this.clearTimers();
    // Dormant: nothing to restart; candidates are gathered afresh at the next wake anyway.
    if (!this.idleness.dormant) this.pendingRestart = { why: "network-changed", detail: reason };
  }

  /** The peer left the interface, or Tunnelbore stops: everything it owns is closed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.clearTimers();
    this.staticPath?.close();
    this.staticPath = null;
    this.icePath = null;
    this.chosen = null;
    const session = this.session;
    this.session = null;
    await session?.close();
  }

  // --- hooks: the ICE session ---------------------------------------------------------------------

  /** A pair was nominated: use it; relayed, keep looking for a direct one. */
  private onPathUp(path: ProbeablePath, reason: string): void {
    this.retry = null;
    this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (path.kind === "relay") {
      this.scheduleUpgrade();
    } else {
      this.upgrade = null;
      this.clock.clearTimeout(this.upgradeTimer);
      this.upgradeTimer = null;
    }
    this.icePath = path;
    this.choosePath(reason);
  }

  /**
   * The ICE path followed the peer to another pair: a relay now looks for a direct path (or stops
   * looking), and the state says the new kind (`connected(direct)` had stayed after a move to a relay).
   */
  private onPathMoved(path: ProbeablePath): void {
    if (path !== this.icePath) return;
    this.onPathUp(path, "ice pair followed");
    if (path === this.chosen) this.env.dataPlane.pathMoved?.(this.publicKey);
  }

  /** The ICE path is gone: fall back (static, else none: handshakes are held) and retry with backoff. */
  private onPathLost(reason: string): void {
    this.icePath = null;
    this.choosePath(`ice path lost: ${reason}`);
    this.scheduleRetry();
  }

  private onIceFailed(reason: string, pathLost: boolean): void {
    if (pathLost) {
      this.onPathLost(reason === "consent-expired" ? "path unanswered" : reason);
      return;
    }
    // A path is still up; the controlling side keeps looking for a better one.
    if (this.session?.path?.kind === "relay") this.scheduleUpgrade();
    this.settle();
  }

  /** The peer did not react to our signalling: the link checks its connection to the server. */
  private onSignallingStalled(what: string): void {
    void this.signalling?.stalled(this.publicKey, what).then((linkDead) => {
      if (linkDead) this.onSignallingLinkDead(what);
    });
  }

  /** The stall was our connection's: it is being replaced; ICE restarts once the peer is back. */
  private onSignallingLinkDead(what: string): void {
    // Dormant: nothing to restart (as after a network change).
    if (this.closed || this.idleness.dormant) return;
    this.pendingRestart = { why: "signalling-stalled", detail: `signalling stalled: ${what}` };
  }

  // --- hooks: timers ------------------------------------------------------------------------------

  private onRetryDue(): void {
    this.retryTimer = null;
    if (this.closed || !this.signalling?.isOnline(this.publicKey)) return;
    if (this.session) this.restartIce(this.session, "retry", "retry after failure");
    this.settle();
  }

  private onUpgradeDue(session: PeerIceSession): void {
    this.upgradeTimer = null;
    if (this.closed || this.session !== session || session.path?.kind !== "relay") return;
    if (!this.signalling?.isOnline(this.publicKey) || session.state !== "connected") {
      this.scheduleUpgrade();
      return;
    }
    this.restartIce(session, "upgrade", "upgrade to a direct path", "upgrade");
    this.settle();
  }

  // --- what the hooks share -----------------------------------------------------------------------

  /**
   * Connect now, or restart ICE at once. A first attempt or a repair already under way is left to
   * finish; an upgrade attempt or a restart the peer started on its own does not stand in the way.
   */
  private connect(why: IceRestartReason, reason: string): void {
    const signalling = this.signalling;
    if (!signalling?.isOnline(this.publicKey)) return;
    const session = this.session;
    if (!session) {
      // A controlled side asks for an offer: the peer may be dormant and would not send one by itself.
      const created = this.ensureSession(signalling);
      if (!signalling.controlling(this.publicKey)) this.restartIce(created, "new-session", "new session");
      return;
    }
    if (session.state === "connecting" || (session.state === "restarting" && session.repairing)) return;
    this.restartIce(session, why, reason);
  }

  /**
   * Every ICE restart goes through here: counted by reason. An idle peer rests instead: nothing needs
   * the path, and a restart would wake a peer that released its side (each would wake the other).
   */
  private restartIce(
    session: PeerIceSession,
    why: IceRestartReason,
    reason: string,
    mode?: RestartMode,
  ): void {
    if (this.idleNow()) {
      this.rest();
      return;
    }
    this.iceRestarts[why]++;
    session.restart(reason, mode);
  }

  private ensureSession(signalling: PeerSignalling): PeerIceSession {
    if (this.session) return this.session;
    const controlling = signalling.controlling(this.publicKey);
    const session = signalling.createSession(
      this.publicKey,
      controlling,
      {
        path: (path, reason) => this.ifCurrent(session, () => this.onPathUp(path, reason)),
        moved: (path) => this.ifCurrent(session, () => this.onPathMoved(path)),
        failed: (reason, pathLost) => this.ifCurrent(session, () => this.onIceFailed(reason, pathLost)),
        stalled: (what) => this.ifCurrent(session, () => this.onSignallingStalled(what)),
        // "connected" is always followed by its path or failure, which settle: not a state of its own.
        state: () => this.ifCurrent(session, () => session.state !== "connected" && this.settle()),
      },
      this.log,
    );
    this.session = session;
    session.start();
    this.log.info({ controlling }, "ice session started");
    return session;
  }

  /** Events of a session closed meanwhile change nothing. */
  private ifCurrent(session: PeerIceSession, handle: () => void): void {
    if (!this.closed && this.session === session) handle();
  }

  /** Checks the path of a peer back online; restarts ICE when it no longer answers. */
  private async verifyPath(session: PeerIceSession, path: ProbeablePath): Promise<void> {
    for (let i = 0; i < this.timing.verifyProbes; i++) {
      if ((await path.probe(this.timing.verifyProbeTimeoutMs)) !== null) return;
    }
    if (this.closed || this.session !== session || session.path !== path) return;
    this.log.debug("path of a peer back online does not answer");
    if (!session.repairing) this.restartIce(session, "peer-online-again", "peer online again");
    this.settle();
  }

  /** Capped exponential backoff with jitter, never given up (an idle peer rests instead). */
  private scheduleRetry(): void {
    if (this.closed || this.retryTimer) return;
    if (this.idleNow()) {
      this.rest();
      return;
    }
    this.retryTimer = this.clock.setTimeout(() => this.onRetryDue(), this.nextDelay("retry"));
  }

  /** Controlling side on a relay: try for a direct path for as long as it is relayed (NATs change). */
  private scheduleUpgrade(): void {
    const session = this.session;
    if (this.closed || this.upgradeTimer || !session?.canUpgrade) return;
    this.upgradeTimer = this.clock.setTimeout(() => this.onUpgradeDue(session), this.nextDelay("upgrade"));
  }

  /** The next delay of a retry (jitter 0.75-1.25) or an upgrade (0.75-1), both capped at retryMaxMs. */
  private nextDelay(which: "retry" | "upgrade"): number {
    const { retryInitialMs, retryMaxMs, upgradeInitialMs } = this.timing;
    const random = this.env.random ?? Math.random;
    const make = (initialMs: number, jitter: [number, number]) =>
      new Backoff({ initialMs, maxMs: retryMaxMs, jitter, random });
    if (which === "retry") {
      this.retry ??= make(retryInitialMs, [0.75, 1.25]);
      return this.retry.next();
    }
    this.upgrade ??= make(upgradeInitialMs, [0.75, 1]);
    return this.upgrade.next();
  }

  /** Neither wanted nor carrying traffic for the idle timeout (a peer WireGuard talks to directly is left alone). */
  private idleNow(): boolean {
    return this.idleness.idle && !this.bypass;
  }

  /** Idle: the ICE session with its sockets and every timer released. L(P) stays, and a static path. */
  private rest(): void {
    if (this.idleness.dormant || this.closed) return;
    // At debug, as the transition: a hub's thousands of peers rest and wake without a line each.
    this.log.debug(
      { idleMs: Math.round(this.idleness.idleMs) },
      "idle: ice session released until WireGuard or the peer wants it",
    );
    this.idleness.rested();
    this.wanted = false;
    this.suspect = null;
    this.pendingRestart = null;
    this.clearTimers();
    this.retry = null;
    this.upgrade = null;
    const session = this.session;
    this.session = null;
    this.icePath = null;
    this.env.dataPlane.setDormant(this.publicKey, true);
    this.choosePath("idle: ice session released");
    void session?.close().catch((err: unknown) => this.log.debug({ err }, "closing the idle ice session"));
  }

  /** Dormant no more: ICE may connect again (the caller says how); `graceMs`: see Idleness.woke. */
  private wake(why: string, graceMs?: number): void {
    if (!this.idleness.dormant) return;
    this.idleness.woke(graceMs);
    this.log.debug({ why }, "woken: connecting again");
    this.env.dataPlane.setDormant(this.publicKey, false);
  }

  private clearTimers(): void {
    this.clock.clearTimeout(this.retryTimer);
    this.clock.clearTimeout(this.upgradeTimer);
    this.retryTimer = null;
    this.upgradeTimer = null;
  }

  /** ICE (direct, else relay) when it has a pair, else the static endpoint, else none (handshakes wait). */
  private choosePath(reason: string): void {
    const path = this.icePath ?? this.staticPath;
    if (path !== this.chosen) {
      this.chosen = path;
      this.suspect = null; // a verdict was about the previous path
      // A nominated ICE pair proves the peer answered; a static endpoint proves nothing yet.
      this.heard = path !== null && path.kind !== "static";
      if (path) this.wanted = false; // the proxy sends the held handshake on it
      this.env.dataPlane.setPath(this.publicKey, path, reason);
    }
    this.settle();
  }

  /** Moves to the state the facts say; every transition is logged and counted. */
  private settle(): void {
    if (this.closed) return;
    const next = this.deriveState();
    if (samePeerState(next, this.current)) return;
    const from = this.current;
    this.current = next;
    this.since = this.clock.now();
    this.entered[next.name]++;
    this.log.debug({ from: formatPeerState(from), to: formatPeerState(next) }, "peer state");
    this.env.onTransition?.(this, from);
  }

  private deriveState(): PeerState {
    const path = this.chosen;
    const ice = this.session?.state ?? null;
    if (this.bypass) return { name: "bypassed", remote: this.bypass };
    // A static path that answers is a connection, dormant or not (the sweep wakes ICE when it carries).
    if (this.idleness.dormant) return path && this.heard ? { name: "connected", path: path.kind } : DORMANT;
    if (path) {
      // Upgrade attempts and restarts the peer started on its own leave a working path: connected.
      if (ice === "restarting" && this.session?.repairing) return { name: "restarting", path: path.kind };
      if (this.suspect) return { name: "suspect", path: path.kind, reason: this.suspect };
      // Connected only while the peer answers: a path nothing came back on is no connection.
      if (this.heard) return { name: "connected", path: path.kind };
      if (ice === "connecting" || ice === "restarting") return { name: "connecting" };
      return this.wanted ? { name: "signalling" } : IDLE;
    }
    if (ice === "connecting" || ice === "restarting") return { name: "connecting" };
    if (ice === "failed") return { name: "failed" };
    if (this.wanted) return { name: "signalling" };
    return IDLE;
  }
}
