// The private state of werift-ice 0.2.3 that Tunnelbore reads or calls. werift exports none of it, so
// a werift update must be checked against these shapes first. Users: the data path (ice-path.ts,
// path-taps.ts) and werift-workarounds.ts.
import type { Socket } from "node:dgram";
import type { Candidate, Connection, Message, Protocol } from "werift-ice";

export type Address = readonly [string, number];
export type OnData = (data: Buffer, addr: Address) => void;

/** The UDP transport both StunProtocol and TurnProtocol use (common/src/transport.ts). */
export interface WeriftUdpTransport {
  readonly type: string;
  readonly socket: Socket;
  closed: boolean;
  onData: OnData;
}

/** TurnProtocol's channel bookkeeping, read by the relay fast path (turn/protocol.ts). */
export interface WeriftTurnInternals {
  server: Address;
  channelByAddr: Record<string, { number: number; refreshAt: number } | undefined>;
}

/** Connection's private members (ice.ts). */
export interface WeriftConnectionInternals {
  protocols: Protocol[];
  pairLocalProtocol(protocol: Protocol): void;
  stopConsentLifecycle?(): void;
  buildRequest(options: {
    nominate: boolean;
    localUsername: string;
    remoteUsername: string;
    iceControlling: boolean;
    localCandidate: Candidate;
  }): Message;
}

export function connectionInternals(conn: Connection): WeriftConnectionInternals {
  return conn as unknown as WeriftConnectionInternals;
}

export function isUdpTransport(transport: { type: string }): transport is WeriftUdpTransport {
  return transport.type === "udp" && "socket" in transport;
}
