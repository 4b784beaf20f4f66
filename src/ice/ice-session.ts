// One ICE agent per peer (werift-ice), driven by signalling through the introduction server.
//
// Each generation (the first attempt and every restart) gets its own werift Connection, rather than
// werift's Connection.restart(), because that restart un-nominates the working pair at once (the old
// path would stop before the new one exists), does not query STUN again for srflx candidates, keeps
// sockets of addresses that went away and allocates a second TURN relay on top of the first. A fresh
// agent gathers everything anew; the previous one keeps carrying traffic until the new pair is
// nominated, and is closed a grace period later.
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { isIP } from "node:net";
import { pino } from "pino";
import { Candidate, type CandidatePair, Connection, type IceOptions, type IceState } from "werift-ice";
import { ConfigError } from "../errors.js";
import type { Logger } from "../log.js";
import type { AddressExclusion } from "./candidate-filter.js";
import {
  describePair,
  IcePath,
  pairLocalRelayCandidate,
  relayTransportOf,
  releaseTurnAllocations,
  type SelectedPairInfo,
  stopWeriftConsent,
  strengthenCredentials,
  weriftSockets,
} from "./ice-path.js";
import {
  type IceAnswer,
  type IceOffer,
  type IceSignal,
  MAX_REMOTE_CANDIDATES,
  parseCandidate,
  parseIceSignal,
} from "./ice-signal.js";

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
 * "full": gather everything (host, srflx, relay). "upgrade": controlling side only, a path is up over a
 * relay and we look for a direct one: no TURN allocation, and neither side's relay candidates are
 * paired, so the attempt either finds a direct pair or fails without touching the relay path.
 */
export type RestartMode = "full" | "upgrade";

export interface IceFailure {
  readonly generation: number;
  readonly reason: IceFailureReason;
  /** True when no path is left (an older path still working is kept and reported as false). */
  readonly pathLost: boolean;
}

export interface IceSessionEvents {
  /** A pair was nominated (first connect and after each restart). The previous path keeps working for a grace period. */
  path: [path: IcePath];
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
}

export interface IceServerUrl {
  readonly scheme: "stun" | "turn" | "turns";
  readonly host: string;
  readonly port: number;
  readonly transport: "udp" | "tcp" | "tls";
}

