// One generation of a peer's ICE: a werift Connection with its own sockets and credentials.
//
// Its life is a sequence of phases, each entered once, in this order (any of them may end in "closed"):
//   gathering -> checking -> nominated -> retiring -> closed
// The IceSession decides which agent is the newest and whose path is in use; the agent gathers, checks,
// opens its path and tells the session through its IceAgentContext.
import { type CandidatePair, Connection, type IceState } from "werift-ice";
import type { Logger } from "../log.js";
import type { AddressExclusion } from "./candidate-filter.js";
import { EarlyHandshake } from "./early-handshake.js";
import { describePair, IcePath } from "./ice-path.js";
import type { WeriftOptionSets } from "./ice-server-url.js";
import type { IceFailureReason, IceSessionStats, RestartMode, TurnTransportHint } from "./ice-session.js";
import {
  type IceAnswer,
  type IceOffer,
  type IceSignal,
  MAX_REMOTE_CANDIDATES,
  parseCandidate,
} from "./ice-signal.js";
import { followPeer } from "./pair-following.js";
import { PeerChecks } from "./peer-requests.js";
import { StunGuard } from "./stun-guard.js";
import {
  catchSocketErrors,
  closeAgainOnceGathered,
  endRemoteCandidatesOnceGathered,
  gateIncomingRequests,
  namesLocalUfrag,
  pairLocalRelayCandidate,
  relayTransportOf,
  releaseTurnAllocations,
  remoteCandidateFromSdp,
  stopWeriftConsent,
  strengthenCredentials,
  useOnlyConfiguredStun,
  weriftSockets,
} from "./werift-workarounds.js";

export type IceAgentPhase =
  /** Our candidates are being gathered and trickled; no checks yet (the controlling side awaits the answer). */
  | "gathering"
  /** Connectivity checks run (our gathering may still be finishing meanwhile). */
  | "checking"
  /** A pair was nominated: the agent's path is the session's path in use. */
  | "nominated"
  /** A newer generation's path replaced ours: it still delivers for a grace period. */
  | "retiring"
  /** Sockets closed, TURN allocations released. */
  | "closed";

/** What the agents of one IceSession share, and how they report back to it. */
export interface IceAgentContext {
  readonly controlling: boolean;
  readonly werift: WeriftOptionSets;
  readonly exclude: AddressExclusion;
  readonly log: Logger;
  /** The session's counters of candidates dropped. */
  readonly stats: Pick<IceSessionStats, "remoteCandidatesRejected" | "localCandidatesFiltered">;
  readonly turnHint: TurnTransportHint | undefined;
  readonly socketBufferBytes: number | undefined;
  readonly connectTimeoutMs: number;
  readonly upgradeTimeoutMs: number;
  readonly turnChannelRefreshMs?: number;
  /** False once a newer generation took over: an abandoned agent trickles nothing more. */
  isCurrent(agent: IceAgent): boolean;
  signal(message: IceSignal): void;
  /** The agent nominated a pair and opened its path (it is in phase "nominated"). */
  nominated(agent: IceAgent, path: IcePath): void;
  /** The agent's path followed the peer to another of its pairs (pair-following.ts). */
  followed(agent: IceAgent, path: IcePath): void;
  /** The agent cannot carry a path (any more); the session closes it. */
  failed(agent: IceAgent, reason: IceFailureReason): void;
}

/** Which generation an agent is, and why it was started. */
export interface IceAgentIdentity {
  readonly epoch: string;
  readonly generation: number;
  /** Why it was started (logged with the path it produces). */
  readonly reason: string;
  readonly mode: RestartMode;
  /** Started to repair a doubted path: ours (not an upgrade), or one we asked the peer for. */
  readonly repair: boolean;
}

export class IceAgent implements IceAgentIdentity {
  readonly epoch: string;
  readonly generation: number;
  readonly reason: string;
  readonly mode: RestartMode;
  readonly repair: boolean;
  readonly conn: Connection;
  /**
   * What stands between the network and werift's handling of STUN requests: only checks the peer
   * signed for this generation, within budget, get through. Subscribe to its onAuthenticatedRequest
   * for authenticated evidence of the pairs the peer uses.
   */
  readonly stunGuard: StunGuard;
  readonly startedAt: number;

