// A PeerPath over the candidate pair werift-ice nominated.
//
// werift's own data path (Connection.send / Connection.onData) is not used:
// - Connection.onData hands over datagrams without their source: any host that reaches the agent's
//   sockets (bound to the wildcard address) could inject datagrams.
// - Connection.send sends nothing while no pair is nominated, and an ICE restart un-nominates at once;
//   the old path must keep working until the new pair is nominated.
// - It allocates: per datagram received werift parses for STUN and runs two of its Events (each
//   makes a Promise), per datagram sent it awaits two async functions (test/integration/ice-turn.test.ts
//   measures it).
// So the path hooks the agent's UDP transports directly: the hook sees every datagram with its source
// first, keeps application data from validated remotes, and passes everything else (checks, consent,
// TURN control) on to werift unchanged.
//
// Validated remotes, not only the nominated one: werift nominates aggressively (every check of the
// controlling side carries USE-CANDIDATE) and the controlled side keeps the first pair it sees
// nominated, so the two sides can settle on different pairs (seen in 3 of 25 runs with two host
// addresses each). A datagram is therefore accepted on any pair whose connectivity check succeeded
// (its remote proved the ICE password), and the controlled side then follows the pair the controlling
// side sends on (pair-following.ts re-nominates it).
//
// A WireGuard handshake (or data: a woken dormant peer's first datagram) on a pair the agent knows but
// has not validated yet (the peer's check of it succeeded first, and the peer sends on it at once) is
// held, and delivered once our check of it succeeds: WireGuard would otherwise wait 5 s to retry it
// (early-handshake.ts does the same for what arrives before this path exists).
//
// A pair on our own TURN allocation keeps its channel bound while selected (turn-channel.ts), and
// answers channelRoute() for the kernel fast path.
//
// Access to werift internals goes through werift-internals.ts; the taps are in path-taps.ts.
import { isIP } from "node:net";
import {
  type CandidatePair,
  type Connection,
  type Protocol,
  StunOverTurnProtocol,
  StunProtocol,
} from "werift-ice";
import type { Logger } from "../log.js";
import {
  type ChannelRoute,
  legTo,
  type PathKind,
  type PathLeg,
  type PeerPath,
  type UdpRoute,
} from "../proxy/path.js";
import { type HeldDatagram, heldIsYoung, isHandshake, isKept, knownRemote } from "./early-handshake.js";
import type { CandidateType } from "./ice-signal.js";
import { directSend, hookTransport, isStunMessage, relaySend, type Tap, validatedPair } from "./path-taps.js";
import { isRelayedPair } from "./relayed-pair.js";
import { TurnChannelKeeper, weriftTurnChannelClient } from "./turn-channel.js";
import {
  type Address,
  connectionInternals,
  turnInternals,
  type WeriftUdpTransport,
} from "./werift-internals.js";
import { stunRequestWithDeadline } from "./werift-workarounds.js";

export interface SelectedPairInfo {
  readonly localType: CandidateType;
  readonly remoteType: CandidateType;
  /** Local candidate address "ip:port" (for a relay candidate: the TURN server's relayed address). */
  readonly local: string;
  /** Remote candidate address "ip:port". */
  readonly remote: string;
  /** True when either side is a TURN relay candidate. */
  readonly relayed: boolean;
  /** How we reach our TURN server when the local candidate is a relay one (TCP/TLS where UDP is blocked). */
  readonly relayTransport: "udp" | "tcp" | "tls" | null;
  /** The last connectivity-check round-trip time werift measured on this pair, in ms. */
  readonly rttMs: number | null;
}

