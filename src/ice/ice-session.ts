// One ICE session per peer (werift-ice), driven by signalling through the introduction server: it
// orders generations and dispatches the peer's signals to them. Each generation is an IceAgent.
//
// Each generation (the first attempt and every restart) gets its own werift Connection, rather than
// werift's Connection.restart(), because that restart un-nominates the working pair at once (the old
// path would stop before the new one exists), does not query STUN again for srflx candidates, keeps
// sockets of addresses that went away and allocates a second TURN relay on top of the first. A fresh
// agent gathers everything anew; the previous one keeps carrying traffic until the new pair is
// nominated, and is closed a grace period later.
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { pino } from "pino";
import type { Logger } from "../log.js";
import type { AddressExclusion } from "./candidate-filter.js";
import { GenerationOrder } from "./generation-order.js";
import { IceAgent, type IceAgentContext, type IceAgentIdentity } from "./ice-agent.js";
import { describePair, type IcePath, type SelectedPairInfo } from "./ice-path.js";
import { type WeriftOptionSets, weriftOptionSets } from "./ice-server-url.js";
import type {
  IceFailureReason,
  IceSessionEvents,
  IceSessionOptions,
  IceSessionState,
  IceSessionStats,
  RestartMode,
} from "./ice-session-api.js";
import { type IceAnswer, type IceOffer, type IceSignal, parseIceSignal } from "./ice-signal.js";
import type { NatBehaviour } from "./nat-behaviour.js";

export type {
  IceFailure,
  IceFailureReason,
  IceSessionEvents,
  IceSessionOptions,
  IceSessionState,
  IceSessionStats,
  RestartMode,
  TurnConfig,
  TurnTransportHint,
} from "./ice-session-api.js";

/**
 * A generation this young that has not connected yet answers a full restart (ours, or a fresh peer
 * session's request for an offer, a restart request without epoch); restarting would only abandon it.
 */
const YOUNG_GENERATION_MS = 2000;

export class IceSession extends EventEmitter<IceSessionEvents> {
  readonly controlling: boolean;
  readonly stats: IceSessionStats = {
    signalsReceived: 0,
    signalsMalformed: 0,
    signalsStale: 0,
    remoteCandidatesRejected: 0,
    localCandidatesFiltered: 0,
    generations: 0,
    restartRequestsIgnored: 0,
    restartsJoined: 0,
  };

  private readonly log: Logger;
  private readonly werift: WeriftOptionSets;
  /** What every agent of this session shares, and how it reports back. */
  private readonly agentContext: IceAgentContext;
  private readonly signalTimeoutMs: number;
  private requestTimer: NodeJS.Timeout | undefined;
  private readonly graceMs: number;
  private readonly minRemoteRestartMs: number;

  private _state: IceSessionState = "new";
  /** Controlling: our epoch. Controlled: the epoch of the newest offer accepted. */
  private epoch: string | null;
  private nextGeneration = 0;
  /** The newest generation (in progress or nominated). */
  private current: IceAgent | null = null;
  /** The generation whose path is in use. */
  private active: IceAgent | null = null;
  private readonly retiring = new Set<IceAgent>();
  /** Controlled: which of the peer's offers and early candidates are new. */
  private readonly order = new GenerationOrder();
  private lastRemoteRestart = Number.NEGATIVE_INFINITY;
  /** Controlled: why we last asked the peer for a restart (the reason of the generation that follows). */
  private requestedReason: string | null = null;
  /** The peer's NAT mapping behaviour, as its latest signal that said it. */
  private remoteNat: NatBehaviour = "unknown";