  private _phase: IceAgentPhase = "gathering";
  /** The peer's ufrag and password arrived (its offer or answer). */
  private _remoteDescribed = false;
  /** The peer sent end-of-candidates: later candidates are rejected. */
  private remoteEnded = false;
  private remoteCandidatesAccepted = 0;
  /** Our own gathering: under way (settled is its promise) until done. */
  private readonly gathering: { settled: Promise<void> | null; done: boolean } = {
    settled: null,
    done: false,
  };
  /** Upgrade attempts: addresses of relay candidates (the peer's, our TURN server); never paired. */
  private readonly relayHosts = new Set<string>();
  private _path: IcePath | null = null;
  /** A handshake of the peer's that arrives before our side nominates (the peer nominated first). */
  private readonly early: EarlyHandshake;
  /** Fails the agent unless a pair is nominated in time. */
  private readonly connectTimer: NodeJS.Timeout;
  private readonly cleanups: Array<() => void> = [];

  constructor(
    private readonly context: IceAgentContext,
    identity: IceAgentIdentity,
  ) {
    this.epoch = identity.epoch;
    this.generation = identity.generation;
    this.reason = identity.reason;
    this.mode = identity.mode;
    this.repair = identity.repair;
    const { werift } = context;
    const upgrade = this.mode === "upgrade";
    this.conn = new Connection(
      context.controlling,
      upgrade ? werift.direct : context.turnHint?.udpBlocked ? werift.relayOverTcp : werift.full,
    );
    useOnlyConfiguredStun(this.conn, werift.full);
    strengthenCredentials(this.conn);
    this.early = new EarlyHandshake(this.conn);
    const turnHost = werift.full.turnServer?.[0];
    if (upgrade && turnHost) this.relayHosts.add(turnHost);
    this.startedAt = performance.now();
    // Drop checks from excluded addresses, and any check the peer did not sign for this generation.
    // Upgrade attempts also refuse checks from relay addresses: answering one would let werift nominate
    // a pair through the peer's relay, which is no upgrade.
    const refuses = (addr: string) => context.exclude(addr) || this.relayHosts.has(addr);
    this.stunGuard = new StunGuard(
      {
        credentials: () => ({
          localUfrag: this.conn.localUsername,
          remoteUfrag: this.conn.remoteUsername || undefined,
          localPassword: this.conn.localPassword,
        }),
        knows: ([host, port]) => this.conn.remoteCandidates.some((c) => c.host === host && c.port === port),
        pairs: () => this.conn.checkList.length,
        refuses: ([host]) => refuses(host),
        log: context.log,
      },
      this.conn,
    );
    gateIncomingRequests(this.conn, (message, data, remote, protocol) =>
      this.stunGuard.admit(message, data, remote, protocol),
    );
    // werift's own filter, behind the guard: it runs after werift's role logic, so it is no defence
    // alone, but it keeps refusing what the guard refuses should a request ever bypass the gate.
    this.conn.options.filterStunResponse = (message, addr) =>
      namesLocalUfrag(this.conn, message) && !refuses(addr[0]);
    const { unSubscribe } = this.conn.stateChanged.subscribe((state) => this.onWeriftState(state));
    this.cleanups.push(unSubscribe);
    this.connectTimer = setTimeout(
      () => context.failed(this, "timeout"),
      upgrade ? context.upgradeTimeoutMs : context.connectTimeoutMs,
    );
  }

  get phase(): IceAgentPhase {
    return this._phase;
  }

  get remoteDescribed(): boolean {
    return this._remoteDescribed;
  }

  /** Our gathering has started and not finished (a STUN query or the TURN allocation is under way). */
  get gatheringUnderWay(): boolean {
    return this.gathering.settled !== null && !this.gathering.done;
  }

  /** The path over the nominated pair (kept, closed, once the agent is closed), or null. */
  get path(): IcePath | null {
    return this._path;
  }

  /** Runs when the agent closes (timers of the session that concern this agent). */
  onClose(cleanup: () => void): void {
    this.cleanups.push(cleanup);
  }

