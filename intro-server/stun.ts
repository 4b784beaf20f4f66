/**
 * STUN binding responder (RFC 8489 §6.3.1 for Binding only), so that one introduction server process
 * is also the STUN server behind cone NATs. Codec: werift-ice's STUN message class.
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
  logger: Logger;
}): Promise<StunResponder> {
  const socket: Socket = createSocket({ type: isIPv6(options.host) ? "udp6" : "udp4" });
  const stats: StunResponderStats = { answered: 0, ignored: 0 };

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      reject(
        new RuntimeError(
          "intro-stun-bind",
          `cannot bind the STUN responder to UDP ${options.host}:${options.port}: ${error.code ?? error.message}` +
            (error.code === "EADDRINUSE" ? " (port busy: choose another --stun-port or --no-stun)" : ""),
          { host: options.host, port: options.port },
          { cause: error },
        ),
      );
    };
    socket.once("error", onError);
    socket.bind(options.port, options.host, () => {
      socket.off("error", onError);
      resolve();
    });
  });

  socket.on("error", (error) => options.logger.warn({ err: error }, "STUN socket error"));
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

  const bound = socket.address();
  options.logger.info({ address: bound.address, port: bound.port }, "STUN responder listening");
  return {
    address: bound.address,
    port: bound.port,
    stats: () => ({ ...stats }),
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