  constructor(private readonly options: IceSessionOptions) {
    super();
    this.controlling = options.controlling;
    const exclude: AddressExclusion = options.excludeAddresses ?? (() => false);
    this.werift = weriftOptionSets(options, exclude);
    this.signalTimeoutMs = options.signalTimeoutMs ?? 3000;
    this.graceMs = options.previousPathGraceMs ?? 2000;
    this.minRemoteRestartMs = options.minRemoteRestartIntervalMs ?? 1000;
    this.log = options.logger?.child({ component: "ice" }) ?? pino({ enabled: false });
    this.epoch = this.controlling ? randomBytes(8).toString("hex") : null;
    this.agentContext = {
      controlling: this.controlling,
      werift: this.werift,
      exclude,
      log: this.log,
      stats: this.stats,
      turnHint: options.turnHint,
      socketBufferBytes: options.socketBufferBytes,
      connectTimeoutMs: options.connectTimeoutMs ?? 15_000,
      upgradeTimeoutMs: options.upgradeTimeoutMs ?? 6000,
      turnChannelRefreshMs: options.turnChannelRefreshMs,
      isCurrent: (agent) => agent === this.current,
      signal: (message) => this.signal(message),
      nominated: (agent, path) => this.onNominated(agent, path),
      // Only the path in use: a retiring one's moves change nothing the peer uses.
      followed: (agent, path) => {
        if (agent === this.active) this.safeEmit("path-moved", path);
      },
      failed: (agent, reason) => this.failAgent(agent, reason),
    };
  }

  get state(): IceSessionState {
    return this._state;
  }

  /** The pair in use, or null without a path. */
  get selectedPair(): (SelectedPairInfo & { readonly generation: number }) | null {
    const agent = this.active;
    if (!agent?.path) return null;
    const pair = agent.path.pair;
    return pair ? { ...describePair(pair), generation: agent.generation } : null;
  }

  /** The path in use, or null. */
  get path(): IcePath | null {
    return this.active?.path ?? null;
  }

  /** True while the newest generation is an upgrade attempt (a relay path is up and stays meanwhile). */
  get upgrading(): boolean {
    const current = this.current;
    return current !== null && current !== this.active && current.mode === "upgrade";
  }

  /**
   * True while a newer generation is under way to replace a path we doubt (a restart of ours, or one we
   * asked the peer for); not during upgrade attempts or restarts the peer started on its own.
   */
  get repairing(): boolean {
    const current = this.current;
    return current !== null && current !== this.active && current.phase !== "closed" && current.repair;
  }

  /** Whether upgrade attempts make sense: controlling, a TURN server, and direct paths allowed. */
  /** Both sides' NAT mapping behaviours and the relay transport: what status explains a path with. */
  get natFacts(): {
    localNat: NatBehaviour;
    remoteNat: NatBehaviour;
    relayTransport: "udp" | "tcp" | "tls" | null;
  } {
    return {
      localNat: this.options.natBehaviour?.() ?? "unknown",
      remoteNat: this.remoteNat,
      relayTransport: this.selectedPair?.relayTransport ?? null,
    };
  }

  get canUpgrade(): boolean {
    return this.controlling && !this.options.forceRelay && this.werift.full.turnServer !== undefined;
  }

  /** Controlling: gathers and sends an offer. Controlled: waits for one (offers are handled even before start). */
  start(): void {
    if (this._state !== "new") return;
    this.setState("connecting");
    if (this.controlling) this.startGeneration("connect", "full");
  }