  /** The peer's credentials, from its offer or answer. */
  describeRemote(description: IceOffer | IceAnswer): void {
    this.conn.setRemoteParams({
      iceLite: false,
      usernameFragment: description.ufrag,
      password: description.pwd,
    });
    this._remoteDescribed = true;
  }

  /** The candidates (and end-of-candidates) an offer or answer carries. */
  applyDescriptionCandidates(description: IceOffer | IceAnswer): void {
    for (const candidate of description.candidates ?? []) this.addRemoteCandidate(candidate);
    if (description.endOfCandidates) this.endRemoteCandidates();
  }

  /** A trickled candidate or end-of-candidates of this generation. */
  applyRemote(message: IceSignal): void {
    if (message.t === "candidate") this.addRemoteCandidate(message.candidate);
    else if (message.t === "end-of-candidates") this.endRemoteCandidates();
  }

  /** Gathers, trickling each allowed candidate, then end-of-candidates. */
  gather(): void {
    const { log, stats } = this.context;
    let relayed = false;
    const { unSubscribe } = this.conn.onIceCandidate.subscribe((candidate) => {
      if (this._phase === "closed" || !this.context.isCurrent(this)) return;
      // The candidate's socket exists now, and the peer may send to it once it learns the candidate.
      this.early.tapNew();
      if (candidate.type === "relay") {
        relayed = true;
        pairLocalRelayCandidate(this.conn, candidate);
      }
      const line = candidate.toSdp();
      if (this.context.exclude(candidate.host) || !parseCandidate(line)) {
        stats.localCandidatesFiltered++;
        return;
      }
      log.debug({ type: candidate.type, generation: this.generation }, "local candidate");
      this.context.signal({
        t: "candidate",
        epoch: this.epoch,
        generation: this.generation,
        candidate: line,
      });
    });
    this.cleanups.push(unSubscribe);
    this.gathering.settled = this.conn
      .gatherCandidates()
      .catch((err: unknown) => log.warn({ err }, "ice gathering failed"))
      .finally(() => {
        this.gathering.done = true;
        if (this._phase === "closed" || !this.context.isCurrent(this)) return;
        this.learnTurnTransport();
        const { full } = this.context.werift;
        if (this.mode === "full" && full.turnServer && !relayed) {
          // werift only logs this with DEBUG; wrong credentials take it ~13 s (UDP, then TCP).
          log.warn(
            { generation: this.generation },
            "no TURN relay candidate: server unreachable or credentials refused",
          );
        }
        endRemoteCandidatesOnceGathered(this.conn, { remoteEnded: this.remoteEnded, gathered: true });
        this.context.signal({ t: "end-of-candidates", epoch: this.epoch, generation: this.generation });
      });
  }

  /** Starts the connectivity checks (once the peer's description is known). */
  connect(): void {
    if (this._phase !== "gathering") return;
    this._phase = "checking";
    this.conn.connect().then(
      () => this.onChecksDone(),
      () => this.context.failed(this, "checks-failed"),
    );
  }

  /** A newer generation's path is in use; the session closes this agent after a grace period. */
  retire(): void {
    if (this._phase === "nominated") this._phase = "retiring";
  }

  /** Closes the path, the werift agent and its sockets, and releases its TURN allocations. */
  async close(): Promise<void> {
    if (this._phase === "closed") return;
    this._phase = "closed";
    clearTimeout(this.connectTimer);
    for (const cleanup of this.cleanups) cleanup();
    this.early.close();
    this._path?.close();
    const release = async () => {
      try {
        await releaseTurnAllocations(this.conn);
        await this.conn.close();
      } catch (err) {
        this.context.log.debug({ err }, "closing an ice agent failed");
      }
    };
    await release();
    closeAgainOnceGathered(this.gathering, release);
  }

  private addRemoteCandidate(line: string): void {
    const parsed = parseCandidate(line);
    if (parsed?.type === "relay" && this.mode === "upgrade") {
      // An upgrade looks for a direct pair only; remember the address to refuse checks from it.
      this.relayHosts.add(parsed.host);
      return;
    }
    if (
      this.remoteEnded ||
      !parsed ||
      this.remoteCandidatesAccepted >= MAX_REMOTE_CANDIDATES ||
      this.context.exclude(parsed.host)
    ) {
      this.context.stats.remoteCandidatesRejected++;
      this.context.log.debug(
        { type: parsed?.type, generation: this.generation },
        "remote candidate rejected",
      );
      return;
    }
    this.remoteCandidatesAccepted++;
    this.conn.addRemoteCandidate(remoteCandidateFromSdp(line)).catch((err: unknown) => {
      this.context.log.debug({ err }, "werift rejected a remote candidate");
    });
  }

