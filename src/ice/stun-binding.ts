// A minimal STUN Binding client (RFC 8489 §6.2.1, without authentication): what a socket's mapped address
// is as one server sees it. Used to learn the NAT's mapping behaviour (nat-behaviour.ts) and by netcheck.
// Codec: werift-ice's STUN message class, as the introduction server's responder uses it.
import type { RemoteInfo, Socket } from "node:dgram";
import { classes, Message, methods, parseMessage } from "werift-ice";

export interface TransportAddress {
  readonly address: string;
  readonly port: number;
}

/** RFC 8489's initial retransmission timeout; each retransmission doubles it. */
const INITIAL_RTO_MS = 500;

/** "::ffff:1.2.3.4" is the IPv4 address 1.2.3.4. */
function unmapAddress(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

/** The mapped address in a Binding success response, or null for anything else. */
export function mappedAddressOf(datagram: Buffer, transactionId: Buffer): TransportAddress | null {
  let message: Message | undefined;
  try {
    message = parseMessage(datagram);
  } catch {
    return null;
  }
  if (!message || message.messageMethod !== methods.BINDING || message.messageClass !== classes.RESPONSE)
    return null;
  if (!message.transactionId.equals(transactionId)) return null;
  const mapped = (message.getAttributeValue("XOR-MAPPED-ADDRESS") ??
    message.getAttributeValue("MAPPED-ADDRESS")) as [string, number] | undefined;
  if (!Array.isArray(mapped) || typeof mapped[0] !== "string" || typeof mapped[1] !== "number") return null;
  return { address: unmapAddress(mapped[0]), port: mapped[1] };
}

/**
 * Sends Binding requests from `socket` to `server` (retransmitted, RFC 8489 §6.2.1) until one is
 * answered or `timeoutMs` passes. Resolves with the mapped address, or null when no answer came. The
 * socket must be bound; other datagrams on it are left alone.
 */
export function stunBinding(
  socket: Socket,
  server: TransportAddress,
  timeoutMs: number,
): Promise<TransportAddress | null> {
  const request = new Message(methods.BINDING, classes.REQUEST);
  const bytes = request.bytes;
  return new Promise((resolve) => {
    let rto = INITIAL_RTO_MS;
    let retransmit: NodeJS.Timeout | undefined;
    const send = () => {
      socket.send(bytes, server.port, server.address, () => undefined);
      retransmit = setTimeout(send, rto);
      rto *= 2;
    };
    const finish = (result: TransportAddress | null) => {
      clearTimeout(retransmit);
      clearTimeout(deadline);
      socket.off("message", onMessage);
      resolve(result);
    };
    const onMessage = (datagram: Buffer, source: RemoteInfo) => {
      if (source.port !== server.port || unmapAddress(source.address) !== unmapAddress(server.address))
        return;
      const mapped = mappedAddressOf(datagram, request.transactionId);
      if (mapped) finish(mapped);
    };
    const deadline = setTimeout(() => finish(null), timeoutMs);
    socket.on("message", onMessage);
    send();
  });
}