export function formatAddress(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

function candidateType(type: string): CandidateType {
  return type === "host" || type === "srflx" || type === "relay" ? type : "prflx";
}

/** Describes a nominated werift pair. */
export function describePair(pair: CandidatePair): SelectedPairInfo {
  const local = pair.localCandidate;
  const remote = pair.remoteCandidate;
  const localType = candidateType(local.type);
  const remoteType = candidateType(remote.type);
  const protocol = pair.protocol;
  const turnType = protocol instanceof StunOverTurnProtocol ? protocol.turn.transport.type : null;
  return {
    localType,
    remoteType,
    local: formatAddress(local.host, local.port),
    remote: formatAddress(pair.remoteAddr[0], pair.remoteAddr[1]),
    relayed: isRelayedPair(pair),
    relayTransport: turnType === "udp" || turnType === "tcp" || turnType === "tls" ? turnType : null,
    rttMs: pair.rtt === undefined ? null : pair.rtt * 1000,
  };
}

/** How long a probe on `pair` waits for its answer: RTT-aware like werift's consent (2 RTT + 200 ms), 500..2000 ms. */
export function probeTimeoutMs(pair: CandidatePair): number {
  return pair.rtt === undefined ? 1000 : Math.min(2000, Math.max(500, 2 * pair.rtt * 1000 + 200));
}

export interface IcePathStats {
  datagramsSent: number;
  datagramsReceived: number;
  /** The part of datagramsReceived that came on another validated pair than the path's own. */
  otherPairDatagrams: number;
  /** Sends that failed (TURN channel binding, closed transport). */
  sendErrors: number;
  probesSent: number;
  probesAnswered: number;
}

interface Selected {
  readonly pair: CandidatePair;
  readonly protocol: Protocol;
  readonly host: string;
  readonly port: number;
  readonly info: SelectedPairInfo;
  readonly tap: Tap;
  /** Our TURN allocation's channel to the pair's remote (local relay candidates only). */
  readonly channel: TurnChannelKeeper | null;
}

export interface IcePathOptions {
  /** How often the channel of a pair on our TURN allocation is re-bound (default 2 min; tests shorten it). */
  turnChannelRefreshMs?: number;
}

/** Datagrams kept for a path nobody listens to yet, and for how long after nomination. */
const EARLY_DATAGRAMS = 8;
const EARLY_WINDOW_MS = 3000;
/** How often a held handshake's pair is looked at (werift runs its checks every 20 ms). */
const HELD_POLL_MS = 20;

/**
 * The PeerPath over a nominated pair. It sends on that pair and delivers application data from the
 * pair's remote and from any other validated pair of the agent (reported through `onOtherPair`);
 * `switchTo` moves it to another pair of the same agent. It does not own the agent: closing the path
 * only stops this path; the IceSession closes the agent.
 */
export class IcePath implements PeerPath {
  private receiver: ((datagram: Buffer) => void) | null = null;
  /**
   * What arrives before the first receiver is attached: the peer's side may nominate the pair and send
   * WireGuard's initiation a moment before our side reports the pair, and losing it costs WireGuard's
   * 5 s retry. Kept only until the first attach, so a detached old path never delivers late.
   */
  private early: Buffer[] | null = [];
  private readonly createdAt = Date.now();
  /** A handshake on a pair whose check has not succeeded yet: delivered once it has (latest wins). */
  private held: HeldDatagram[] = [];
  private heldTimer: NodeJS.Timeout | undefined;
  /**
   * Data arrived on another validated pair. Only a hint that the peer sends there: the source address
   * of a datagram is spoofable, and Tunnelbore cannot verify WireGuard data (pair-following.ts).
   */
  onOtherPair: ((pair: CandidatePair) => void) | null = null;
  onRouteChange: (() => void) | null = null;
  readonly stats: IcePathStats = {
    datagramsSent: 0,
    datagramsReceived: 0,
    otherPairDatagrams: 0,
    sendErrors: 0,
    probesSent: 0,
    probesAnswered: 0,
  };
  /** Why the generation of this path was started (for the path-change log). */
  reason = "connect";
  /**
   * When (Date.now()) the peer's own authenticated, fresh check on the pair in use last arrived (0: not
   * since the pair was taken). The agent sets it (ice-agent.ts); liveness lets it stand in for our
   * renewal probe of an idle path (ProbeablePath).
   */
  peerCheckedAt = 0;

  private selected: Selected | null;
  private readonly unhooks: Array<() => void> = [];
  private readonly deliver: (datagram: Buffer) => void;
  private readonly onSendError: () => void;

  constructor(
    /** The werift agent the pair belongs to (diagnostics and tests). */
    readonly conn: Connection,
    pair: CandidatePair,
    readonly generation: number,
    private readonly log?: Logger,
    private readonly options: IcePathOptions = {},
  ) {
    this.deliver = (datagram) => {
      this.stats.datagramsReceived++;
      if (this.receiver) this.receiver(datagram);
      else if (
        this.early &&
        this.early.length < EARLY_DATAGRAMS &&
        Date.now() - this.createdAt < EARLY_WINDOW_MS
      ) {
        this.early.push(Buffer.from(datagram));
      }
    };
    this.onSendError = () => {
      this.stats.sendErrors++;
    };
    this.selected = this.select(pair);
    // Data from another validated pair: delivered too, and reported.
    const deliverOther = (protocol: Protocol, data: Buffer, addr: Address): boolean => {
      if (isStunMessage(data)) return false; // werift answers it (its StunGuard checks it first)
      const other = validatedPair(conn, protocol, addr);
      if (!other) {
        if (!isKept(data) || !knownRemote(conn, protocol, addr)) return false;
        this.hold({ data: Buffer.from(data), protocol, addr, at: Date.now() });
        return true;
      }
      this.deliverFrom(other, data);
      return true;
    };
    for (const protocol of connectionInternals(conn).protocols) {
      if (protocol instanceof StunProtocol) {
        this.unhooks.push(
          hookTransport(protocol.transport, (data, addr) => {
            const sel = this.selected;
            if (
              sel?.protocol === protocol &&
              addr[1] === sel.port &&
              addr[0] === sel.host &&
              !isStunMessage(data)
            ) {
              this.deliver(data);
              return true;
            }
            return deliverOther(protocol, data, addr);
          }),
        );
      } else if (protocol instanceof StunOverTurnProtocol) {
        // werift's decoded relay data (Data indications, channels the fast path does not take, TCP).
        const sub = protocol.turn.onData.subscribe((data, addr) => {
          deliverOther(protocol, data, addr);
        });
        this.unhooks.push(sub.unSubscribe);
      }
    }
    log?.debug({ kind: this.kind, remote: this.remote, fast: this.fastPath }, "ice path open");
  }

  /** Delivers a datagram that came on `pair` of the agent; reports it when that is not our pair. */
  private deliverFrom(pair: CandidatePair, data: Buffer): void {
    this.deliver(data);
    if (pair !== this.selected?.pair) {
      this.stats.otherPairDatagrams++;
      this.onOtherPair?.(pair);
    }
  }

  /**
   * A handshake message (or data) of the peer's that has no validated pair yet: from before this path
   * existed (the agent's EarlyHandshake), or on a pair our check has not finished. Delivered (first, if
   * no receiver is attached yet) as soon as its pair is validated, unless WireGuard has retried since.
   * The latest of each kind is kept, in the order they came.
   */
  hold(datagram: HeldDatagram): void {
    if (this.closed) return;
    const handshake = isHandshake(datagram.data);
    this.held = this.held.filter((h) => isHandshake(h.data) !== handshake);
    this.held.push(datagram);
    if (this.deliverHeld() || this.heldTimer) return;
    this.heldTimer = setInterval(() => this.deliverHeld(), HELD_POLL_MS);
    this.heldTimer.unref();
  }

  /** True when nothing is held any more (delivered, or too old). */
  private deliverHeld(): boolean {
    while (this.held.length > 0) {
      const held = this.held[0]!;
      if (!this.closed && heldIsYoung(held)) {
        const pair = validatedPair(this.conn, held.protocol, held.addr);
        if (!pair) return false;
        this.deliverFrom(pair, held.data);
      }
      this.held.shift();
    }
    clearInterval(this.heldTimer);
    this.heldTimer = undefined;
    return true;
  }

  private select(pair: CandidatePair): Selected {
    const protocol = pair.protocol;
    let tap: Tap;
    let channel: TurnChannelKeeper | null = null;
    if (protocol instanceof StunProtocol) {
      tap = directSend(protocol, pair.remoteAddr, this.onSendError);
    } else if (protocol instanceof StunOverTurnProtocol) {
      tap = relaySend(protocol, pair.remoteAddr, this.deliver, this.onSendError);
      const keeper = new TurnChannelKeeper(weriftTurnChannelClient(protocol.turn), pair.remoteAddr, {
        refreshIntervalMs: this.options.turnChannelRefreshMs,
        log: this.log,
        onChange: () => {
          if (this.selected?.channel === keeper) this.onRouteChange?.();
        },
      });
      keeper.start();
      channel = keeper;
    } else {
      // TCP candidates are never gathered (useTcp is off), so this is a werift change: fail loudly.
      throw new Error(`unsupported werift protocol ${protocol.type}`);
    }
    const [host, port] = pair.remoteAddr;
    return { pair, protocol, host, port, info: describePair(pair), tap, channel };
  }

  /** The pair in use (null once closed). */
  get pair(): CandidatePair | null {
    return this.selected?.pair ?? null;
  }

  get info(): SelectedPairInfo | null {
    return this.selected?.info ?? null;
  }

  get kind(): Extract<PathKind, "direct" | "relay"> {
    return this.selected?.info.relayed ? "relay" : "direct";
  }

  get remote(): string {
    return this.selected?.info.remote ?? "closed";
  }

  get closed(): boolean {
    return this.selected === null;
  }

  /** True when datagrams bypass werift's data path (always for direct pairs; TURN over UDP). */
  get fastPath(): boolean {
    return this.selected?.tap.fast ?? false;
  }

  /**
   * Sends on `pair` (another pair of the same agent) from now on. The controlling side nominates the
   * new pair at once (a probe with USE-CANDIDATE): that authenticated request is what lets the
   * controlled side follow (pair-following.ts).
   */
  switchTo(pair: CandidatePair): void {
    const previous = this.selected;
    if (!previous || previous.pair === pair) return;
    this.selected = this.select(pair);
    this.peerCheckedAt = 0; // the peer's checks were of the old pair
    previous.tap.detach();
    previous.channel?.close();
    this.onRouteChange?.();
    if (this.conn.iceControlling) void this.probePair(pair, probeTimeoutMs(pair));
  }

  /**
   * The socket and remote of a pair from one of our own sockets (host, srflx), also to the peer's relay
   * candidate: plain UDP the kernel fast path can carry. Null on our TURN allocation (see channelRoute).
   */
  udpRoute(): UdpRoute | null {
    const sel = this.selected;
    if (!sel || !(sel.protocol instanceof StunProtocol)) return null;
    const transport: WeriftUdpTransport = sel.protocol.transport;
    if (transport.closed) return null;
    const bound = transport.socket.address();
    return {
      localAddress: bound.address,
      localPort: bound.port,
      remoteAddress: sel.host,
      remotePort: sel.port,
    };
  }

  /** On our TURN allocation over UDP with the channel to the remote bound: its five-tuple and channel. */
  channelRoute(): ChannelRoute | null {
    return this.selected?.channel?.route ?? null;
  }

  /** To the remote candidate's address, or over our TURN allocation to our TURN server's. */
  leg(): PathLeg | null {
    const sel = this.selected;
    if (!sel) return null;
    if (sel.protocol instanceof StunOverTurnProtocol) {
      const transport = sel.info.relayTransport;
      return transport ? legTo(turnInternals(sel.protocol.turn).server[0], transport) : null;
    }
    return legTo(sel.host);
  }

  kernelTraffic(sent: number, received: number): void {
    this.stats.datagramsSent += sent;
    this.stats.datagramsReceived += received;
  }

  send(datagram: Buffer): void {
    const sel = this.selected;
    if (!sel) return;
    this.stats.datagramsSent++;
    sel.tap.send(datagram);
  }

  /**
   * Liveness probe: one authenticated STUN binding request on the pair in use (the peer's agent answers
   * it like a consent check; it never reaches WireGuard). The controlling side's probes nominate the
   * pair (USE-CANDIDATE), so they also tell the controlled side which pair we send on. Resolves with the
   * round-trip time in ms, or null when no valid answer came within `timeoutMs`. Never rejects.
   */
  probe(timeoutMs: number): Promise<number | null> {
    const pair = this.selected?.pair;
    return pair ? this.probePair(pair, timeoutMs) : Promise.resolve(null);
  }

  /**
   * One authenticated binding request on `pair` (any pair of the agent, validated or not), nominating
   * it when we are controlling and it is the pair in use. Resolves like `probe`.
   */
  probePair(pair: CandidatePair, timeoutMs: number): Promise<number | null> {
    const conn = this.conn;
    const internals = connectionInternals(conn);
    if (this.closed || !conn.remotePassword || !conn.remoteUsername) return Promise.resolve(null);
    const nominate = conn.iceControlling && pair === this.selected?.pair;
    this.stats.probesSent++;
    const started = performance.now();
    return stunRequestWithDeadline(
      (signal) =>
        (async (): Promise<number | null> => {
          const request = internals.buildRequest({
            nominate,
            localUsername: conn.localUsername,
            remoteUsername: conn.remoteUsername,
            iceControlling: conn.iceControlling,
            localCandidate: pair.localCandidate,
          });
          await pair.protocol.request(request, pair.remoteAddr, Buffer.from(conn.remotePassword, "utf8"), {
            retransmissions: 0,
            responseTimeout: timeoutMs,
            signal,
          });
          this.stats.probesAnswered++;
          return performance.now() - started;
        })().catch(() => null),
      timeoutMs + 50,
    );
  }

  get onDatagram(): ((datagram: Buffer) => void) | null {
    return this.receiver;
  }

  set onDatagram(receiver: ((datagram: Buffer) => void) | null) {
    this.receiver = receiver;
    if (!receiver || !this.early) return;
    const early = this.early;
    this.early = null;
    if (Date.now() - this.createdAt < EARLY_WINDOW_MS) for (const datagram of early) receiver(datagram);
  }

  close(): void {
    this.early = null;
    this.held = [];
    clearInterval(this.heldTimer);
    const sel = this.selected;
    if (!sel) return;
    this.log?.debug({ kind: this.kind, remote: this.remote, ...this.stats }, "ice path closed");
    this.selected = null;
    sel.tap.detach();
    sel.channel?.close();
    for (const unhook of this.unhooks.splice(0)) unhook();
    this.onDatagram = null;
    this.onOtherPair = null;
    this.onRouteChange?.();
  }
}