  private endRemoteCandidates(): void {
    if (this.remoteEnded) return;
    this.remoteEnded = true;
    endRemoteCandidatesOnceGathered(this.conn, { remoteEnded: true, gathered: this.gathering.done });
  }

  /** TURN over UDP failed where TCP worked: later generations of every session go straight to TCP. */
  private learnTurnTransport(): void {
    const hint = this.context.turnHint;
    const transport = relayTransportOf(this.conn);
    if (hint && this.context.werift.full.turnTransport === "udp" && transport === "tcp" && !hint.udpBlocked) {
      hint.udpBlocked = true;
      this.context.log.info(
        "TURN over UDP fails, over TCP works: TCP from now on (until the network changes)",
      );
    }
  }

  private onChecksDone(): void {
    if (this._phase === "closed") return;
    const pair: CandidatePair | undefined = this.conn.nominated;
    if (!pair) {
      this.context.failed(this, "checks-failed");
      return;
    }
    if (!this.context.isCurrent(this)) {
      // Overtaken by a newer generation while its checks ran.
      void this.close();
      return;
    }
    clearTimeout(this.connectTimer);
    const path = this.openPath(pair);
    if (!path) {
      this.context.failed(this, "checks-failed");
      return;
    }
    this._phase = "nominated";
    stopWeriftConsent(this.conn);
    this.tuneSockets();
    const info = describePair(pair);
    // The proxy logs the path change (once, with the reason) at info.
    this.context.log.debug(
      {
        generation: this.generation,
        kind: path.kind,
        local: info.localType,
        remoteType: info.remoteType,
        remote: info.remote,
        relayTransport: info.relayTransport ?? undefined,
        reason: this.reason,
        ms: Math.round(performance.now() - this.startedAt),
      },
      "ice pair nominated",
    );
    this.context.nominated(this, path);
  }

  private openPath(pair: CandidatePair): IcePath | null {
    const { log } = this.context;
    const early = this.early.take();
    let path: IcePath;
    try {
      path = new IcePath(this.conn, pair, this.generation, log, {
        turnChannelRefreshMs: this.context.turnChannelRefreshMs,
      });
      path.reason = this.reason;
    } catch (err) {
      log.error({ err }, "cannot use the nominated ice pair");
      return null;
    }
    followPeer(path, this.context.controlling, this.stunGuard, log, () => this.context.followed(this, path));
    this.notePeerChecks(path);
    for (const datagram of early) path.hold(datagram);
    if (early.length > 0) {
      log.debug(
        { generation: this.generation, datagrams: early.length },
        "what arrived before the nomination kept for the path",
      );
    }
    this._path = path;
    return path;
  }

  /** Stamps `path` with each fresh check the peer signed on its pair (IcePath.peerCheckedAt). */
  private notePeerChecks(path: IcePath): void {
    const checks = new PeerChecks();
    const unsubscribe = this.stunGuard.onAuthenticatedRequest((request) => {
      if (path.closed) unsubscribe();
      else if (checks.onPair(request, path.pair)) path.peerCheckedAt = Date.now();
    });
  }

  private tuneSockets(): void {
    const { log, socketBufferBytes } = this.context;
    for (const socket of weriftSockets(this.conn)) {
      catchSocketErrors(socket, log);
      if (socketBufferBytes) {
        try {
          socket.setRecvBufferSize(socketBufferBytes);
          socket.setSendBufferSize(socketBufferBytes);
        } catch (err) {
          log.debug({ err }, "cannot size an ice socket buffer");
        }
      }
    }
  }

  private onWeriftState(state: IceState): void {
    // "failed" after nomination is RFC 7675 consent expiry (30 s without a check answered).
    if (state !== "failed" || this._phase === "closed" || !this._path) return;
    this.context.log.warn({ generation: this.generation }, "ice consent expired");
    this.context.failed(this, "consent-expired");
  }
}