  /**
   * ICE restart: a new generation with new credentials and sockets; the current path keeps working
   * until the new pair is nominated. The controlled side asks the controlling side to restart.
   * One generation at a time: a "full" restart while a full generation is still gathering (its TURN
   * allocation under way) or younger than YOUNG_GENERATION_MS joins it instead (abandoning it would
   * throw its allocation away, and both sides restarting for the same trouble would each abandon the
   * other's); "replace" abandons it. The controlled side asks the controlling side, naming the
   * generation of the path in use while a newer one (or an upgrade attempt, which cannot repair a
   * relayed path) is under way; the controlling side decides (`onRestartRequest`).
   */
  restart(reason: string, mode: RestartMode = "full"): void {
    if (this._state === "closed") return;
    const upgrade = mode === "upgrade" && this.canUpgrade && this.active !== null;
    if (mode === "upgrade" && !upgrade) return;
    const underWay = mode === "full" ? this.generationUnderWay() : null;
    if (underWay && (this.controlling || this.active === null)) {
      this.stats.restartsJoined++;
      this.log.debug(
        { reason, generation: underWay.generation },
        "ice restart joins the generation under way",
      );
      return;
    }
    // Upgrade attempts run every ~30 s on a relayed peer: not worth an info line each.
    this.log[upgrade ? "debug" : "info"]({ reason, generation: this.current?.generation }, "ice restart");
    if (this.controlling) {
      this.startGeneration(reason, upgrade ? "upgrade" : "full");
      return;
    }
    // The generation we consider broken: the path's while a newer one is under way, else the newest.
    const latest = underWay || this.current?.mode === "upgrade" ? this.active : (this.current ?? this.active);
    const safeReason = reason.replace(/[^\w .:-]/g, "").slice(0, 64);
    this.requestedReason = safeReason;
    this.armRequestWatch();
    this.signal(
      latest
        ? { t: "restart", epoch: latest.epoch, generation: latest.generation, reason: safeReason }
        : { t: "restart", reason: safeReason },
    );
  }

  /** Handles a signal from the peer. Malformed or stale input is dropped and counted; this never throws. */
  handleSignal(input: unknown): void {
    this.stats.signalsReceived++;
    if (this._state === "closed") return;
    const message = parseIceSignal(input);
    if (!message) {
      this.stats.signalsMalformed++;
      this.log.debug("malformed ice signal dropped");
      return;
    }
    if ("nat" in message && message.nat) this.remoteNat = message.nat;
    try {
      this.dispatch(message);
    } catch (err) {
      // A bug of ours, not the peer's: keep the session alive and make it visible.
      this.log.error({ err, t: message.t }, "ice signal handling failed");
    }
  }

  /**
   * The path in use stopped answering for long (the liveness monitor's verdict, in place of werift's
   * consent expiry): drop it, so that WireGuard's initiations are held for the next path. A generation
   * under way carries on.
   */
  expirePath(): void {
    const agent = this.active;
    if (agent && agent.phase !== "closed") this.failAgent(agent, "consent-expired");
  }

  /** Closes every agent, its sockets and TURN allocations. */
  async close(): Promise<void> {
    if (this._state === "closed") return;
    this.setState("closed");
    clearTimeout(this.requestTimer);
    const agents = new Set([...this.retiring, this.current, this.active]);
    this.current = null;
    this.active = null;
    this.retiring.clear();
    await Promise.all([...agents].map((a) => (a ? this.closeAgent(a) : undefined)));
    this.removeAllListeners();
  }

  /** A full generation not nominated yet that is still gathering, or young; null when there is none. */
  private generationUnderWay(): IceAgent | null {
    const agent = this.current;
    if (!agent || agent === this.active || agent.phase === "closed" || agent.mode !== "full") return null;
    const young = performance.now() - agent.startedAt < YOUNG_GENERATION_MS;
    return agent.gatheringUnderWay || young ? agent : null;
  }

  /**
   * Controlled: a restart request should bring an offer. Not armed while a generation the peer just
   * offered is under way (the peer ignores the request then: its offer answers it).
   */
  private armRequestWatch(): void {
    const inFlight = this.current;
    if (
      inFlight &&
      inFlight !== this.active &&
      inFlight.phase !== "closed" &&
      performance.now() - inFlight.startedAt < this.signalTimeoutMs
    ) {
      return;
    }
    clearTimeout(this.requestTimer);
    const accepted = this.stats.generations;
    this.requestTimer = setTimeout(() => {
      if (this._state !== "closed" && this.stats.generations === accepted)
        this.safeEmit("stalled", "restart request unanswered");
    }, this.signalTimeoutMs);
    this.requestTimer.unref();
  }

  // --- signalling -------------------------------------------------------------------------------

