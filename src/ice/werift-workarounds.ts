// Every place Tunnelbore works around a quirk of werift-ice 0.2.3 (node_modules/werift-ice), one
// function each; on a werift update, check each against the new version.
//
// Elsewhere, by design rather than as a patch:
// - Connection.restart() is never used: each generation is a fresh Connection (see ice-session.ts).
// - Connection.send/onData are never used: IcePath taps the transports itself (see ice-path.ts).
// - werift's aggressive nomination can leave the two sides on different pairs: IcePath accepts data on
//   any validated pair and the path follows the peer (see pair-following.ts). It also nominates a relay
//   pair whose check won the race against a direct one's: the controlling side moves onto the direct
//   pair once it validates, which onCheckComplete tells it (same file).
// - werift pairs our TURN relay candidate with every peer candidate: filterCandidatePair keeps it to
//   candidates the TURN server can reach (relayMayReach in candidate-filter.ts, via ice-server-url.ts).
// - werift re-binds a TURN channel (which also refreshes the permission) only when it sends: the
//   selected relayed pair's channel is re-bound every 2 min by TurnChannelKeeper (turn-channel.ts), so it
//   stays bound while the kernel fast path carries the data and user space sends nothing.
// Fixed in werift itself, by patches/werift-ice+0.2.3.patch (applied by npm install; see
// patches/README.md): its TURN client dropped the unauthenticated 401/438 nonce challenges (so it never
// refreshed its nonce and timed out instead of learning that the server forgot its allocation), and a
// refused TCP/TLS reconnect to the TURN server was an unhandled rejection.
import { randomBytes } from "node:crypto";
import type { Socket } from "node:dgram";
import {
  Candidate,
  type CandidatePair,
  CandidatePairState,
  type Connection,
  classes,
  type IceOptions,
  Message,
  methods,
  type Protocol,
  StunOverTurnProtocol,
  StunProtocol,
} from "werift-ice";
import type { Logger } from "../log.js";
import { isRelayedPair } from "./relayed-pair.js";
import { type Address, connectionInternals, isUdpTransport, pairInternals } from "./werift-internals.js";

/**
 * werift-ice 0.2.3 falls back to stun.l.google.com when no STUN server is given: leave STUN to the
 * configuration (none means none).
 */
export function useOnlyConfiguredStun(conn: Connection, options: Partial<IceOptions>): void {
  conn.stunServer = options.stunServer;
}

/** werift-ice 0.2.3's credentials carry 16 (ufrag) and 88 (pwd) random bits; RFC 8445 §5.3 asks for 24 and 128. */
export function strengthenCredentials(conn: Connection): void {
  delete conn.userHistory[conn.localUsername];
  conn.localUsername = randomBytes(4).toString("hex");
  conn.localPassword = randomBytes(16).toString("hex");
  conn.userHistory[conn.localUsername] = conn.localPassword;
}

/**
 * werift-ice 0.2.3 answers a connectivity check whatever ufrag its USERNAME names (an unknown one with
 * the current password). True when `check` is addressed to this agent's ufrag: anyone else's check is
 * dropped (options.filterStunResponse).
 */
export function namesLocalUfrag(conn: Connection, check: Message): boolean {
  const username: unknown = check.getAttributeValue("USERNAME");
  return typeof username === "string" && username.startsWith(`${conn.localUsername}:`);
}

/** Decides whether werift may handle a STUN request; `data` is the datagram it was parsed from. */
export type RequestGate = (
  message: Message,
  data: Buffer | undefined,
  remote: Address,
  protocol: Protocol,
) => boolean;

/**
 * werift-ice 0.2.3 acts on every STUN request a transport receives: it swaps roles on an
 * ICE-CONTROLLING/ICE-CONTROLLED before it looks at USERNAME, never verifies a request's
 * MESSAGE-INTEGRITY, and answers other methods with a 400. From now on a request reaches werift only
 * when `gate` lets it (see stun-guard.ts). The gate sits on each transport's request event, which
 * werift fires only for datagrams it parsed as STUN requests: data never passes through it. A request
 * werift handled may have the pair checked again (recheckAfterCheckInProgress). Call before gathering
 * (transports are made then).
 */
export function gateIncomingRequests(conn: Connection, gate: RequestGate): void {
  const internals = connectionInternals(conn);
  const ensureProtocol = internals.ensureProtocol.bind(conn);
  internals.ensureProtocol = (protocol) => {
    ensureProtocol(protocol);
    const event = protocol.onRequestReceived;
    const deliver = event.execute;
    event.execute = (message, remote, data) => {
      if (!gate(message, data, remote, protocol)) return;
      deliver(message, remote, data);
      forgetOldCheckIds(conn, protocol);
      recheckAfterCheckInProgress(conn, protocol, remote);
    };
  };
}

