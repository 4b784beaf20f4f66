/**
 * STUN binding responder (RFC 8489 §6.3.1 for Binding only), so that one introduction server process
 * is also the STUN server behind cone NATs. Codec: werift-ice's STUN message class.
 *
 * It answers on two UDP ports of the same address: the primary (--stun-port) and an alternate
 * (--stun-alt-port, by default a free port the system picks, so it never collides with a TURN server
 * next to it). Two queries from one client socket to the two ports tell endpoint-independent mapping
 * from address-and-port-dependent (symmetric) mapping (RFC 4787 §4.1): src/ice/nat-behaviour.ts. A
 * mapping that depends on the address only looks endpoint-independent here (one address).
 */
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { isIPv6 } from "node:net";
import { classes, isComprehensionRequiredAttribute, Message, methods, parseMessage } from "werift-ice";
import { RuntimeError } from "../src/errors.js";
import type { Logger } from "../src/log.js";

/** Larger datagrams are not Binding requests we need to answer (and are not answered). */
const MAX_REQUEST_BYTES = 1500;
const SOFTWARE = "tunnelbore";

export interface StunResponderStats {
  answered: number;
  ignored: number;
}

export interface StunResponder {
  address: string;
  port: number;
  /** The alternate port, or undefined when it could not be bound (then only `port` answers). */
  altPort: number | undefined;
  stats(): StunResponderStats;
  close(): Promise<void>;
}

/** "::ffff:1.2.3.4" as seen on a dual-stack socket is the IPv4 client 1.2.3.4. */
function unmapAddress(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

export function buildBindingResponse(
  request: Buffer,
  source: { address: string; port: number },
): Buffer | undefined {
  let message: Message | undefined;
  try {
    message = parseMessage(request);
  } catch {
    return undefined;
  }
  if (!message || message.messageMethod !== methods.BINDING || message.messageClass !== classes.REQUEST) {
    return undefined;
  }
  const unknownRequired = message.unknownAttributeTypes.filter(isComprehensionRequiredAttribute);
  if (unknownRequired.length > 0) {
    const error = new Message(methods.BINDING, classes.ERROR, message.transactionId);
    error.setAttribute("ERROR-CODE", [420, "Unknown Attribute"]);
    error.setAttribute("UNKNOWN-ATTRIBUTES", unknownRequired);
    error.setAttribute("SOFTWARE", SOFTWARE);
    return error.addFingerprint().bytes;
  }
  const response = new Message(methods.BINDING, classes.RESPONSE, message.transactionId);
  response.setAttribute("XOR-MAPPED-ADDRESS", [unmapAddress(source.address), source.port]);
  response.setAttribute("SOFTWARE", SOFTWARE);
  return response.addFingerprint().bytes;
}

export async function startStunResponder(options: {
  host: string;
  port: number;
  /** The alternate port (0: a free one); undefined: none. */
  altPort?: number;
  logger: Logger;
}): Promise<StunResponder> {
  const stats: StunResponderStats = { answered: 0, ignored: 0 };
  const primary = await bindResponderSocket(options.host, options.port, "--stun-port", stats, options.logger);
  let alternate: Socket | undefined;
  if (options.altPort !== undefined) {
    try {
      alternate = await bindResponderSocket(
        options.host,
        options.altPort,
        "--stun-alt-port",
        stats,
        options.logger,
      );
    } catch (err) {
      // Clients then cannot tell mapping behaviours apart; everything else works: not worth failing.
      options.logger.warn({ err }, "STUN alternate port not bound; clients cannot classify their NAT");
    }
  }
  const bound = primary.address();
  const altPort = alternate?.address().port;
  options.logger.info({ address: bound.address, port: bound.port, altPort }, "STUN responder listening");
  const closeSocket = (socket: Socket) => new Promise<void>((resolve) => socket.close(() => resolve()));
  return {
    address: bound.address,
    port: bound.port,
    altPort,
    stats: () => ({ ...stats }),
    close: async () => {
      await Promise.all([closeSocket(primary), alternate ? closeSocket(alternate) : undefined]);
    },
  };
}

async function bindResponderSocket(
  host: string,
  port: number,
  flag: string,
  stats: StunResponderStats,
  logger: Logger,
): Promise<Socket> {
  const socket: Socket = createSocket({ type: isIPv6(host) ? "udp6" : "udp4" });
  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      reject(
        new RuntimeError(
          "intro-stun-bind",
          `cannot bind the STUN responder to UDP ${host}:${port}: ${error.code ?? error.message}` +
            (error.code === "EADDRINUSE" ? ` (port busy: choose another ${flag} or --no-stun)` : ""),
          { host, port },
          { cause: error },
        ),
      );
    };
    socket.once("error", onError);
    socket.bind(port, host, () => {
      socket.off("error", onError);
      resolve();
    });
  });
  socket.on("error", (error) => logger.warn({ err: error }, "STUN socket error"));
  socket.on("message", (datagram: Buffer, source: RemoteInfo) => {
    const response =
      datagram.length <= MAX_REQUEST_BYTES ? buildBindingResponse(datagram, source) : undefined;
    if (!response) {
      stats.ignored++;
      return;
    }
    stats.answered++;
    socket.send(response, source.port, source.address);
  });
  return socket;
}
