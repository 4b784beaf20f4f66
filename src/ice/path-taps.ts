// The taps IcePath puts on werift's transports: the send side of the pair in use, and a hook that takes
// datagrams off a transport before werift sees them (see ice-path.ts for why).
import { isIP } from "node:net";
import {
  type CandidatePair,
  CandidatePairState,
  type Connection,
  type Protocol,
  type StunOverTurnProtocol,
  type StunProtocol,
} from "werift-ice";
import {
  type Address,
  isUdpTransport,
  type OnData,
  type WeriftTurnInternals,
  type WeriftUdpTransport,
} from "./werift-internals.js";

const STUN_COOKIE = 0x2112a442;

/** RFC 5389 framing: a STUN message (check, consent) is never a WireGuard message, which is >= 32 bytes with bytes 2-3 zero. */
export function isStunMessage(data: Buffer): boolean {
  return (
    data.length >= 20 &&
    (data[0]! & 0xc0) === 0 &&
    data.readUInt32BE(4) === STUN_COOKIE &&
    data.length === 20 + data.readUInt16BE(2)
  );
}

/** The send side of the path's pair; `detach` gives the transports back to werift untouched. */
export interface Tap {
  readonly fast: boolean;
  send(datagram: Buffer): void;
  detach(): void;
}

/**
 * Hooks `transport.onData` so datagrams for which `take` returns true never reach werift. Detaching
 * restores the previous hook if ours is still installed, and otherwise makes ours pass everything on.
 */
export function hookTransport(
  transport: WeriftUdpTransport,
  take: (data: Buffer, addr: Address) => boolean,
): () => void {
  const original = transport.onData;
  let attached = true;
  const hook: OnData = (data, addr) => {
    if (attached && take(data, addr)) return;
    original(data, addr);
  };
  transport.onData = hook;
  return () => {
    attached = false;
    if (transport.onData === hook) transport.onData = original;
  };
}

/** A pair of `conn` on `protocol` to `addr` whose connectivity check succeeded, if any. */
export function validatedPair(
  conn: Connection,
  protocol: Protocol,
  addr: Address,
): CandidatePair | undefined {
  return conn.checkList.find(
    (p) =>
      p.protocol === protocol &&
      p.state === CandidatePairState.SUCCEEDED &&
      p.remoteAddr[1] === addr[1] &&
      p.remoteAddr[0] === addr[0],
  );
}

export function directSend(protocol: StunProtocol, remote: Address, onSendError: () => void): Tap {
  const transport: WeriftUdpTransport = protocol.transport;
  const [host, port] = remote;
  return {
    fast: true,
    send(datagram) {
      if (transport.closed) {
        onSendError();
        return;
      }
      // Without a callback dgram reports no error (UDP loss is WireGuard's business) and allocates nothing.
      transport.socket.send(datagram, port, host);
    },
    detach() {},
  };
}

export function relaySend(
  protocol: StunOverTurnProtocol,
  remote: Address,
  deliver: (d: Buffer) => void,
  onSendError: () => void,
): Tap {
  const turn = protocol.turn;
  const internals = turn as unknown as WeriftTurnInternals;
  const channelKey = JSON.stringify(remote); // werift's key for channelByAddr
  const slowSend = (datagram: Buffer) => {
    turn.sendData(datagram, remote).catch(onSendError);
  };
  const transport = turn.transport;
  if (!isUdpTransport(transport)) return { fast: false, send: slowSend, detach() {} };

  // Receive fast path: ChannelData (RFC 8656 §12.4) from the server on the channel werift bound for the
  // remote, taken before werift decodes it. Anything else takes werift's way (see IcePath).
  const unhook = hookTransport(transport, (data, addr) => {
    if (data.length < 4 || (data[0]! & 0xc0) !== 0x40) return false;
    const server = internals.server;
    if (addr[1] !== server[1] || addr[0] !== server[0]) return false;
    const channel = internals.channelByAddr[channelKey];
    if (!channel || data.readUInt16BE(0) !== channel.number) return false;
    const end = 4 + data.readUInt16BE(2);
    if (end > data.length) return false;
    const payload = data.subarray(4, end);
    if (isStunMessage(payload)) return false;
    deliver(payload);
    return true;
  });
  return {
    fast: true,
    send(datagram) {
      const channel = internals.channelByAddr[channelKey];
      const server = internals.server;
      // werift refreshes a channel (and binds a new one) only inside sendData: leave that to it.
      if (!channel || channel.refreshAt <= Date.now() / 1000 || isIP(server[0]) === 0 || transport.closed) {
        slowSend(datagram);
        return;
      }
      const header = Buffer.allocUnsafe(4);
      header.writeUInt16BE(channel.number, 0);
      header.writeUInt16BE(datagram.length, 2);
      // A list is sent with one sendmsg (scatter/gather): the payload is not copied.
      transport.socket.send([header, datagram], server[1], server[0]);
    },
    detach: unhook,
  };
}