/** The listeners of each agent's check completions (the wrapper is installed once per agent). */
const checkListeners = new WeakMap<Connection, Set<(pair: CandidatePair) => void>>();

/**
 * werift-ice 0.2.3 has no event for a pair's check ending: `listener` hears of each from now on, after
 * werift has updated the pair's state. Returns the unsubscribe.
 */
export function onCheckComplete(conn: Connection, listener: (pair: CandidatePair) => void): () => void {
  let listeners = checkListeners.get(conn);
  if (!listeners) {
    const heard = new Set<(pair: CandidatePair) => void>();
    listeners = heard;
    checkListeners.set(conn, heard);
    const internals = connectionInternals(conn);
    const checkComplete = internals.checkComplete.bind(conn);
    internals.checkComplete = (pair) => {
      checkComplete(pair);
      for (const heardBy of heard) heardBy(pair);
    };
  }
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Pairs waiting for their check in progress to end, to be checked again if it failed. */
const rechecksDue = new WeakSet<CandidatePair>();
/** Agents whose check completions are watched for the rechecks due. */
const recheckingAgents = new WeakSet<Connection>();

/**
 * werift-ice 0.2.3 answers the peer's check on a pair whose own check is in progress, but checks the
 * pair neither again nor at once (RFC 8445 §7.3.1.4 asks for a new check), and when its check in
 * progress then fails, the peer's nomination (USE-CANDIDATE) it noted is lost with it. Such a check fails
 * when its last retransmission left before the peer's NAT let us in, which the peer's own check has just
 * done: the controlling peer, answered, has nominated the pair, while the controlled side holds it failed
 * and waits for its connect timeout (15 s) and a restart. Seen at a hub whose checks were slowed by its
 * load (bench/lazy-peers.ts, docs/benchmarks.md). So: `remote` checked the pair on `protocol` (werift
 * has handled it); if our check of that pair is in progress and then fails, the pair is checked again,
 * a triggered check as werift makes for a failed pair (nominated at once if the peer nominated it).
 * After the nomination, only a direct pair while the nominated one is relayed is checked again. The end
 * of the check is its completion, not its handle: werift settles every handle at the nomination while
 * the checks go on.
 */
export function recheckAfterCheckInProgress(conn: Connection, protocol: Protocol, remote: Address): void {
  if (conn.state === "closed") return;
  const pair = conn.checkList.find(
    (p) => p.protocol === protocol && p.remoteAddr[0] === remote[0] && p.remoteAddr[1] === remote[1],
  );
  if (!pair || pair.state !== CandidatePairState.IN_PROGRESS || !checkStillWanted(conn, pair)) return;
  rechecksDue.add(pair);
  if (recheckingAgents.has(conn)) return;
  recheckingAgents.add(conn);
  onCheckComplete(conn, (checked) => {
    if (!rechecksDue.delete(checked)) return;
    // After werift's own handling of the failure.
    queueMicrotask(() => {
      if (
        checked.state !== CandidatePairState.FAILED ||
        conn.state === "closed" ||
        !checkStillWanted(conn, checked)
      )
        return;
      checked.handle = conn.checkStart(checked);
    });
  });
}

/**
 * Before the nomination every pair; after it only a direct pair while the nominated one is relayed: the
 * path moves onto it once validated (pair-following.ts).
 */
function checkStillWanted(conn: Connection, pair: CandidatePair): boolean {
  const nominated = conn.nominated;
  return !nominated || (isRelayedPair(nominated) && !isRelayedPair(pair));
}

/** Transaction ids a pair remembers (only to count retransmissions) before it forgets them all. */
const CHECK_IDS_KEPT = 64;

/**
 * werift-ice 0.2.3 keeps the transaction id of every check a pair receives, for ever: a peer's probes
 * (or replays of them) grow it without end. It only tells retransmissions apart for statistics.
 */
function forgetOldCheckIds(conn: Connection, protocol: Protocol): void {
  for (const pair of conn.checkList) {
    if (pair.protocol !== protocol) continue;
    const ids = pairInternals(pair).requestTransactionIds;
    if (ids.size > CHECK_IDS_KEPT) ids.clear();
  }
}

/**
 * werift-ice 0.2.3 refuses to nominate a pair whose remote candidate names another generation or ufrag
 * than its own; generations are ours (signal level), so a peer's candidate carries neither.
 */
export function remoteCandidateFromSdp(line: string): Candidate {
  const candidate = Candidate.fromSdp(line);
  candidate.generation = undefined;
  candidate.ufrag = undefined;
  return candidate;
}

/**
 * werift-ice 0.2.3 pairs a new host socket with the remote candidates already known, but not a new TURN
 * allocation: remote candidates that arrived before our relay candidate would never be paired with it
 * (and relay-only ICE fails). Call this when a local relay candidate appears.
 */
export function pairLocalRelayCandidate(conn: Connection, candidate: Candidate): void {
  const internals = connectionInternals(conn);
  const protocol = internals.protocols.find((p) => p.localCandidate === candidate);
  if (protocol instanceof StunOverTurnProtocol) internals.pairLocalProtocol(protocol);
}

/**
 * werift-ice 0.2.3 falls back from TURN over UDP to TCP by itself (after ~6.4 s) and tells nobody. How
 * the agent reaches its TURN server, or null without one.
 */
export function relayTransportOf(conn: Connection): "udp" | "tcp" | "tls" | null {
  for (const protocol of connectionInternals(conn).protocols) {
    if (!(protocol instanceof StunOverTurnProtocol)) continue;
    const type = protocol.turn.transport.type;
    if (type === "udp" || type === "tcp" || type === "tls") return type;
  }
  return null;
}

/**
 * werift-ice 0.2.3's connect() gives up as soon as the peer's candidates are complete and no pair exists,
 * even while our own gathering (a TURN allocation) is still under way. So werift hears the peer's
 * end-of-candidates only once our gathering has finished too: call this when either of the two happens.
 */
export function endRemoteCandidatesOnceGathered(
  conn: Connection,
  done: { readonly remoteEnded: boolean; readonly gathered: boolean },
): void {
  if (done.remoteEnded && done.gathered) void conn.addRemoteCandidate(undefined);
}

/**
 * Stops werift-ice 0.2.3's RFC 7675 consent checks (a binding request every 4-6 s, expiry after 30 s):
 * the liveness monitor probes the pair instead, quickly while WireGuard gets no answers and rarely while
 * the peer is idle (src/proxy/liveness.ts), so a dead path is noticed in seconds and idle peers stay
 * cheap. werift restarts consent only on a later nomination of its own, which a nominated agent never
 * makes.
 */
export function stopWeriftConsent(conn: Connection): void {
  connectionInternals(conn).stopConsentLifecycle?.();
}

/** The UDP sockets of an agent (host sockets and TURN over UDP); werift-ice 0.2.3 exposes none. */
export function weriftSockets(conn: Connection): Socket[] {
  const sockets: Socket[] = [];
  for (const protocol of connectionInternals(conn).protocols) {
    if (protocol instanceof StunProtocol) sockets.push(protocol.transport.socket);
    else if (protocol instanceof StunOverTurnProtocol && isUdpTransport(protocol.turn.transport)) {
      sockets.push(protocol.turn.transport.socket);
    }
  }
  return sockets;
}

/** werift-ice 0.2.3's sockets have no 'error' listener; an error on one must never take the process down. */
export function catchSocketErrors(socket: Socket, log: Logger): void {
  if (socket.listenerCount("error") === 0) {
    socket.on("error", (err: Error) => log.debug({ err }, "ice socket error"));
  }
}

/**
 * werift-ice 0.2.3's close() cancels a STUN transaction without settling its promise, so a request is
 * never awaited longer than asked: resolves with what `request` resolves with or, after `deadlineMs`,
 * with null (aborting the request through the signal it was given).
 */
export function stunRequestWithDeadline<T>(
  request: (signal: AbortSignal) => Promise<T>,
  deadlineMs: number,
): Promise<T | null> {
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<null>((resolve) => {
    timer = setTimeout(() => {
      abort.abort();
      resolve(null);
    }, deadlineMs);
  });
  return Promise.race([request(abort.signal), expired]).finally(() => clearTimeout(timer));
}

/** werift-ice 0.2.3 closes a TURN client without releasing its allocation (it would linger ~10 min on the server). */
export async function releaseTurnAllocations(conn: Connection): Promise<void> {
  const turns = connectionInternals(conn).protocols.filter(
    (p): p is StunOverTurnProtocol => p instanceof StunOverTurnProtocol,
  );
  await Promise.all(
    turns.map(async ({ turn }) => {
      const request = new Message(methods.REFRESH, classes.REQUEST).setAttribute("LIFETIME", 0);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        turn.requestWithRetry(request, turn.server).catch(() => undefined),
        new Promise((resolve) => {
          timer = setTimeout(resolve, 1000);
        }),
      ]);
      clearTimeout(timer);
    }),
  );
}

/**
 * werift-ice 0.2.3 adds sockets that finish opening after close() (a TURN allocation above all) to its
 * emptied list and never closes them: `close` once more when a gathering still under way has settled.
 */
export function closeAgainOnceGathered(
  gathering: { readonly settled: Promise<void> | null; readonly done: boolean },
  close: () => Promise<void>,
): void {
  if (!gathering.done && gathering.settled) void gathering.settled.then(close);
}