const URL_PATTERN =
  /^(stun|turns?):(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(?:\?transport=(udp|tcp))?$/;

/** Parses an RFC 7064/7065 URL (`stun:host[:port]`, `turn:host[:port][?transport=udp|tcp]`, `turns:...`). */
export function parseIceServerUrl(url: string): IceServerUrl {
  const match = URL_PATTERN.exec(url);
  const scheme = match?.[1];
  const rawHost = match?.[2];
  if (!match || !rawHost || (scheme !== "stun" && scheme !== "turn" && scheme !== "turns")) {
    throw new ConfigError(
      "BAD_ICE_URL",
      `${url}: expected stun:HOST[:PORT] or turn(s):HOST[:PORT][?transport=udp|tcp]`,
    );
  }
  if (scheme === "stun" && match[4]) {
    throw new ConfigError("BAD_ICE_URL", `${url}: a stun: URL takes no transport`);
  }
  const host = rawHost.startsWith("[") ? rawHost.slice(1, -1) : rawHost;
  if (rawHost.startsWith("[") && isIP(host) !== 6)
    throw new ConfigError("BAD_ICE_URL", `${url}: bad IPv6 address`);
  const port = match[3] === undefined ? (scheme === "turns" ? 5349 : 3478) : Number(match[3]);
  if (port < 1 || port > 65535) throw new ConfigError("BAD_ICE_URL", `${url}: port must be 1..65535`);
  const transport = scheme === "turns" ? "tls" : match[4] === "tcp" ? "tcp" : "udp";
  if (scheme === "turns" && match[4] === "udp")
    throw new ConfigError("BAD_ICE_URL", `${url}: turns: runs over TLS`);
  return { scheme, host, port, transport };
}

/** The controlled side follows the peer to another pair at most this often (a confused peer cannot make it flap). */
const FOLLOW_INTERVAL_MS = 1000;
/**
 * The controlling side follows the peer to another pair only after hearing nothing on its own pair this
 * long: by then a controlled side that merely picked another pair has followed us (FOLLOW_INTERVAL_MS).
 */
const PEER_MOVED_SILENCE_MS = 2000;

/**
 * Controlling side: a fresh peer session's request for an offer (a restart request without epoch) is
 * already answered by a generation this young that has not connected yet; restarting would only
 * abandon it.
 */
const YOUNG_GENERATION_MS = 2000;

// werift takes one STUN and one TURN server; prefer TURN over UDP (TCP/TLS only where UDP is blocked).
const TRANSPORT_PREFERENCE = { udp: 0, tcp: 1, tls: 2 } as const;

function weriftOptions(options: IceSessionOptions, exclude: AddressExclusion): Partial<IceOptions> {
  const stun = options.stunUrls.map(parseIceServerUrl).find((u) => u.scheme === "stun");
  const turnUrls = (options.turn?.urls ?? []).map(parseIceServerUrl).filter((u) => u.scheme !== "stun");
  const turn = turnUrls.sort(
    (a, b) => TRANSPORT_PREFERENCE[a.transport] - TRANSPORT_PREFERENCE[b.transport],
  )[0];
  if (options.forceRelay && !turn) {
    throw new ConfigError("NO_TURN_SERVER", "relay-only ICE needs a TURN server (--turn)");
  }
  return {
    useIpv4: true,
    useIpv6: options.ipv6 ?? true,
    useTcp: false,
    stunServer: stun ? [stun.host, stun.port] : undefined,
    ...(turn && options.turn
      ? {
          turnServer: [turn.host, turn.port] as const,
          turnUsername: options.turn.username,
          turnPassword: options.turn.credential,
          turnTransport: turn.transport,
          forceTurn: options.forceRelay ?? false,
        }
      : {}),
    additionalHostAddresses: options.extraHostAddresses ?? [],
    // Pairs are formed for every werift socket (including ones for addresses we do not advertise);
    // never check from or to an excluded address.
    filterCandidatePair: (pair) => !exclude(pair.localCandidate.host) && !exclude(pair.remoteCandidate.host),
  };
}

/** One generation: a werift agent with its own sockets and credentials. */
interface Agent {
  readonly epoch: string;
  readonly generation: number;
  readonly conn: Connection;
  readonly startedAt: number;
  /** Why it was started (logged with the path it produces). */
  readonly reason: string;
  readonly mode: RestartMode;
  /** Started to repair a doubted path: ours (not an upgrade), or one we asked the peer for. */
  readonly repair: boolean;
  /** Upgrade attempts: addresses of relay candidates (the peer's, our TURN server); never paired. */
  readonly relayHosts: Set<string>;
  remoteCandidates: number;
  remoteEnded: boolean;
  /** Local gathering finished (werift must not hear the peer's end-of-candidates before). */
  gathered: boolean;
  gathering: Promise<void> | null;
  remoteDescribed: boolean;
  connecting: boolean;
  path: IcePath | null;
  /** When the controlled side last followed the peer to another pair (performance.now()). */
  followedAt: number;
  /** Controlling side: datagrams heard on the path's own pair, and since when that count stands. */
  heardOnPair: { count: number; since: number };
  closed: boolean;
  timer: NodeJS.Timeout | undefined;
  readonly unsubscribe: Array<() => void>;
}

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
  };

  private readonly log: Logger;
  private readonly exclude: AddressExclusion;
  private readonly werift: Partial<IceOptions>;
  private readonly connectTimeoutMs: number;
  private readonly upgradeTimeoutMs: number;
  private readonly signalTimeoutMs: number;
  private requestTimer: NodeJS.Timeout | undefined;
  private readonly graceMs: number;
  private readonly minRemoteRestartMs: number;

  private _state: IceSessionState = "new";
  /** Controlling: our epoch. Controlled: the epoch of the newest offer accepted. */
  private epoch: string | null;
  private nextGeneration = 0;
  /** The newest generation (in progress or nominated). */
  private current: Agent | null = null;
  /** The generation whose path is in use. */
  private active: Agent | null = null;
  private readonly retiring = new Set<Agent>();
  /** Controlled: epochs replaced by a newer one; their late offers must not win back. */
  private readonly retiredEpochs: string[] = [];
  /** Controlled: candidates that overtook their offer (only for the newest generation announced). */
  private early: { epoch: string; generation: number; signals: IceSignal[] } | null = null;
  private lastRemoteRestart = Number.NEGATIVE_INFINITY;
  /** Controlled: why we last asked the peer for a restart (the reason of the generation that follows). */
  private requestedReason: string | null = null;
  /** werift options for upgrade attempts: no TURN server. */
  private readonly weriftDirect: Partial<IceOptions>;
  /** werift options when TURN over UDP is known not to work: TURN over TCP at once. */
  private readonly weriftTcp: Partial<IceOptions>;

  constructor(private readonly options: IceSessionOptions) {
    super();
    this.controlling = options.controlling;
    this.exclude = options.excludeAddresses ?? (() => false);
    this.werift = weriftOptions(options, this.exclude);
    this.weriftDirect = {
      ...this.werift,
      turnServer: undefined,
      turnUsername: undefined,
      turnPassword: undefined,
      turnTransport: undefined,
      forceTurn: false,
    };
    this.weriftTcp = {
      ...this.werift,
      turnTransport: this.werift.turnTransport === "udp" ? "tcp" : this.werift.turnTransport,
    };
    this.connectTimeoutMs = options.connectTimeoutMs ?? 15_000;
    this.upgradeTimeoutMs = options.upgradeTimeoutMs ?? 6000;
    this.signalTimeoutMs = options.signalTimeoutMs ?? 3000;
    this.graceMs = options.previousPathGraceMs ?? 2000;
    this.minRemoteRestartMs = options.minRemoteRestartIntervalMs ?? 1000;
    this.log = options.logger?.child({ component: "ice" }) ?? pino({ enabled: false });
    this.epoch = this.controlling ? randomBytes(8).toString("hex") : null;
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
    return current !== null && current !== this.active && !current.closed && current.repair;
  }

  /** Whether upgrade attempts make sense: controlling, a TURN server, and direct paths allowed. */
  get canUpgrade(): boolean {
    return this.controlling && !this.options.forceRelay && this.werift.turnServer !== undefined;
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
   */
  restart(reason: string, mode: RestartMode = "full"): void {
    if (this._state === "closed") return;
    const upgrade = mode === "upgrade" && this.canUpgrade && this.active !== null;
    if (mode === "upgrade" && !upgrade) return;
    // Upgrade attempts run every ~30 s on a relayed peer: not worth an info line each.
    this.log[upgrade ? "debug" : "info"]({ reason, generation: this.current?.generation }, "ice restart");
    if (this.controlling) {
      this.startGeneration(reason, upgrade ? "upgrade" : "full");
      return;
    }
    const latest = this.current ?? this.active;
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
    try {
      this.dispatch(message);
    } catch (err) {
      // A bug of ours, not the peer's: keep the session alive and make it visible.
      this.log.error({ err, t: message.t }, "ice signal handling failed");
    }
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
      !inFlight.closed &&
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

  /**
   * The path in use stopped answering for long (the liveness monitor's verdict, in place of werift's
   * consent expiry): drop it, so that WireGuard's initiations are held for the next path. A generation
   * under way carries on.
   */
  expirePath(): void {
    const agent = this.active;
    if (agent && !agent.closed) this.failAgent(agent, "consent-expired");
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
        if (agent) this.applyRemote(agent, message);
        else if (!this.bufferEarly(message)) this.stale(message);
        return;
      }
      case "restart":
        this.onRestartRequest(message);
        return;
    }
  }

  private signal(message: IceSignal): void {
    try {
      this.options.sendSignal(message);
    } catch (err) {
      this.log.warn({ err, t: message.t }, "sending an ice signal failed");
    }
  }

  private stale(message: IceSignal): void {
    this.stats.signalsStale++;
    this.log.debug({ t: message.t }, "stale ice signal dropped");
  }

  private agentFor(epoch: string, generation: number): Agent | null {
    const agent = this.current;
    return agent && !agent.closed && agent.epoch === epoch && agent.generation === generation ? agent : null;
  }

  /** Controlled: keeps candidates that overtook the offer of a newer generation. */
  private bufferEarly(message: Extract<IceSignal, { epoch: string; generation: number }>): boolean {
    if (this.controlling || this.retiredEpochs.includes(message.epoch)) return false;
    const current = this.current ?? this.active;
    if (current && current.epoch === message.epoch && message.generation <= current.generation) return false;
    if (!this.early || this.early.epoch !== message.epoch || this.early.generation !== message.generation) {
      if (this.early && this.early.epoch === message.epoch && this.early.generation > message.generation)
        return false;
      this.early = { epoch: message.epoch, generation: message.generation, signals: [] };
    }
    if (this.early.signals.length > MAX_REMOTE_CANDIDATES) return false;
    this.early.signals.push(message);
    return true;
  }

  private acceptOffer(offer: IceOffer): void {
    const latest = this.current ?? this.active;
    const newer =
      !latest ||
      (offer.epoch === latest.epoch
        ? offer.generation > latest.generation
        : !this.retiredEpochs.includes(offer.epoch));
    if (!newer) {
      this.stale(offer);
      return;
    }
    if (latest && latest.epoch !== offer.epoch) {
      this.retiredEpochs.push(latest.epoch);
      if (this.retiredEpochs.length > 8) this.retiredEpochs.shift();
    }
    this.epoch = offer.epoch;
    const requested = this.requestedReason;
    const reason = requested ?? (latest ? "peer restarted ice" : "connect");
    this.requestedReason = null;
    const agent = this.newAgent(offer.epoch, offer.generation, reason, "full", requested !== null);
    agent.conn.setRemoteParams({ iceLite: false, usernameFragment: offer.ufrag, password: offer.pwd });
    agent.remoteDescribed = true;
    // Answer before trickling, so the peer has our credentials when our first candidate arrives.
    this.signal({
      t: "answer",
      epoch: agent.epoch,
      generation: agent.generation,
      ufrag: agent.conn.localUsername,
      pwd: agent.conn.localPassword,
    });
    this.applyDescriptionCandidates(agent, offer);
    const early = this.early;
    this.early = null;
    if (early && early.epoch === agent.epoch && early.generation === agent.generation) {
      for (const message of early.signals) this.applyRemote(agent, message);
    }
    this.gather(agent);
    this.connect(agent);
  }

  private acceptAnswer(answer: IceAnswer): void {
    const agent = this.agentFor(answer.epoch, answer.generation);
    if (!agent || agent.remoteDescribed) {
      this.stale(answer);
      return;
    }
    agent.conn.setRemoteParams({ iceLite: false, usernameFragment: answer.ufrag, password: answer.pwd });
    agent.remoteDescribed = true;
    this.applyDescriptionCandidates(agent, answer);
    this.connect(agent);
  }

  private applyDescriptionCandidates(agent: Agent, description: IceOffer | IceAnswer): void {
    for (const candidate of description.candidates ?? []) this.addRemoteCandidate(agent, candidate);
    if (description.endOfCandidates) this.endRemoteCandidates(agent);
  }

  private applyRemote(agent: Agent, message: IceSignal): void {
    if (message.t === "candidate") this.addRemoteCandidate(agent, message.candidate);
    else if (message.t === "end-of-candidates") this.endRemoteCandidates(agent);
  }

  private addRemoteCandidate(agent: Agent, line: string): void {
    const parsed = parseCandidate(line);
    if (parsed?.type === "relay" && agent.mode === "upgrade") {
      // An upgrade looks for a direct pair only; remember the address to refuse checks from it.
      agent.relayHosts.add(parsed.host);
      return;
    }
    if (
      agent.remoteEnded ||
      !parsed ||
      agent.remoteCandidates >= MAX_REMOTE_CANDIDATES ||
      this.exclude(parsed.host)
    ) {
      this.stats.remoteCandidatesRejected++;
      this.log.debug({ type: parsed?.type, generation: agent.generation }, "remote candidate rejected");
      return;
    }
    agent.remoteCandidates++;
    const candidate = Candidate.fromSdp(line);
    // Generations are ours (signal level); werift would refuse to nominate on a generation mismatch.
    candidate.generation = undefined;
    candidate.ufrag = undefined;
    agent.conn.addRemoteCandidate(candidate).catch((err: unknown) => {
      this.log.debug({ err }, "werift rejected a remote candidate");
    });
  }

  private endRemoteCandidates(agent: Agent): void {
    if (agent.remoteEnded) return;
    agent.remoteEnded = true;
    // werift's connect() gives up as soon as the peer's candidates are complete and no pair exists,
    // even while our own gathering (a TURN allocation) is still under way: hold the end back.
    if (agent.gathered) void agent.conn.addRemoteCandidate(undefined);
  }

  private onRestartRequest(message: Extract<IceSignal, { t: "restart" }>): void {
    if (!this.controlling || this._state === "new") {
      this.stale(message);
      return;
    }
    const latestGeneration = this.nextGeneration - 1;
    const current =
      message.epoch === undefined ||
      (message.epoch === this.epoch && message.generation === latestGeneration);
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
    this.restart(`peer: ${message.reason}`);
  }

  // --- agents -----------------------------------------------------------------------------------

  private startGeneration(reason: string, mode: RestartMode): void {
    const epoch = this.epoch!;
    const agent = this.newAgent(epoch, this.nextGeneration++, reason, mode, mode === "full");
    this.log.debug({ generation: agent.generation, reason, mode }, "ice generation started");
    this.signal({
      t: "offer",
      epoch,
      generation: agent.generation,
      ufrag: agent.conn.localUsername,
      pwd: agent.conn.localPassword,
    });
    const watch = setTimeout(() => {
      if (!agent.closed && agent === this.current && !agent.remoteDescribed)
        this.safeEmit("stalled", "offer unanswered");
    }, this.signalTimeoutMs);
    watch.unref();
    agent.unsubscribe.push(() => clearTimeout(watch));
    this.gather(agent);
  }

  /** Makes `agent` the newest generation; an older one still in progress is abandoned. */
  private newAgent(
    epoch: string,
    generation: number,
    reason: string,
    mode: RestartMode,
    repair: boolean,
  ): Agent {
    const conn = new Connection(
      this.controlling,
      mode === "upgrade"
        ? this.weriftDirect
        : this.options.turnHint?.udpBlocked
          ? this.weriftTcp
          : this.werift,
    );
    // werift falls back to stun.l.google.com when no STUN server is given.
    conn.stunServer = this.werift.stunServer;
    strengthenCredentials(conn);
    const relayHosts = new Set<string>();
    const turnHost = this.werift.turnServer?.[0];
    if (mode === "upgrade" && turnHost) relayHosts.add(turnHost);
    const agent: Agent = {
      epoch,
      generation,
      conn,
      startedAt: performance.now(),
      reason,
      mode,
      repair,
      relayHosts,
      remoteCandidates: 0,
      remoteEnded: false,
      gathered: false,
      gathering: null,
      remoteDescribed: false,
      connecting: false,
      path: null,
      followedAt: Number.NEGATIVE_INFINITY,
      heardOnPair: { count: 0, since: 0 },
      closed: false,
      timer: undefined,
      unsubscribe: [],
    };
    // Drop checks from excluded addresses and from anyone not using this generation's ufrag.
    // Upgrade attempts also refuse checks from relay addresses: answering one would let werift nominate
    // a pair through the peer's relay, which is no upgrade.
    conn.options.filterStunResponse = (message, addr) => {
      const username: unknown = message.getAttributeValue("USERNAME");
      return (
        typeof username === "string" &&
        username.startsWith(`${conn.localUsername}:`) &&
        !this.exclude(addr[0]) &&
        !relayHosts.has(addr[0])
      );
    };
    const { unSubscribe } = conn.stateChanged.subscribe((state) => this.onWeriftState(agent, state));
    agent.unsubscribe.push(unSubscribe);
    agent.timer = setTimeout(
      () => this.failAgent(agent, "timeout"),
      mode === "upgrade" ? this.upgradeTimeoutMs : this.connectTimeoutMs,
    );

    const previous = this.current;
    this.current = agent;
    if (previous && previous !== this.active) void this.closeAgent(previous);
    this.stats.generations++;
    this.setState(this.active ? "restarting" : "connecting");
    return agent;
  }

  /** Gathers, trickling each allowed candidate, then end-of-candidates. */
  private gather(agent: Agent): void {
    let relayed = false;
    const { unSubscribe } = agent.conn.onIceCandidate.subscribe((candidate) => {
      if (agent.closed || agent !== this.current) return;
      if (candidate.type === "relay") {
        relayed = true;
        pairLocalRelayCandidate(agent.conn, candidate);
      }
      const line = candidate.toSdp();
      if (this.exclude(candidate.host) || !parseCandidate(line)) {
        this.stats.localCandidatesFiltered++;
        return;
      }
      this.log.debug({ type: candidate.type, generation: agent.generation }, "local candidate");
      this.signal({ t: "candidate", epoch: agent.epoch, generation: agent.generation, candidate: line });
    });
    agent.unsubscribe.push(unSubscribe);
    agent.gathering = agent.conn
      .gatherCandidates()
      .catch((err: unknown) => this.log.warn({ err }, "ice gathering failed"))
      .finally(() => {
        agent.gathered = true;
        if (agent.closed || agent !== this.current) return;
        const hint = this.options.turnHint;
        const transport = relayTransportOf(agent.conn);
        if (hint && this.werift.turnTransport === "udp" && transport === "tcp" && !hint.udpBlocked) {
          hint.udpBlocked = true;
          this.log.info("TURN over UDP fails, over TCP works: TCP from now on (until the network changes)");
        }
        if (agent.mode === "full" && this.werift.turnServer && !relayed) {
          // werift only logs this with DEBUG; wrong credentials take it ~13 s (UDP, then TCP).
          this.log.warn(
            { generation: agent.generation },
            "no TURN relay candidate: server unreachable or credentials refused",
          );
        }
        if (agent.remoteEnded) void agent.conn.addRemoteCandidate(undefined);
        this.signal({ t: "end-of-candidates", epoch: agent.epoch, generation: agent.generation });
      });
  }

  private connect(agent: Agent): void {
    if (agent.connecting) return;
    agent.connecting = true;
    agent.conn.connect().then(
      () => this.onConnected(agent),
      () => this.failAgent(agent, "checks-failed"),
    );
  }

  private onConnected(agent: Agent): void {
    if (agent.closed) return;
    const pair: CandidatePair | undefined = agent.conn.nominated;
    if (agent !== this.current || !pair) {
      // A generation overtaken by a newer one while its checks ran.
      if (!pair) this.failAgent(agent, "checks-failed");
      else void this.closeAgent(agent);
      return;
    }
    clearTimeout(agent.timer);
    const path = this.openPath(agent, pair);
    if (!path) {
      this.failAgent(agent, "checks-failed");
      return;
    }
    stopWeriftConsent(agent.conn);
    this.tuneSockets(agent);
    const previous = this.active;
    this.active = agent;
    if (previous && previous !== agent) this.retire(previous);
    const info = describePair(pair);
    // The proxy logs the path change (once, with the reason) at info.
    this.log.debug(
      {
        generation: agent.generation,
        kind: path.kind,
        local: info.localType,
        remoteType: info.remoteType,
        remote: info.remote,
        relayTransport: info.relayTransport ?? undefined,
        reason: agent.reason,
        ms: Math.round(performance.now() - agent.startedAt),
      },
      "ice pair nominated",
    );
    this.setState("connected");
    this.safeEmit("path", path);
  }

  private openPath(agent: Agent, pair: CandidatePair): IcePath | null {
    let path: IcePath;
    try {
      path = new IcePath(agent.conn, pair, agent.generation, this.log);
      path.reason = agent.reason;
    } catch (err) {
      this.log.error({ err }, "cannot use the nominated ice pair");
      return null;
    }
    path.onOtherPair = this.controlling
      ? (other) => this.followIfPeerMoved(agent, other)
      : (other) => this.follow(agent, other, "ice pair re-nominated to follow the controlling side");
    agent.heardOnPair = { count: 0, since: performance.now() };
    agent.path = path;
    return path;
  }

  /**
   * Controlled side: the peer sends on a validated pair other than ours (werift's aggressive nomination
   * let the two sides pick different pairs). Adopt it, so both sides use one 5-tuple and consent checks
   * run on the pair in use.
   */
  private follow(agent: Agent, pair: CandidatePair, message: string): void {
    const path = agent.path;
    const now = performance.now();
    if (!path || agent.closed || now - agent.followedAt < FOLLOW_INTERVAL_MS) return;
    agent.followedAt = now;
    const was = path.remote;
    try {
      path.switchTo(pair);
    } catch (err) {
      this.log.error({ err }, "cannot follow the peer's ice pair");
      return;
    }
    agent.conn.nominated = pair; // consent checks follow the pair in use
    this.log.info({ generation: agent.generation, kind: path.kind, remote: path.remote, was }, message);
  }

  /**
   * Controlling side: the peer's datagrams arrive on another validated pair and none on ours for
   * PEER_MOVED_SILENCE_MS. Its NAT gave it a new mapping (a conntrack flush, a NAT reboot) and its new
   * address proved the ICE password in a triggered check. Send there: our datagrams would otherwise go to
   * a mapping that is gone, while the peer's probes through the new one are answered and nobody suspects
   * the path.
   */
  private followIfPeerMoved(agent: Agent, pair: CandidatePair): void {
    const path = agent.path;
    if (!path) return;
    const heard = path.stats.datagramsReceived - path.stats.otherPairDatagrams;
    const now = performance.now();
    const mark = agent.heardOnPair; // updated in place: this runs per datagram on the other pair
    if (heard !== mark.count) {
      mark.count = heard;
      mark.since = now;
      return;
    }
    if (now - mark.since < PEER_MOVED_SILENCE_MS) return;
    this.follow(agent, pair, "ice pair re-nominated: the peer moved to a new address");
    mark.since = now;
  }

  private onWeriftState(agent: Agent, state: IceState): void {
    // "failed" after nomination is RFC 7675 consent expiry (30 s without a check answered).
    if (state !== "failed" || agent.closed || !agent.path) return;
    this.log.warn({ generation: agent.generation }, "ice consent expired");
    this.failAgent(agent, "consent-expired");
  }

  private failAgent(agent: Agent, reason: IceFailureReason): void {
    if (agent.closed) return;
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

  private retire(agent: Agent): void {
    this.retiring.add(agent);
    const timer = setTimeout(() => {
      this.retiring.delete(agent);
      void this.closeAgent(agent);
    }, this.graceMs);
    agent.unsubscribe.push(() => clearTimeout(timer));
  }

  private async closeAgent(agent: Agent): Promise<void> {
    if (agent.closed) return;
    agent.closed = true;
    clearTimeout(agent.timer);
    for (const off of agent.unsubscribe) off();
    agent.path?.close();
    this.retiring.delete(agent);
    const release = async () => {
      try {
        await releaseTurnAllocations(agent.conn);
        await agent.conn.close();
      } catch (err) {
        this.log.debug({ err }, "closing an ice agent failed");
      }
    };
    await release();
    // werift adds sockets (a TURN allocation above all) that finish opening after close() to its emptied
    // list and never closes them: close again once gathering has settled.
    if (!agent.gathered && agent.gathering) void agent.gathering.then(release);
  }

  private tuneSockets(agent: Agent): void {
    for (const socket of weriftSockets(agent.conn)) {
      // werift's sockets have no 'error' listener; one must never take the process down.
      if (socket.listenerCount("error") === 0) {
        socket.on("error", (err: Error) => this.log.debug({ err }, "ice socket error"));
      }
      if (this.options.socketBufferBytes) {
        try {
          socket.setRecvBufferSize(this.options.socketBufferBytes);
          socket.setSendBufferSize(this.options.socketBufferBytes);
        } catch (err) {
          this.log.debug({ err }, "cannot size an ice socket buffer");
        }
      }
    }
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