  private dispatch(message: IceSignal): void {
    switch (message.t) {
      case "offer":
        if (this.controlling) this.stale(message);
        else this.acceptOffer(message);
        return;
      case "answer":
        if (this.controlling) this.acceptAnswer(message);
        else this.stale(message);
        return;
      case "candidate":
      case "end-of-candidates": {
        const agent = this.agentFor(message.epoch, message.generation);
        if (agent) agent.applyRemote(message);
        else if (this.controlling || !this.order.bufferEarly(message, this.current ?? this.active))
          this.stale(message);
        return;
      }
      case "restart":
        this.onRestartRequest(message);
        return;
    }
  }

  private signal(message: IceSignal): void {
    const nat = this.options.natBehaviour?.() ?? "unknown";
    const withNat =
      nat !== "unknown" &&
      (message.t === "offer" || message.t === "answer" || message.t === "end-of-candidates")
        ? { ...message, nat }
        : message;
    try {
      this.options.sendSignal(withNat);
    } catch (err) {
      this.log.warn({ err, t: message.t }, "sending an ice signal failed");
    }
  }

  private stale(message: IceSignal): void {
    this.stats.signalsStale++;
    this.log.debug({ t: message.t }, "stale ice signal dropped");
  }

  private agentFor(epoch: string, generation: number): IceAgent | null {
    const agent = this.current;
    return agent && agent.phase !== "closed" && agent.epoch === epoch && agent.generation === generation
      ? agent
      : null;
  }

  private acceptOffer(offer: IceOffer): void {
    const latest = this.current ?? this.active;
    if (!this.order.isNewer(offer, latest)) {
      this.stale(offer);
      return;
    }
    this.order.accepted(offer, latest);
    this.epoch = offer.epoch;
    // An upgrade attempt does not answer a restart we asked for (it cannot repair the path): the
    // request stays pending, and the attempt is not called a repair.
    const upgrade = offer.mode === "upgrade" && latest !== null;
    const requested = upgrade ? null : this.requestedReason;
    const reason = upgrade
      ? "peer upgrade attempt"
      : (requested ?? (latest ? "peer restarted ice" : "connect"));
    if (!upgrade) this.requestedReason = null;
    const agent = this.startAgent({
      epoch: offer.epoch,
      generation: offer.generation,
      reason,
      mode: upgrade ? "upgrade" : "full",
      repair: requested !== null,
    });
    agent.describeRemote(offer);
    // Answer before trickling, so the peer has our credentials when our first candidate arrives.
    this.signal({
      t: "answer",
      epoch: agent.epoch,
      generation: agent.generation,
      ufrag: agent.conn.localUsername,
      pwd: agent.conn.localPassword,
    });
    agent.applyDescriptionCandidates(offer);
    for (const message of this.order.takeEarly(agent)) agent.applyRemote(message);
    agent.gather();
    agent.connect();
  }

  private acceptAnswer(answer: IceAnswer): void {
    const agent = this.agentFor(answer.epoch, answer.generation);
    if (!agent || agent.remoteDescribed) {
      this.stale(answer);
      return;
    }
    agent.describeRemote(answer);
    agent.applyDescriptionCandidates(answer);
    agent.connect();
  }

  private onRestartRequest(message: Extract<IceSignal, { t: "restart" }>): void {
    if (!this.controlling || this._state === "new") {
      this.stale(message);
      return;
    }
    const latestGeneration = this.nextGeneration - 1;
    // Naming the generation whose path is in use while an upgrade attempt is under way: that attempt
    // looks for a direct pair only and cannot repair the path, so a full generation replaces it.
    const active = this.active;
    const brokenUnderUpgrade = this.upgrading && active !== null && message.generation === active.generation;
    const current =
      message.epoch === undefined ||
      (message.epoch === this.epoch && (message.generation === latestGeneration || brokenUnderUpgrade));
    const now = Date.now();
    const young = this.current;
    const answered =
      message.epoch === undefined &&
      young !== null &&
      young !== this.active &&
      young.mode === "full" &&
      performance.now() - young.startedAt < YOUNG_GENERATION_MS;
    if (!current || answered || now - this.lastRemoteRestart < this.minRemoteRestartMs) {
      this.stats.restartRequestsIgnored++;
      this.log.debug({ generation: message.generation }, "ice restart request ignored");
      return;
    }
    this.lastRemoteRestart = now;
    // The peer saw our newest generation (or has none: its session is new) and still asks: replace it.
    this.restart(`peer: ${message.reason}`, "replace");
  }

