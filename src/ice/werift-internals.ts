// The private state of werift-ice 0.2.3 that Tunnelbore reads or calls. werift exports none of it, so
// a werift update must be checked against these shapes first. Users: the data path (ice-path.ts,
// path-taps.ts) and werift-workarounds.ts.
import type { Socket } from "node:dgram";
import type { Candidate, CandidatePair, Connection, Message, Protocol, TurnProtocol } from "werift-ice";

export type Address = readonly [string, number];
export type OnData = (data: Buffer, addr: Address) => void;

/** The UDP transport both StunProtocol and TurnProtocol use (common/src/transport.ts). */
export interface WeriftUdpTransport {
  readonly type: string;
  readonly socket: Socket;
  closed: boolean;
  onData: OnData;
}

/**
 * TurnProtocol's channel bookkeeping (turn/protocol.ts), read by the relay fast path and by the channel
 * keeper (turn-channel.ts). `channelByAddr` is keyed by JSON.stringify([host, port]); `refreshAt` is in
 * seconds: werift re-binds the channel on its next send after that time.
 */
export interface WeriftTurnInternals {
  server: Address;
  channelByAddr: Record<string, { number: number; refreshAt: number } | undefined>;
  /** Seconds from a ChannelBind to the send that refreshes it (500 by default). */
  channelRefreshTime: number;
}

export function turnInternals(turn: TurnProtocol): WeriftTurnInternals {
  return turn as unknown as WeriftTurnInternals;
}

/** werift's key for a peer address in `channelByAddr`. */
export function channelKey(peer: Address): string {
  return JSON.stringify(peer);
}

/**
 * The STUN error code of a failed werift transaction: its TransactionFailed (not exported) carries the
 * error response. Undefined for anything else (a timeout, a closed transport).
 */
export function transactionErrorCode(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null || !("response" in err)) return undefined;
  const response = (err as { response?: Message }).response;
  const code: unknown = response?.getAttributeValue("ERROR-CODE");
  return Array.isArray(code) && typeof code[0] === "number" ? code[0] : undefined;
}

/** Connection's private members (ice.ts). */
export interface WeriftConnectionInternals {
  protocols: Protocol[];
  /** Subscribes the agent to a new transport's requests and data, before the transport opens. */
  ensureProtocol(protocol: Protocol): void;
  pairLocalProtocol(protocol: Protocol): void;
  /** Called when a check of `pair` ends, succeeded or failed (after the nomination too). */
  checkComplete(pair: CandidatePair): void;
  stopConsentLifecycle?(): void;
  buildRequest(options: {
    nominate: boolean;
    localUsername: string;
    remoteUsername: string;
    iceControlling: boolean;
    localCandidate: Candidate;
  }): Message;
}

/** CandidatePair's private members (iceBase.ts). */
export interface WeriftPairInternals {
  /** Every transaction id of a check received on the pair (to count retransmissions): never pruned. */
  readonly requestTransactionIds: Set<string>;
}

export function pairInternals(pair: CandidatePair): WeriftPairInternals {
  return pair as unknown as WeriftPairInternals;
}

export function connectionInternals(conn: Connection): WeriftConnectionInternals {
  return conn as unknown as WeriftConnectionInternals;
}

export function isUdpTransport(transport: { type: string }): transport is WeriftUdpTransport {
  return transport.type === "udp" && "socket" in transport;
}
