// What `tunnelbore ping` asks a running `tunnelbore run`: one probe of one peer's current path per
// request ("ping KEY TIMEOUT_MS" on the control socket, one JSON line back), so the command streams
// each result as it comes without a multi-line protocol, and the privilege-separated parent relays it
// like any other command.
//
// An ICE path is probed with `IcePath.probe`: an authenticated STUN binding request on the nominated
// pair that the peer's agent answers and WireGuard never sees. These probes are not the liveness
// monitor's: it counts only its own (src/proxy/liveness.ts keeps its own probe times and answers), so a
// ping neither renews consent nor raises doubt. The peer's STUN budget (src/ice/stun-budget.ts, 20 per
// second per source host) stays far above a ping at its fastest (5 per second) plus liveness (4).
//
// A static path's remote is a plain WireGuard, which answers no STUN. A live probe would have to be a
// handshake, and a handshake cannot be had without disturbing WireGuard: WireGuard starts at most one
// per 5 s whatever asks for it, the ways to force one (src/wg/handshake-nudge.ts) remove and re-add the
// peer, and an initiation of our own would need the private key and would make the peer's WireGuard
// derive a session ours does not know. So a static path gets the latest handshake's round trip (as the
// proxy timed it) and its age, labelled as not a live probe.
import { ConfigError } from "../errors.js";
import { isProbeable } from "../proxy/liveness.js";
import type { PathKind, PeerPath } from "../proxy/path.js";

/** One probe of a peer's path. */
export interface PingRequest {
  /** The peer's full public key (base64). */
  peer: string;
  /** How long to wait for the answer. */
  timeoutMs: number;
}

/** The longest a probe may wait: the control socket closes a connection idle for 5 s. */
export const MAX_PING_TIMEOUT_MS = 4000;

/** The path a probe went on. */
export interface PingPath {
  kind: PathKind;
  remote: string;
  /** The kernel fast path carries the path's transport data (the probe itself goes through user space). */
  kernel: boolean;
}

export type PingAnswer =
  /** No path at the moment: nothing to probe. */
  | { peer: string; state: string; path: null }
  /** A live probe: the round trip in ms, or null when unanswered within the timeout. */
  | { peer: string; state: string; path: PingPath; live: true; rttMs: number | null }
  /** A static path: WireGuard's latest handshake, not a live probe. */
  | {
      peer: string;
      state: string;
      path: PingPath;
      live: false;
      /** The latest handshake's round trip as the proxy timed it (our initiation to the response), or null. */
      handshakeRttMs: number | null;
      /** Seconds since WireGuard's latest handshake with the peer, or null when there was none. */
      handshakeAgeS: number | null;
    };

const KEY = /^[A-Za-z0-9+/]{43}=$/;

/** The control socket's request line for `request`. */
export function formatPingRequest(request: PingRequest): string {
  return `ping ${request.peer} ${request.timeoutMs}`;
}

/** Parses "ping KEY TIMEOUT_MS"; throws a ConfigError for anything else. */
export function parsePingRequest(line: string): PingRequest {
  const [word, peer, timeout, ...rest] = line.split(" ");
  const timeoutMs = Number(timeout);
  if (
    word !== "ping" ||
    peer === undefined ||
    !KEY.test(peer) ||
    !/^\d{1,5}$/.test(timeout ?? "") ||
    timeoutMs < 1 ||
    timeoutMs > MAX_PING_TIMEOUT_MS ||
    rest.length > 0
  ) {
    throw new ConfigError("bad-ping-request", `expected "ping KEY TIMEOUT_MS" (1..${MAX_PING_TIMEOUT_MS})`);
  }
  return { peer, timeoutMs };
}

/** What Tunnelbore knows of the peer when it is pinged. */
export interface PingTarget {
  publicKey: string;
  state: string;
  path: PeerPath | null;
  kernel: boolean;
  handshakeRttMs: number | null;
  /** WireGuard's latest handshake (unix seconds, 0: never). */
  lastHandshake: number;
}

/** Probes the target's path once (see the top of this file). Never rejects. */
export async function probePath(
  target: PingTarget,
  timeoutMs: number,
  nowMs: () => number = Date.now,
): Promise<PingAnswer> {
  const { publicKey: peer, state, path } = target;
  if (!path) return { peer, state, path: null };
  const described: PingPath = { kind: path.kind, remote: path.remote, kernel: target.kernel };
  if (isProbeable(path)) {
    const rtt = await path.probe(timeoutMs);
    return { peer, state, path: described, live: true, rttMs: rtt === null ? null : round(rtt) };
  }
  return {
    peer,
    state,
    path: described,
    live: false,
    handshakeRttMs: target.handshakeRttMs === null ? null : round(target.handshakeRttMs),
    handshakeAgeS:
      target.lastHandshake === 0 ? null : Math.max(0, Math.round(nowMs() / 1000 - target.lastHandshake)),
  };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