  // --- generations ------------------------------------------------------------------------------

  /** Controlling: a new generation of ours, offered to the peer. */
  private startGeneration(reason: string, mode: "full" | "upgrade"): void {
    const epoch = this.epoch!;
    const agent = this.startAgent({
      epoch,
      generation: this.nextGeneration++,
      reason,
      mode,
      repair: mode === "full",
    });
    this.log.debug({ generation: agent.generation, reason, mode }, "ice generation started");
    this.signal({
      t: "offer",
      epoch,
      generation: agent.generation,
      ufrag: agent.conn.localUsername,
      pwd: agent.conn.localPassword,
      ...(mode === "upgrade" ? { mode } : {}),
    });
    const watch = setTimeout(() => {
      if (agent.phase !== "closed" && agent === this.current && !agent.remoteDescribed)
        this.safeEmit("stalled", "offer unanswered");
    }, this.signalTimeoutMs);
    watch.unref();
    agent.onClose(() => clearTimeout(watch));
    agent.gather();
  }

  /** Makes a new agent the newest generation; an older one still in progress is abandoned. */
  private startAgent(identity: IceAgentIdentity): IceAgent {
    const agent = new IceAgent(this.agentContext, identity);
    const previous = this.current;
    this.current = agent;
    if (previous && previous !== this.active) void this.closeAgent(previous);
    this.stats.generations++;
    this.setState(this.active ? "restarting" : "connecting");
    return agent;
  }

  private onNominated(agent: IceAgent, path: IcePath): void {
    const previous = this.active;
    this.active = agent;
    // A new full path answers a restart we asked for about the old one (the peer may have ignored our
    // request because its own restart was under way): a later offer is not that answer.
    if (agent.mode === "full") this.requestedReason = null;
    if (previous && previous !== agent) this.retire(previous);
    this.setState("connected");
    this.safeEmit("path", path);
  }

  private failAgent(agent: IceAgent, reason: IceFailureReason): void {
    if (agent.phase === "closed") return;
    const wasActive = agent === this.active;
    const wasCurrent = agent === this.current;
    void this.closeAgent(agent);
    if (wasActive) this.active = null;
    if (wasCurrent) this.current = null;
    if (!wasActive && !wasCurrent) return; // abandoned or retiring: nobody waits for it
    if (this._state === "closed") return;
    const pathLost = this.active === null;
    const upgrade = agent.mode === "upgrade";
    this.log[upgrade ? "debug" : "info"](
      { generation: agent.generation, reason, pathLost },
      "ice generation failed",
    );
    if (this.current) this.setState(this.active ? "restarting" : "connecting");
    else this.setState(this.active ? "connected" : "failed");
    this.safeEmit("failed", { generation: agent.generation, reason, pathLost });
  }

  /** The previous path keeps delivering for a grace period, then its agent is closed. */
  private retire(agent: IceAgent): void {
    agent.retire();
    this.retiring.add(agent);
    const timer = setTimeout(() => {
      this.retiring.delete(agent);
      void this.closeAgent(agent);
    }, this.graceMs);
    agent.onClose(() => clearTimeout(timer));
  }

  private closeAgent(agent: IceAgent): Promise<void> {
    this.retiring.delete(agent);
    return agent.close();
  }

  private setState(state: IceSessionState): void {
    if (this._state === state) return;
    this._state = state;
    this.safeEmit("state", state);
  }

  /** A throwing listener must not break werift's promise chains or our bookkeeping. */
  private safeEmit<K extends keyof IceSessionEvents>(event: K, ...args: IceSessionEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: IceSessionEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error({ err, event }, "ice session listener threw");
    }
  }
}
